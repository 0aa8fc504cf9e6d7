// Leaf queues: which kind plan chooses for the kernel's features, how a bfifo is sized, and how
// reconcile treats it (applying twice sends nothing, a new size changes only the leaf qdiscs).
#include <catch2/catch.hpp>

#include "flowshaper/kernel/fake_tc_port.hpp"
#include "flowshaper/plan/diff.hpp"
#include "flowshaper/plan/planner.hpp"
#include "flowshaper/plan/render.hpp"
#include "flowshaper/tc/features.hpp"
#include "policy_builder.hpp"

using namespace flowshaper;
using Op = tc::Change::Op;

namespace {

tc::Features no_aqm() {
    tc::Features f;
    f.source = "/proc/config.gz";
    return f;
}

// Resolves the policy's settings against `features` (as apply and the daemon do), then plans.
plan::DevicePlan plan_for(const policy::Policy& p, const tc::Features& features,
                          const tc::DeviceState* observed = nullptr) {
    auto resolved = plan::resolve(p.settings, features);
    REQUIRE(resolved);
    plan::PlanInput in;
    in.policy = &p;
    in.resolved = *resolved;
    if (observed) in.observed["eth0"] = *observed;
    auto plans = plan::make_plan(in);
    REQUIRE(plans);
    return plans->front();
}

const tc::LeafQdisc* leaf_under(const tc::DeviceState& st, const std::string& label) {
    for (const auto& c : st.classes)
        if (c.label == label)
            for (const auto& q : st.leaves)
                if (q.parent == c.classid) return &q;
    return nullptr;
}

void send(kernel::FakeTcPort& port, const std::vector<tc::Change>& changes) {
    for (const auto& c : changes) {
        INFO(c.describe());
        REQUIRE(port.apply("eth0", c));
    }
}

}  // namespace

