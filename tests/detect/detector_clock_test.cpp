// The detector's life cycle: clock steps, the baseline, adoption after a restart,
// revocation, address changes, the view for the status socket.
#include <catch2/catch.hpp>

#include "detect_support.hpp"

using namespace flowshaper;
using namespace flowshaper::detect;
using namespace flowshaper::detect::testing;

namespace {

constexpr uint64_t kT0 = 10'000'000'000;  // far from 0: the clock may step back an hour
uint64_t at(uint64_t second) {
    return kT0 + second * 1000;
}

Options every_second() {
    Options o;
    o.poll_interval_ms = 1000;  // clock jumps: steps over 10 s
    return o;
}

policy::Detect rate_rule(uint64_t for_ms) {
    auto r = rule("rate");
    r.local_ports = {993};
    r.client_rate_bits_per_s = 8'000'000;
    r.for_ms = for_ms;
    return r;
}

policy::Detect upload_rule() {
    auto r = rule("bulk-upload");
    r.remote_ports = {5301};
    r.flow_bytes = 1'000'000;
    r.release_after_ms = 10'000;
    return r;
}

}  // namespace

TEST_CASE("a clock that goes backwards counts as no time: the `for` duration is not shortened nor reset") {
    Detector det({rate_rule(5'000)}, host_addresses(), every_second());
    Table t;
    t.put(inbound(1, "203.0.113.7", 993, 0));
    det.observe(at(0), t.samples());
    std::vector<uint64_t> now = {at(1), at(2)};
    uint64_t back = at(2) - 3'600'000;  // an hour back
    for (uint64_t k = 0; k < 6; ++k) now.push_back(back + k * 1000);
    std::vector<size_t> marked_at;
    for (size_t i = 0; i < now.size(); ++i) {
        t.grow(1, 2'000'000);  // 16 Mbit/s every poll
        for (const auto& d : det.observe(now[i], t.samples())) {
            CHECK(d.measured == 16'000'000);  // no giant or negative rate
            marked_at.push_back(i + 1);
        }
    }
    // Polls 1, 2 and 4, 5, 6 are regular steps: 5 s above by poll 6. Poll 3 went back.
    CHECK(marked_at == std::vector<size_t>{6});
    CHECK(det.clock_anomalies() == 1);
}

TEST_CASE("a jump forward with traffic in the gap makes no giant rate") {
    Detector det({rate_rule(2'000)}, host_addresses(), every_second());
    Table t;
    t.put(inbound(1, "203.0.113.7", 993, 0));
    det.observe(at(0), t.samples());
    uint64_t now = at(0);
    size_t decisions = 0;
    for (int i = 1; i <= 12; ++i) {
        bool jump = i == 3;  // the daemon was stopped for 30 s while the client went on at 4 Mbit/s
        now += jump ? 30'000 : 1'000;
        t.grow(1, jump ? 15'000'000 : 500'000);
        decisions += det.observe(now, t.samples()).size();
    }
    CHECK(decisions == 0);  // 15 MB in one poll would be 120 Mbit/s over a 1 s step
    CHECK(det.clock_anomalies() == 1);
}

TEST_CASE("a jump forward (suspend) releases nobody and quiet time goes on from regular steps only") {
    auto r = upload_rule();
    r.release_after_ms = 9'704;  // + 296 ms for the leaf queue to drain (2/4 Mbit/s limit): 10 s
    Detector det({r}, host_addresses(), every_second());
    Table t;
    const char* clients[] = {"198.51.100.1", "198.51.100.2", "198.51.100.3"};
    for (uint32_t i = 0; i < 3; ++i) t.put(outbound(i + 1, clients[i], 5301, 0));
    det.observe(at(0), t.samples());
    for (uint32_t i = 0; i < 3; ++i) t.grow(i + 1, 2'000'000);
    REQUIRE(count(det.observe(at(1), t.samples()), DecisionKind::Mark) == 3);
    CHECK(det.observe(at(2), t.samples()).empty());  // quiet since 1 s
    uint64_t resumed = at(2) + 3'600'000;
    CHECK(det.observe(resumed, t.samples()).empty());  // an hour later: no mass release
    CHECK(det.heavy_clients().size() == 3);
    for (uint64_t k = 1; k <= 8; ++k) CHECK(det.observe(resumed + k * 1000, t.samples()).empty());
    auto ds = det.observe(resumed + 9 * 1000, t.samples());  // 1 s before the jump + 9 s after
    REQUIRE(count(ds, DecisionKind::Release) == 3);
    CHECK_THAT(ds[0].reason, Catch::Contains("quiet for 10000 ms"));
    CHECK(det.clock_anomalies() == 1);
}

TEST_CASE("the first poll is a baseline: old bytes count for flow_bytes, not for client_bytes") {
    auto window = rule("window");
    window.local_ports = {993};
    window.client_bytes = 1'000'000;
    window.window_ms = 60'000;
    auto upload = upload_rule();
    Detector det({window, upload}, host_addresses(), every_second());
    Table t;
    t.put(inbound(1, "203.0.113.7", 993, 5'000'000));
    t.put(outbound(2, "198.51.100.9", 5301, 5'000'000));
    auto ds = det.observe(at(0), t.samples());
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].rule == 1);
    CHECK(ds[0].measured == 5'000'000);
    t.grow(1, 600'000);
    CHECK(det.observe(at(1), t.samples()).empty());
    t.grow(1, 500'000);
    ds = det.observe(at(2), t.samples());
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].rule == 0);
    CHECK(ds[0].measured == 1'100'000);
}

TEST_CASE("an adopted client gets no Mark, and its quiet time counts from the adoption") {
    auto r = upload_rule();
    r.release_after_ms = 9'704;  // + 296 ms leaf queue drain: 10 s
    Detector det({r}, host_addresses(), every_second());
    CHECK_FALSE(det.adopt(1, addr("198.51.100.9"), at(0)));  // no such rule
    REQUIRE(det.adopt(0, addr("198.51.100.9"), at(0)));
    Table t;
    t.put(outbound(1, "198.51.100.9", 5301, 5'000'000));
    t.put(outbound(2, "198.51.100.9", 5301, 10));
    t.put(outbound(3, "198.51.100.10", 5301, 10));
    CHECK(det.observe(at(0), t.samples()).empty());  // connection 1 is past flow_bytes: no Mark
    CHECK(det.heavy_clients() == std::vector<Detector::HeavyClient>{{0, addr("198.51.100.9")}});
    for (uint64_t s = 1; s <= 9; ++s) CHECK(det.observe(at(s), t.samples()).empty());
    auto ds = det.observe(at(10), t.samples());
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].kind == DecisionKind::Release);
    CHECK(ds[0].measured == 0);
}

TEST_CASE("a client adopted between polls is quiet from its adoption on, not from the poll before") {
    Detector det({upload_rule()}, host_addresses(), every_second());
    Table t;
    t.put(outbound(1, "198.51.100.9", 5301, 10));
    for (uint64_t s = 0; s <= 5; ++s) CHECK(det.observe(at(s), t.samples()).empty());
    REQUIRE(det.adopt(0, addr("198.51.100.9"), at(5) + 500));
    std::vector<uint64_t> released_at;
    for (uint64_t s = 6; s <= 20; ++s)
        for (const auto& d : det.observe(at(s), t.samples()))
            if (d.kind == DecisionKind::Release) released_at.push_back(s);
    CHECK(released_at == std::vector<uint64_t>{16});  // 10.296 s (10 s + the queue's 296 ms) after 5.5 s
}

TEST_CASE("a revoked Mark is decided again at the next poll") {
    Detector det({upload_rule()}, host_addresses(), every_second());
    Table t;
    t.put(outbound(1, "198.51.100.9", 5301, 0));
    det.observe(at(0), t.samples());
    t.grow(1, 2'000'000);
    REQUIRE(count(det.observe(at(1), t.samples()), DecisionKind::Mark) == 1);
    det.revoke(0, addr("198.51.100.9"));
    CHECK_FALSE(det.is_heavy(0, addr("198.51.100.9")));
    auto ds = det.observe(at(2), t.samples());
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].kind == DecisionKind::Mark);
    CHECK(ds[0].measured == 2'000'000);  // a revoke does not restart flow_bytes (a release does)
}

TEST_CASE("a new address of this host reclassifies flows, which start from their current counter") {
    auto r = rule("window");
    r.client_bytes = 1'000'000;
    r.window_ms = 60'000;
    Detector det({r}, host_addresses(), every_second());
    Table t;
    FlowSample f = inbound(1, "203.0.113.7", 993, 5'000'000);
    f.orig_dst = addr("192.0.2.50");  // not ours yet: forwarded, no rule has prefixes
    t.put(f);
    det.observe(at(0), t.samples());
    CHECK(det.tracked_flows() == 0);
    auto local = host_addresses();
    local.push_back(addr("192.0.2.50"));
    det.set_local_addresses(local);
    t.grow(1, 300'000);
    CHECK(det.observe(at(1), t.samples()).empty());
    CHECK(det.tracked_flows() == 1);
    t.grow(1, 1'200'000);
    auto ds = det.observe(at(2), t.samples());
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].measured == 1'200'000);
}

