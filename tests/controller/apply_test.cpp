#include <catch2/catch.hpp>

#include "flowshaper/controller/apply.hpp"
#include "flowshaper/controller/show.hpp"
#include "flowshaper/kernel/fake_tc_port.hpp"
#include "flowshaper/plan/diff.hpp"
#include "policy_builder.hpp"

using namespace flowshaper;

namespace {

policy::Policy two_devices() {
    auto p = testing::small_policy();
    auto second = testing::many_clients(20, "eth1");
    p.interfaces.push_back(second.interfaces[0]);
    p.caps.push_back(second.caps[0]);
    return p;
}

}  // namespace

TEST_CASE("applying the same policy twice sends no change the second time") {
    auto p = two_devices();
    kernel::FakeTcPort port;
    port.add_device("eth0");
    port.add_device("eth1");
    auto first = controller::apply_policy(p, port, {});
    REQUIRE(first);
    CHECK(first->changes_sent > 20);
    CHECK(first->devices[0].created_root);
    auto sent = port.changes_sent();
    auto second = controller::apply_policy(p, port, {});
    REQUIRE(second);
    CHECK(second->changes_sent == 0);
    CHECK(port.changes_sent() == sent);
}

TEST_CASE("a root qdisc someone else configured is refused before anything is sent") {
    auto p = two_devices();
    kernel::FakeTcPort port;
    port.add_device("eth0");
    port.add_device("eth1", {tc::RootInfo::Owner::Foreign, "tbf", tc::make_handle(1, 0)});
    auto r = controller::apply_policy(p, port, {});
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().text(), Catch::Contains("tbf 1:, which flowshaper did not create"));
    CHECK_THAT(r.error().text(), Catch::Contains("--force"));
    CHECK(port.changes_sent() == 0);
    controller::ApplyOptions force;
    force.force = true;
    CHECK(controller::apply_policy(p, port, force));
}

TEST_CASE("a kernel error in the middle of an apply rolls every touched device back") {
    auto p = two_devices();
    kernel::FakeTcPort port;
    port.add_device("eth0");
    port.add_device("eth1");
    // Fail a class of the second device: the first device was fully applied by then.
    port.fail_when(
        [](const tc::Change& c) {
            auto* cls = std::get_if<tc::HtbClass>(&c.object);
            return cls && tc::minor_of(cls->classid) == 0x105;
        },
        ENOMEM);
    auto r = controller::apply_policy(p, port, {});
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().text(), Catch::Contains("add class f5:105"));
    CHECK_THAT(r.error().text(), Catch::Contains("rolled back"));
    auto eth0 = port.read("eth0");
    auto eth1 = port.read("eth1");
    REQUIRE(eth0);
    REQUIRE(eth1);
    CHECK(eth0->root_info.owner == tc::RootInfo::Owner::KernelDefault);
    CHECK(eth1->root_info.owner == tc::RootInfo::Owner::KernelDefault);
}

TEST_CASE(
    "a failed change to a tree flowshaper already had restores that tree, and the next apply converges") {
    auto p = testing::many_clients(30);
    kernel::FakeTcPort port;
    port.add_device("eth0");
    REQUIRE(controller::apply_policy(p, port, {}));
    auto before = port.read("eth0");
    REQUIRE(before);
    p.caps[0].rate_bits_per_s = 7'000'000;                          // 30 in-place changes
    p.caps[0].clients.push_back(*net::Prefix::parse("10.77.0.1"));  // and one new client
    port.fail_change(10, EIO);
    auto r = controller::apply_policy(p, port, {});
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().text(), Catch::Contains("rolled back"));
    auto after = port.read("eth0");
    REQUIRE(after);
    CHECK(plan::diff(before->state, after->state).empty());
    auto again = controller::apply_policy(p, port, {});
    REQUIRE(again);
    CHECK(again->changes_sent == 33);  // 30 in place, then a class, its leaf qdisc and a filter
    CHECK(controller::apply_policy(p, port, {})->changes_sent == 0);
}

TEST_CASE("a dry run computes the changes and sends none") {
    auto p = testing::small_policy();
    kernel::FakeTcPort port;
    port.add_device("eth0");
    controller::ApplyOptions dry;
    dry.dry_run = true;
    auto r = controller::apply_policy(p, port, dry);
    REQUIRE(r);
    CHECK_FALSE(r->devices[0].changes.empty());
    CHECK(port.changes_sent() == 0);
}

TEST_CASE("flush removes flowshaper's root only, from the named devices or from all") {
    auto p = testing::small_policy();
    kernel::FakeTcPort port;
    port.add_device("eth0");
    port.add_device("eth1", {tc::RootInfo::Owner::Foreign, "htb", tc::make_handle(1, 0)});
    port.add_device("eth2");
    REQUIRE(controller::apply_policy(p, port, {}));
    kernel::FakeLinkPort links({"eth0", "eth1", "eth2"});
    auto r = controller::flush(port, links, {});
    REQUIRE(r);
    REQUIRE(r->devices == std::vector<std::string>{"eth0"});
    CHECK(port.read("eth0")->root_info.owner == tc::RootInfo::Owner::KernelDefault);
    CHECK(port.read("eth1")->root_info.owner == tc::RootInfo::Owner::Foreign);
    auto none = controller::flush(port, links, {});
    REQUIRE(none);
    CHECK(none->devices.empty());
}

TEST_CASE("show names each class by the clients its filters match and measures bytes") {
    auto p = testing::small_policy();
    kernel::FakeTcPort port;
    port.add_device("eth0");
    REQUIRE(controller::apply_policy(p, port, {}));
    kernel::FakeLinkPort links({"lo", "eth0"});
    auto st = port.read("eth0");
    tc::Handle client = 0;
    for (const auto& f : st->state.u32)
        if (f.role == tc::U32Filter::Role::Match && f.keys.size() == 1 && f.keys[0].value == 0xcb007107)
            client = f.classid;
    REQUIRE(client != 0);
    port.count("eth0", client, 12345, 10);
    auto views = controller::collect_status(port, links, {}, 0);
    REQUIRE(views);
    REQUIRE(views->size() == 1);
    bool seen = false;
    for (const auto& c : views->front().classes)
        if (c.cls.classid == client) {
            seen = true;
            CHECK(c.what == "client 203.0.113.7");
            CHECK(c.stats.bytes == 12345);
        }
    CHECK(seen);
    auto json = controller::status_json(*views);
    CHECK(json["devices"][0]["device"] == "eth0");
    CHECK_THAT(controller::render_status(*views), Catch::Contains("client 203.0.113.7"));
}
