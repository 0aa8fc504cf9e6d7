// apply_policy through NetlinkTcPort inside a namespace: reconcile is exact on the real kernel.
#include <catch2/catch.hpp>

#include "flowshaper/controller/apply.hpp"
#include "flowshaper/kernel/netlink_tc_port.hpp"
#include "flowshaper/plan/diff.hpp"
#include "netns.hpp"
#include "policy_builder.hpp"
#include "tc_text.hpp"

using namespace flowshaper;
using flowshaper::testing::EnterNetns;
using flowshaper::testing::VethPair;

namespace {

struct Fixture {
    Fixture() : net("apl"), inside(net.server) {
        testing::require_netns_privileges();
        auto p = kernel::NetlinkTcPort::open();
        REQUIRE(p);
        port = std::move(*p);
    }
    VethPair net;
    EnterNetns inside;
    std::unique_ptr<kernel::NetlinkTcPort> port;
};

policy::Policy on_veth(policy::Policy p) {
    for (auto& i : p.interfaces) i.device = "veth-s";
    for (auto& c : p.caps) c.device = "veth-s";
    for (auto& d : p.detects) d.device = "veth-s";
    return p;
}

}  // namespace

TEST_CASE("on the real kernel, applying the same policy twice sends no netlink change") {
    Fixture f;
    auto p = on_veth(testing::small_policy());
    auto first = controller::apply_policy(p, *f.port, {});
    REQUIRE(first);
    CHECK(first->changes_sent > 10);
    auto sent = f.port->changes_sent();
    auto second = controller::apply_policy(p, *f.port, {});
    REQUIRE(second);
    CHECK(second->changes_sent == 0);
    CHECK(f.port->changes_sent() == sent);
    // And what the kernel has is what the plan wanted, object for object.
    auto seen = f.port->read("veth-s");
    REQUIRE(seen);
    plan::PlanInput in;
    in.policy = &p;
    in.observed["veth-s"] = seen->state;
    auto plans = plan::make_plan(in);
    REQUIRE(plans);
    CHECK(plan::diff(plans->front().desired, seen->state).empty());
}

TEST_CASE("on the real kernel, a heavy client's class and DSCP filter come and go incrementally") {
    Fixture f;
    auto p = on_veth(testing::small_policy());
    REQUIRE(controller::apply_policy(p, *f.port, {}));
    controller::ApplyOptions heavy;
    heavy.heavy = {{0, *net::Address::parse("10.200.0.2"), 0}};
    auto add = controller::apply_policy(p, *f.port, heavy);
    REQUIRE(add);
    CHECK(add->changes_sent == 2);  // one class, one filter
    auto classes = testing::tc_class_table(f.net.server, "veth-s");
    auto id = testing::tc_flowid_of(f.net.server, "veth-s", "00200000/00fc0000 at 0");
    REQUIRE_FALSE(id.empty());
    REQUIRE(classes.count(id));
    CHECK(classes[id].rate == "2Mbit");
    CHECK(classes[id].ceil == "4Mbit");
    // A plain apply keeps the heavy classes it finds (the daemon's); the daemon's own apply
    // with an empty heavy set removes them.
    CHECK(controller::apply_policy(p, *f.port, {})->changes_sent == 0);
    controller::ApplyOptions none;
    none.heavy = std::vector<plan::HeavyClient>{};
    auto gone = controller::apply_policy(p, *f.port, none);
    REQUIRE(gone);
    CHECK(gone->changes_sent == 2);
    CHECK(testing::tc_class_table(f.net.server, "veth-s").count(id) == 0);
}

TEST_CASE("on the real kernel, 2,000 clients re-apply with no change and grow by one with two") {
    Fixture f;
    auto p = on_veth(testing::many_clients(2000));
    auto first = controller::apply_policy(p, *f.port, {});
    REQUIRE(first);
    CHECK(testing::tc_class_table(f.net.server, "veth-s").size() == 2002);
    CHECK(controller::apply_policy(p, *f.port, {})->changes_sent == 0);
    p.caps[0].clients.push_back(*net::Prefix::parse("10.250.0.1"));
    auto grow = controller::apply_policy(p, *f.port, {});
    REQUIRE(grow);
    CHECK(grow->changes_sent == 2);
    p.caps[0].rate_bits_per_s = 6'000'000;
    p.caps[0].ceil_bits_per_s = 12'000'000;
    auto change = controller::apply_policy(p, *f.port, {});
    REQUIRE(change);
    CHECK(change->changes_sent == 2001);  // every class in place, no filter touched
    CHECK(controller::apply_policy(p, *f.port, {})->changes_sent == 0);
}
