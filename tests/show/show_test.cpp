#include <catch2/catch.hpp>
#include <map>
#include <set>

#include "flowshaper/controller/apply.hpp"
#include "flowshaper/controller/show.hpp"
#include "flowshaper/kernel/fake_tc_port.hpp"
#include "flowshaper/plan/u32_match.hpp"
#include "policy_builder.hpp"

using namespace flowshaper;

namespace {

// What `show` says each class is for, after applying the small policy with one heavy client.
std::map<std::string, controller::ClassView> shown(kernel::FakeTcPort& port) {
    kernel::FakeLinkPort links({"eth0"});
    auto views = controller::collect_status(port, links, {}, 0);
    REQUIRE(views);
    REQUIRE(views->size() == 1);
    std::map<std::string, controller::ClassView> by_what;
    for (const auto& c : views->front().classes) by_what[c.what] = c;
    return by_what;
}

}  // namespace

TEST_CASE("show names each client class by the prefixes and DSCP its u32 nodes select") {
    auto p = testing::small_policy();
    kernel::FakeTcPort port;
    port.add_device("eth0");
    controller::ApplyOptions opts;
    opts.heavy = std::vector<plan::HeavyClient>{{0, *net::Address::parse("10.0.0.9"), 0}};
    REQUIRE(controller::apply_policy(p, port, opts));

    auto what = shown(port);
    std::set<std::string> names;
    for (const auto& [text, view] : what) names.insert(text);
    CHECK(names ==
          std::set<std::string>{"root", "default", "class", "client 203.0.113.7", "client 2001:db8:7::/64",
                                "client 198.51.100.0/24, 2001:db8:bad::/48", "heavy 10.0.0.9 dscp 8"});
    CHECK(what["default"].is_default);
}

TEST_CASE("show says so when a match node's keys are not in the form plan writes") {
    auto p = testing::small_policy();
    kernel::FakeTcPort port;
    port.add_device("eth0");
    REQUIRE(controller::apply_policy(p, port, {}));
    const auto* st = port.state("eth0");
    REQUIRE(st);
    tc::U32Filter foreign;
    for (const auto& f : st->u32)
        if (f.role == tc::U32Filter::Role::Match && plan::identity_of(f)->prefix.str() == "203.0.113.7")
            foreign = f;
    REQUIRE(foreign.classid != 0);
    foreign.keys = {{0x40, 0xff, 8}};  // someone's TTL match, pointing at the client's class
    REQUIRE(port.apply("eth0", {tc::Change::Op::Modify, foreign}));

    auto what = shown(port);
    CHECK(what.count("client 203.0.113.7") == 0);
    bool flagged = false;
    for (const auto& [text, view] : what)
        flagged |=
            view.cls.classid == foreign.classid && text.find("keys not flowshaper's") != std::string::npos;
    CHECK(flagged);
}