TEST_CASE("clients with no connections left and an empty window are forgotten") {
    auto r = rule("window");
    r.local_ports = {993};
    r.client_bytes = 10'000'000;
    r.window_ms = 10'000;  // slots of 167 ms
    Detector det({r}, host_addresses(), every_second());
    Table t;
    t.put(inbound(1, "203.0.113.7", 993, 0));
    det.observe(at(0), t.samples());
    t.grow(1, 1'000);
    det.observe(at(1), t.samples());
    t.end(1);
    std::vector<size_t> clients;
    for (uint64_t s = 2; s <= 12; ++s) {
        det.observe(at(s), t.samples());
        clients.push_back(det.tracked_clients());
    }
    // Its 1,000 bytes (added at 1 s) leave the window at 11 s, then nothing is left of it.
    CHECK(clients == std::vector<size_t>{1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0});
    CHECK(det.tracked_flows() == 0);
}

TEST_CASE("view: the last timed poll's rate, quiet time on the detector clock, the rule's release terms") {
    auto window = rule("window");
    window.local_ports = {993};
    window.client_bytes = 1'000'000;
    window.window_ms = 60'000;
    window.release_after_ms = 30'000;
    Detector det({upload_rule(), window}, host_addresses(), every_second());
    const auto client = addr("198.51.100.9");
    CHECK_FALSE(det.view(0, client).has_value());  // nothing observed yet
    Table t;
    t.put(outbound(1, "198.51.100.9", 5301, 0));
    t.put(inbound(2, "203.0.113.7", 993, 0));
    det.observe(at(0), t.samples());
    CHECK_FALSE(det.view(1, client).has_value());  // tracked for rule 0 only
    CHECK_FALSE(det.view(2, client).has_value());  // no such rule
    auto w = det.view(1, addr("203.0.113.7"));
    REQUIRE(w.has_value());
    // release_after + 296 ms: a leaf queue of 73,948 bytes (100 ms at 4 Mbit/s is 50,000, below
    // the floor of one GSO packet and three frames) drained at 2 Mbit/s.
    CHECK(w->release_after_ms == 30'296);
    CHECK(w->release_rate_bits_per_s == 133'333);  // client_bytes * 8 / window, below limit / 2
    auto v = det.view(0, client);
    REQUIRE(v.has_value());
    CHECK(v->poll_rate_bits_per_s == 0);       // the baseline measures no rate
    CHECK_FALSE(v->quiet_for_ms.has_value());  // not heavy
    CHECK(v->release_after_ms == 10'296);
    CHECK(v->release_rate_bits_per_s == 1'000'000);  // limit.rate / 2

    t.grow(1, 2'000'000);
    REQUIRE(count(det.observe(at(1), t.samples()), DecisionKind::Mark) == 1);
    v = det.view(0, client);
    CHECK(v->poll_rate_bits_per_s == 16'000'000);
    CHECK_FALSE(v->quiet_for_ms.has_value());  // heavy, not quiet yet
    t.grow(1, 50'000);
    det.observe(at(2), t.samples());
    v = det.view(0, client);
    CHECK(v->poll_rate_bits_per_s == 400'000);
    CHECK(v->quiet_for_ms == 1'000);  // quiet from the start of the poll interval
    t.grow(1, 25'000);
    det.observe(at(3), t.samples());
    CHECK(det.view(0, client)->quiet_for_ms == 2'000);

    uint64_t back = at(3) - 3'600'000;  // the clock steps back: a poll that measures no rate
    t.grow(1, 5'000'000);
    det.observe(back, t.samples());
    v = det.view(0, client);
    CHECK(v->poll_rate_bits_per_s == 200'000);  // still the last timed poll's
    CHECK(v->quiet_for_ms == 2'000);            // the detector clock did not move
    uint64_t k = 1;
    for (; k <= 20 && det.observe(back + k * 1000, t.samples()).empty(); ++k)
        CHECK(det.view(0, client)->quiet_for_ms == 2'000 + k * 1000);
    REQUIRE(det.heavy_clients().empty());  // released: at the first poll quiet for release_after
    CHECK(2'000 + (k - 1) * 1000 < v->release_after_ms);
    CHECK(2'000 + k * 1000 >= v->release_after_ms);
    v = det.view(0, client);
    REQUIRE(v.has_value());  // its connection is still there
    CHECK(v->poll_rate_bits_per_s == 0);
    CHECK_FALSE(v->quiet_for_ms.has_value());  // released
}

TEST_CASE("a release never comes before release_after of quiet on the wire: the leaf queue drains first") {
    // The incident: conntrack counts bytes as they enter the capped class's queue, so it went
    // quiet seconds before the wire did and an IPv6 cap was lifted 17.9 s into a 20 s
    // release_after. Here the wire is modelled on its own: a fifo of 2 s at the class's
    // 5 Mbit/s (leaf_queue = "2s"), drained at 625,000 B/s, kept full by the client until it
    // stops at 10 s; conntrack sees what enters the queue.
    auto r = rule("imap");
    r.local_ports = {993};
    r.flow_bytes = 1'000'000;
    r.limit = {5'000'000, 5'000'000};
    r.release_after_ms = 20'000;
    Options o;
    o.poll_interval_ms = 250;
    o.leaf_queue_ms = 2'000;
    Detector det({r}, host_addresses(), o);
    constexpr uint64_t kWireBytesPerS = 625'000;
    constexpr uint64_t kQueueBytes = 1'250'000;
    constexpr uint64_t kStepMs = 250;
    constexpr uint64_t kPerStep = kWireBytesPerS * kStepMs / 1000;
    Table t;
    t.put(inbound(1, "2001:db8:7::9", 993, 0));
    det.observe(at(0), t.samples());
    uint64_t queued = 0;
    uint64_t wire_quiet_at = 0;
    std::vector<uint64_t> marked_at, released_at;
    for (uint64_t now = at(0) + kStepMs; now <= at(60); now += kStepMs) {
        bool sending = now <= at(10);
        uint64_t entered = sending ? kQueueBytes - queued + kPerStep : 0;
        uint64_t on_wire = std::min(queued + entered, kPerStep);
        queued = queued + entered - on_wire;
        if (on_wire > 0) wire_quiet_at = now - kStepMs + on_wire * 1000 / kWireBytesPerS;
        t.grow(1, entered);
        for (const auto& d : det.observe(now, t.samples())) {
            if (d.kind == DecisionKind::Mark) marked_at.push_back(now);
            if (d.kind == DecisionKind::Release) released_at.push_back(now);
        }
    }
    CHECK(marked_at == std::vector<uint64_t>{at(0) + kStepMs});
    CHECK(wire_quiet_at == at(12));  // the full queue took 2 s to drain after the client stopped
    REQUIRE(released_at.size() == 1);
    CHECK(released_at[0] >= wire_quiet_at + r.release_after_ms);
    CHECK(released_at[0] <= wire_quiet_at + r.release_after_ms + kStepMs);  // and not much later
}
