#include <catch2/catch.hpp>

#include "flowshaper/kernel/fake_tc_port.hpp"
#include "flowshaper/plan/diff.hpp"
#include "flowshaper/plan/planner.hpp"
#include "policy_builder.hpp"

using namespace flowshaper;
using Op = tc::Change::Op;

namespace {

tc::DeviceState plan_with(const policy::Policy& p, const tc::DeviceState* observed = nullptr) {
    plan::PlanInput in;
    in.policy = &p;
    if (observed) in.observed["eth0"] = *observed;
    auto plans = plan::make_plan(in);
    REQUIRE(plans);
    return plans->front().desired;
}

// Sends `changes` through the fake kernel, which refuses wrong orders like the real one.
void send(kernel::FakeTcPort& port, const std::vector<tc::Change>& changes) {
    for (const auto& c : changes) {
        auto st = port.apply("eth0", c);
        INFO(c.describe());
        REQUIRE(st);
    }
}

// A fake kernel device with the policy's plan applied; returns what it reads back.
tc::ObservedDevice install(kernel::FakeTcPort& port, const policy::Policy& p) {
    port.add_device("eth0");
    send(port, plan::diff(plan_with(p), {}));
    auto have = port.read("eth0");
    REQUIRE(have);
    return *have;
}

template <typename T>
size_t count(const std::vector<tc::Change>& changes, Op op) {
    return std::count_if(changes.begin(), changes.end(),
                         [&](auto& c) { return c.op == op && std::holds_alternative<T>(c.object); });
}

}  // namespace

TEST_CASE("diffing a state against itself gives no change") {
    auto p = testing::small_policy();
    auto st = plan_with(p);
    CHECK(plan::diff(st, st).empty());
}

TEST_CASE("applying the same policy twice through the fake kernel sends nothing the second time") {
    auto p = testing::small_policy();
    kernel::FakeTcPort port;
    port.add_device("eth0");
    auto want = plan_with(p);
    send(port, plan::diff(want, {}));
    auto sent_first = port.changes_sent();
    CHECK(sent_first == 1 + want.classes.size() + want.u32.size());
    auto have = port.read("eth0");
    REQUIRE(have);
    auto again = plan_with(p, &have->state);
    CHECK(plan::diff(again, have->state).empty());
}

TEST_CASE("changing one cap's rate modifies that class in place and nothing else") {
    auto p = testing::many_clients(50);
    kernel::FakeTcPort port;
    auto have = install(port, p);
    p.caps[0].rate_bits_per_s = 6'000'000;  // all 50 clients of the cap
    auto changes = plan::diff(plan_with(p, &have.state), have.state);
    CHECK(changes.size() == 50);
    CHECK(count<tc::HtbClass>(changes, Op::Modify) == 50);
}

TEST_CASE("adding one client adds one class and one filter") {
    auto p = testing::many_clients(500);
    kernel::FakeTcPort port;
    auto have = install(port, p);
    p.caps[0].clients.push_back(*net::Prefix::parse("10.99.0.1"));
    auto changes = plan::diff(plan_with(p, &have.state), have.state);
    REQUIRE(changes.size() == 2);
    CHECK(count<tc::HtbClass>(changes, Op::Add) == 1);
    CHECK(count<tc::U32Filter>(changes, Op::Add) == 1);
    send(port, changes);
}

TEST_CASE("removing a cap removes its filters before its classes, and the kernel accepts the order") {
    auto p = testing::small_policy();
    kernel::FakeTcPort port;
    auto have = install(port, p);
    p.caps.erase(p.caps.begin());  // customer-42: two clients
    auto changes = plan::diff(plan_with(p, &have.state), have.state);
    CHECK(count<tc::U32Filter>(changes, Op::Remove) == 2);
    CHECK(count<tc::HtbClass>(changes, Op::Remove) == 2);
    CHECK(changes.size() == 4);
    CHECK(std::holds_alternative<tc::U32Filter>(changes.front().object));
    send(port, changes);
    auto after = port.read("eth0");
    REQUIRE(after);
    CHECK(plan::diff(plan_with(p, &after->state), after->state).empty());
}

TEST_CASE("moving a class under another parent recreates it with its filters") {
    auto p = testing::small_policy();
    kernel::FakeTcPort port;
    auto have = install(port, p);
    p.caps[1].parent = "bulk";  // the shared scrapers class
    auto changes = plan::diff(plan_with(p, &have.state), have.state);
    CHECK(count<tc::HtbClass>(changes, Op::Remove) == 1);
    CHECK(count<tc::HtbClass>(changes, Op::Add) == 1);
    CHECK(count<tc::U32Filter>(changes, Op::Remove) == 2);
    CHECK(count<tc::U32Filter>(changes, Op::Add) == 2);
    send(port, changes);
}

TEST_CASE("a deleted class referenced by a filter is refused by the fake kernel with EBUSY") {
    auto p = testing::small_policy();
    kernel::FakeTcPort port;
    port.add_device("eth0");
    auto want = plan_with(p);
    send(port, plan::diff(want, {}));
    const auto& victim = want.classes.back();
    auto st = port.apply("eth0", {Op::Remove, victim});
    REQUIRE_FALSE(st);
    CHECK(st.error().code == EBUSY);
}

TEST_CASE("a leaf qdisc of another kind is replaced with an add, a new limit is changed in place") {
    tc::DeviceState have, want;
    have.leaves.push_back({tc::make_handle(0xf5, 2), tc::make_handle(2, 0), "sfq", 0});
    want.leaves.push_back({tc::make_handle(0xf5, 2), tc::make_handle(2, 0), "fq_codel", 0});
    have.classes.push_back({tc::make_handle(0xf5, 2), tc::kRootQdisc, 1000, 1000, 1600, 1600, 1514, 0, ""});
    want.classes = have.classes;
    auto kind = plan::diff(want, have);
    REQUIRE(kind.size() == 1);
    CHECK(kind[0].op == Op::Add);
    want.leaves[0] = {tc::make_handle(0xf5, 2), tc::make_handle(2, 0), "sfq", 500};
    have.leaves[0].limit_packets = 100;
    auto limit = plan::diff(want, have);
    REQUIRE(limit.size() == 1);
    CHECK(limit[0].op == Op::Modify);
}

TEST_CASE("a shared cap keeps its class when its first prefix goes") {
    auto p = testing::small_policy();
    kernel::FakeTcPort port;
    auto have = install(port, p);
    p.caps[1].clients.erase(p.caps[1].clients.begin());  // scrapers: 198.51.100.0/24 goes
    auto changes = plan::diff(plan_with(p, &have.state), have.state);
    // Its match node goes, and with it the /24 hash table it was the only user of (link, table):
    // no class changes.
    REQUIRE(changes.size() == 3);
    for (const auto& c : changes) {
        CHECK(c.op == Op::Remove);
        CHECK(std::holds_alternative<tc::U32Filter>(c.object));
    }
    CHECK(std::get<tc::U32Filter>(changes[0].object).role == tc::U32Filter::Role::Match);
    CHECK(std::get<tc::U32Filter>(changes[2].object).role == tc::U32Filter::Role::Table);
}