TEST_CASE("without fq_codel and sfq every leaf class gets a bfifo of leaf_queue at its ceil") {
    auto p = testing::small_policy();
    auto dp = plan_for(p, no_aqm());
    CHECK(dp.leaf_kind == "bfifo");
    const auto& st = dp.desired;
    CHECK(st.leaves.size() == st.classes.size() - 1);  // every class but the root class is a leaf here
    for (const auto& q : st.leaves) CHECK(q.kind == "bfifo");
    // customer-42: ceil 10 Mbit/s = 1,250,000 B/s; 100 ms of it.
    const auto* capped = leaf_under(st, "cap customer-42 203.0.113.7");
    REQUIRE(capped);
    CHECK(capped->limit_bytes == 125'000);
    CHECK(capped->limit_packets == 0);
    // normal: ceil 1 Gbit/s.
    const auto* normal = leaf_under(st, "class normal");
    REQUIRE(normal);
    CHECK(normal->limit_bytes == 12'500'000);
}

TEST_CASE("a heavy client's bfifo follows the rule's limit ceil and a new leaf_queue") {
    auto p = testing::small_policy();
    p.settings.leaf_queue_ms = 250;
    plan::PlanInput in;
    auto resolved = plan::resolve(p.settings, no_aqm());
    REQUIRE(resolved);
    in.policy = &p;
    in.resolved = *resolved;
    in.heavy = {{0, *net::Address::parse("203.0.113.9"), 0}};
    auto plans = plan::make_plan(in);
    REQUIRE(plans);
    const auto* heavy = leaf_under(plans->front().desired, "heavy imap-sync-loop 203.0.113.9");
    REQUIRE(heavy);
    CHECK(heavy->limit_bytes == 125'000);  // 4 Mbit/s = 500,000 B/s for 250 ms
}

TEST_CASE("a bfifo is never smaller than one maximal GSO packet and three full-size frames") {
    // 64 KiB of packet in up to 45 segments, each with 86 bytes of Ethernet/IPv6/TCP headers.
    CHECK(tc::kMinLeafQueueBytes == 65'536 + 45 * 86 + 3 * 1514);
    CHECK(tc::leaf_queue_bytes(12'500, 100) == 73'948);   // 100 kbit/s: 1,250 bytes in 100 ms
    CHECK(tc::leaf_queue_bytes(500'000, 100) == 73'948);  // 4 Mbit/s: 50,000 bytes in 100 ms
    CHECK(tc::leaf_queue_bytes(750'000, 100) == 75'000);  // 6 Mbit/s: past the floor
    CHECK(tc::leaf_queue_bytes(1'250'000, 100) == 125'000);
    CHECK(tc::leaf_queue_bytes(1'250'000'000'000ull, 10'000) == 0x7fffffff);  // clamped, no overflow
    // Drain at the guaranteed rate, rounded up: 62,500 bytes at 4 Mbit/s take 125 ms.
    CHECK(tc::leaf_queue_drain_ms(62'500, 500'000) == 125);
    CHECK(tc::leaf_queue_drain_ms(62'501, 500'000) == 126);
}

TEST_CASE("where the kernel has fq_codel it is preferred, and sfq next, bfifo and pfifo only on request") {
    auto p = testing::small_policy();
    tc::Features codel{false, true, true, "fake"};
    auto dp = plan_for(p, codel);
    CHECK(dp.leaf_kind == "fq_codel");
    for (const auto& q : dp.desired.leaves) {
        CHECK(q.kind == "fq_codel");
        CHECK(q.limit_bytes == 0);
    }
    tc::Features sfq{false, false, true, "fake"};
    CHECK(plan_for(p, sfq).leaf_kind == "sfq");
    p.settings.leaf_qdisc = policy::LeafQdisc::Bfifo;
    CHECK(plan_for(p, codel).leaf_kind == "bfifo");
    p.settings.leaf_qdisc = policy::LeafQdisc::Pfifo;
    auto fifo = plan_for(p, codel);
    CHECK(fifo.leaf_kind == "pfifo");
    CHECK(fifo.desired.leaves.empty());  // the kernel's default leaf: nothing to create
    p.settings.leaf_qdisc = policy::LeafQdisc::FqCodel;
    auto missing = plan::resolve(p.settings, no_aqm());
    REQUIRE_FALSE(missing);
    CHECK_THAT(missing.error().text(), Catch::Contains("use leaf_qdisc = \"auto\" or \"bfifo\""));
}

TEST_CASE("plan says which leaf queue is used, how big and why") {
    auto p = testing::small_policy();
    auto text = plan::render_text(plan_for(p, no_aqm()));
    CHECK_THAT(text, Catch::Contains("leaf queues: bfifo on 5 leaves (73948..12500000 bytes)"));
    CHECK_THAT(text, Catch::Contains("the kernel has neither fq_codel nor sfq (/proc/config.gz)"));
    CHECK_THAT(text,
               Catch::Contains("holding 100ms at each class's ceil (leaf_queue), at least 73948 bytes"));
    auto batch = plan::render_tc_batch(plan_for(p, no_aqm()));
    CHECK_THAT(batch, Catch::Contains("parent f5:100 handle 100: bfifo limit 125000\n"));
    p.settings.leaf_qdisc = policy::LeafQdisc::Pfifo;
    CHECK_THAT(plan::render_text(plan_for(p, no_aqm())),
               Catch::Contains("leaf queues: pfifo (nothing created): leaf_qdisc = pfifo"));
}

TEST_CASE(
    "applying a bfifo plan twice sends nothing, a new leaf_queue changes only the leaf qdiscs in place") {
    auto p = testing::small_policy();
    kernel::FakeTcPort port;
    port.set_features(no_aqm());
    port.add_device("eth0");
    auto first = plan_for(p, port.features());
    send(port, plan::diff(first.desired, {}));
    CHECK(port.state("eth0")->leaves.size() == first.desired.leaves.size());
    auto have = port.read("eth0");
    REQUIRE(have);
    CHECK(plan::diff(plan_for(p, port.features(), &have->state).desired, have->state).empty());

    p.settings.leaf_queue_ms = 1000;  // every leaf grows (the smallest leaves past the floor too)
    auto changes = plan::diff(plan_for(p, port.features(), &have->state).desired, have->state);
    CHECK(changes.size() == first.desired.leaves.size());
    for (const auto& c : changes) {
        INFO(c.describe());
        CHECK(c.op == Op::Modify);
        REQUIRE(std::holds_alternative<tc::LeafQdisc>(c.object));
    }
    send(port, changes);
    auto after = port.read("eth0");
    REQUIRE(after);
    CHECK(plan::diff(plan_for(p, port.features(), &after->state).desired, after->state).empty());
}

TEST_CASE("a new ceil of one cap changes that client's class and its leaf qdisc only") {
    auto p = testing::many_clients(20);
    kernel::FakeTcPort port;
    port.set_features(no_aqm());
    port.add_device("eth0");
    send(port, plan::diff(plan_for(p, port.features()).desired, {}));
    auto have = port.read("eth0");
    REQUIRE(have);
    policy::Cap one = p.caps[0];
    one.name = "one";
    one.clients = {p.caps[0].clients.back()};
    one.ceil_bits_per_s = 20'000'000;
    p.caps[0].clients.pop_back();
    p.caps.push_back(one);
    auto changes = plan::diff(plan_for(p, port.features(), &have->state).desired, have->state);
    REQUIRE(changes.size() == 2);
    CHECK(changes[0].op == Op::Modify);
    CHECK(std::holds_alternative<tc::HtbClass>(changes[0].object));
    CHECK(changes[1].op == Op::Modify);
    REQUIRE(std::holds_alternative<tc::LeafQdisc>(changes[1].object));
    CHECK(std::get<tc::LeafQdisc>(changes[1].object).limit_bytes == 250'000);
}
