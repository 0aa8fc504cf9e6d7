#include <catch2/catch.hpp>

#include <string>

#include "detect_support.hpp"

using namespace flowshaper;
using namespace flowshaper::detect;
using namespace flowshaper::detect::testing;

namespace {

constexpr uint64_t kT0 = 1'000'000;
uint64_t at(uint64_t second) {
    return kT0 + second * 1000;
}

Options every_second() {
    Options o;
    o.poll_interval_ms = 1000;
    return o;
}

policy::Detect upload_rule() {
    auto r = rule("bulk-upload");
    r.remote_ports = {5301};
    r.flow_bytes = 1'000'000;
    return r;
}

policy::Detect mailbox_rule() {
    auto r = rule("mailbox-sync");
    r.local_ports = {993};
    r.client_bytes = 3'000'000;
    r.window_ms = 60'000;
    r.flow_bytes = 2'000'000;
    return r;
}

}  // namespace

TEST_CASE("a connection passing flow_bytes marks its client once, its later connections decide nothing") {
    Detector det({upload_rule()}, host_addresses(), every_second());
    Table t;
    t.put(outbound(1, "198.51.100.9", 5301, 100'000));
    t.put(outbound(2, "198.51.100.9", 5301, 10));
    t.put(outbound(3, "198.51.100.10", 5301, 500'000));
    t.put(outbound(4, "198.51.100.9", 22, 9'000'000));  // another port: not this rule's
    CHECK(det.observe(at(0), t.samples()).empty());

    t.grow(1, 1'100'000);
    auto ds = det.observe(at(1), t.samples());
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].kind == DecisionKind::Mark);
    CHECK(ds[0].rule == 0);
    CHECK(ds[0].rule_name == "bulk-upload");
    CHECK(ds[0].client == addr("198.51.100.9"));
    CHECK(ds[0].measure == Measure::FlowBytes);
    CHECK(ds[0].measured == 1'200'000);
    CHECK(ds[0].threshold == 1'000'000);
    CHECK_THAT(ds[0].reason, Catch::Contains("connection 1 moved 1200000 bytes"));
    CHECK(det.is_heavy(0, addr("198.51.100.9")));

    t.grow(1, 5'000'000);  // still heavy: no second Mark
    CHECK(det.observe(at(2), t.samples()).empty());

    t.put(outbound(5, "198.51.100.9", 5301, 0));  // a connection it opens later: the caller marks it
    t.grow(5, 3'000'000);
    CHECK(det.observe(at(3), t.samples()).empty());
    CHECK(det.tracked_flows() == 4);
    CHECK(det.heavy_clients() == std::vector<Detector::HeavyClient>{{0, addr("198.51.100.9")}});
}

TEST_CASE("remote_ports: this host initiated, so the original direction counts, not the reply") {
    Detector det({upload_rule()}, host_addresses(), every_second());
    Table t;
    t.put(outbound(1, "198.51.100.9", 5301, 0, 0));
    t.put(outbound(2, "198.51.100.10", 5301, 0, 0));
    det.observe(at(0), t.samples());
    t.flows.at(1).reply_bytes = 50'000'000;  // downloads from the remote end: not toward the client
    t.flows.at(1).orig_bytes = 999'999;
    t.flows.at(2).orig_bytes = 1'000'000;
    auto ds = det.observe(at(1), t.samples());
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].client == addr("198.51.100.10"));
    CHECK(ds[0].measured == 1'000'000);
}

TEST_CASE("a client below client_bytes is never marked, one just above is, at the poll its window passes") {
    auto r = rule("window");
    r.local_ports = {993};
    r.client_bytes = 1'000'000;
    r.window_ms = 60'000;
    Detector det({r}, host_addresses(), every_second());
    Table t;
    t.put(inbound(1, "203.0.113.16", 993, 0));  // 16,000 bytes/s: at most 960,000 in any 60 s
    t.put(inbound(2, "203.0.113.17", 993, 0));  // 17,000 bytes/s: 1,003,000 after 59 s
    det.observe(at(0), t.samples());
    std::vector<uint64_t> marked_at;
    for (uint64_t s = 1; s <= 180; ++s) {
        t.grow(1, 16'000);
        t.grow(2, 17'000);
        for (const auto& d : det.observe(at(s), t.samples())) {
            CHECK(d.client == addr("203.0.113.17"));
            CHECK(d.measure == Measure::ClientBytes);
            CHECK(d.measured == 1'003'000);
            marked_at.push_back(s);
        }
    }
    CHECK(marked_at == std::vector<uint64_t>{59});
    CHECK_FALSE(det.is_heavy(0, addr("203.0.113.16")));
}

TEST_CASE(
    "client_bytes sums a client's connections, ended ones included, while each stays under flow_bytes") {
    Detector det({mailbox_rule()}, host_addresses(), every_second());
    Table t;
    CHECK(det.observe(at(0), {}).empty());
    t.put(inbound(1, "203.0.113.7", 993, 900'000));
    CHECK(det.observe(at(1), t.samples()).empty());  // 900,000
    t.end(1);
    t.put(inbound(2, "203.0.113.7", 993, 900'000));  // reconnects
    CHECK(det.observe(at(2), t.samples()).empty());  // 1,800,000
    CHECK(det.tracked_flows() == 1);
    // Connection 2 ends with 100,000 more bytes (its DESTROY event); connection 3 opens.
    FlowSample last = t.flows.at(2);
    last.reply_bytes = 1'000'000;
    last.alive = false;
    t.end(2);
    t.put(inbound(3, "203.0.113.7", 993, 900'000));
    auto samples = t.samples();
    samples.push_back(last);
    CHECK(det.observe(at(3), samples).empty());  // 2,800,000
    t.grow(3, 400'000);
    auto ds = det.observe(at(4), t.samples());  // 3,200,000
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].kind == DecisionKind::Mark);
    CHECK(ds[0].measure == Measure::ClientBytes);
    CHECK(ds[0].measured == 3'200'000);
    CHECK(ds[0].threshold == 3'000'000);
    CHECK(det.tracked_flows() == 1);
}

TEST_CASE("counters that restart and conntrack ids reused by another tuple are new connections") {
    auto r = rule("restart");
    r.local_ports = {993};
    r.client_bytes = 1'000;
    r.window_ms = 60'000;
    Detector det({r}, host_addresses(), every_second());
    Table t;
    t.put(inbound(1, "203.0.113.7", 993, 0));
    det.observe(at(0), t.samples());
    t.grow(1, 400);
    CHECK(det.observe(at(1), t.samples()).empty());  // 400
    t.flows.at(1).reply_bytes = 300;                 // smaller: a new connection, 300 new bytes
    CHECK(det.observe(at(2), t.samples()).empty());  // 700
    t.grow(1, 50);
    CHECK(det.observe(at(3), t.samples()).empty());  // 750
    FlowSample reused = inbound(1, "203.0.113.7", 993, 200);
    reused.orig_sport = 51111;  // same id, another tuple
    t.put(reused);
    CHECK(det.observe(at(4), t.samples()).empty());  // 950
    t.grow(1, 60);
    auto ds = det.observe(at(5), t.samples());  // 1,010
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].measured == 1'010);
}

TEST_CASE("thousands of clients: exactly the heavy ones are marked, sorted by address, idle ones forgotten") {
    auto r = rule("imap");
    r.local_ports = {993};
    r.flow_bytes = 500'000'000;
    Detector det({r}, host_addresses(), every_second());
    Table t;
    auto client = [](uint32_t i) {
        return "10.20." + std::to_string(i / 256) + "." + std::to_string(i % 256);
    };
    for (uint32_t i = 0; i < 5000; ++i) t.put(inbound(i + 1, client(i).c_str(), 993, 1000 + i));
    CHECK(det.observe(at(0), t.samples()).empty());
    CHECK(det.tracked_clients() == 5000);
    CHECK(det.tracked_flows() == 5000);
    for (uint32_t i : {4999u, 17u, 2500u}) t.grow(i + 1, 600'000'000);
    for (uint32_t i = 0; i < 5000; ++i) t.grow(i + 1, 1000);
    auto ds = det.observe(at(1), t.samples());
    REQUIRE(ds.size() == 3);
    CHECK(ds[0].client == addr("10.20.0.17"));
    CHECK(ds[1].client == addr("10.20.9.196"));   // 2500
    CHECK(ds[2].client == addr("10.20.19.135"));  // 4999
    CHECK(ds[1].measured == 600'000'000 + 1000 + 2500 + 1000);
    CHECK_THAT(ds[2].reason, Catch::Contains("connection 5000 moved"));
    t.flows.clear();  // every connection ends
    CHECK(det.observe(at(2), t.samples()).empty());
    CHECK(det.tracked_flows() == 0);
    CHECK(det.tracked_clients() == 3);  // only the heavy ones are remembered
}

TEST_CASE("excluded clients are never marked nor tracked") {
    auto r = upload_rule();
    r.exclude = {prefix("10.0.0.0/8"), prefix("2001:db8:ff::/48")};
    Detector det({r}, host_addresses(), every_second());
    Table t;
    t.put(outbound(1, "10.1.2.3", 5301, 0));
    t.put(outbound(2, "2001:db8:ff::3", 5301, 0));
    t.put(outbound(3, "203.0.113.7", 5301, 0));
    det.observe(at(0), t.samples());
    for (uint32_t id : {1u, 2u, 3u}) t.grow(id, 10'000'000'000);
    auto ds = det.observe(at(1), t.samples());
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].client == addr("203.0.113.7"));
    CHECK(det.tracked_clients() == 1);
    CHECK(det.tracked_flows() == 1);
}

TEST_CASE(
    "release comes after release_after of quiet and not before, and a loud poll restarts the quiet time") {
    auto r = upload_rule();  // limit 2 Mbit/s: quiet below 1 Mbit/s = 125,000 bytes per 1 s poll
    r.release_after_ms =
        9'704;  // + 296 ms for the leaf queue to drain (73,948 bytes, the floor, at 2 Mbit/s)
    Detector det({r}, host_addresses(), every_second());
    Table t;
    t.put(outbound(1, "198.51.100.9", 5301, 0));
    det.observe(at(0), t.samples());
    t.grow(1, 2'000'000);
    REQUIRE(count(det.observe(at(1), t.samples()), DecisionKind::Mark) == 1);
    for (uint64_t s = 2; s <= 5; ++s) {  // capped at 2 Mbit/s: not quiet
        t.grow(1, 250'000);
        CHECK(det.observe(at(s), t.samples()).empty());
    }
    for (uint64_t s = 6; s <= 8; ++s) {  // 800 kbit/s: quiet
        t.grow(1, 100'000);
        CHECK(det.observe(at(s), t.samples()).empty());
    }
    t.grow(1, 200'000);  // 1.6 Mbit/s: loud again, quiet restarts after this poll (at 9 s)
    CHECK(det.observe(at(9), t.samples()).empty());
    for (uint64_t s = 10; s <= 18; ++s) {
        t.grow(1, 100'000);
        CHECK(det.observe(at(s), t.samples()).empty());
    }
    t.grow(1, 100'000);
    auto ds = det.observe(at(19), t.samples());
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].kind == DecisionKind::Release);
    CHECK(ds[0].client == addr("198.51.100.9"));
    CHECK(ds[0].measure == Measure::QuietRate);
    CHECK(ds[0].measured == 800'000);
    CHECK(ds[0].threshold == 1'000'000);
    CHECK_THAT(ds[0].reason, Catch::Contains("quiet for 10000 ms"));
    CHECK_FALSE(det.is_heavy(0, addr("198.51.100.9")));
}

TEST_CASE("a released client that turns heavy again needs another flow_bytes") {
    auto r = upload_rule();
    r.release_after_ms = 2'704;  // + 296 ms leaf queue drain: 3 s
    Detector det({r}, host_addresses(), every_second());
    Table t;
    t.put(outbound(1, "198.51.100.9", 5301, 0));
    det.observe(at(0), t.samples());
    t.grow(1, 1'500'000);
    REQUIRE(count(det.observe(at(1), t.samples()), DecisionKind::Mark) == 1);
    CHECK(det.observe(at(2), t.samples()).empty());
    CHECK(det.observe(at(3), t.samples()).empty());
    REQUIRE(count(det.observe(at(4), t.samples()), DecisionKind::Release) == 1);  // quiet since 1 s
    // The same connection: 300,000 bytes per poll, counted from its 1,500,000 at the release.
    std::vector<uint64_t> marked_at;
    for (uint64_t s = 5; s <= 12; ++s) {
        t.grow(1, 300'000);
        for (const auto& d : det.observe(at(s), t.samples())) {
            CHECK(d.kind == DecisionKind::Mark);
            CHECK(d.measured == 1'200'000);
            marked_at.push_back(s);
        }
    }
    CHECK(marked_at == std::vector<uint64_t>{8});
}

TEST_CASE("a release empties the client's window: it needs another client_bytes to be marked again") {
    auto r = mailbox_rule();     // 3,000,000 bytes in 60 s; quiet below 400 kbit/s (3 MB per minute)
    r.release_after_ms = 2'704;  // + 296 ms leaf queue drain: 3 s
    Detector det({r}, host_addresses(), every_second());
    Table t;
    t.put(inbound(1, "203.0.113.7", 993, 0));
    t.put(inbound(2, "203.0.113.7", 993, 0));
    det.observe(at(0), t.samples());
    t.grow(1, 1'600'000);
    t.grow(2, 1'600'000);
    REQUIRE(count(det.observe(at(1), t.samples()), DecisionKind::Mark) == 1);
    CHECK(det.observe(at(2), t.samples()).empty());
    CHECK(det.observe(at(3), t.samples()).empty());
    REQUIRE(count(det.observe(at(4), t.samples()), DecisionKind::Release) == 1);
    std::vector<uint64_t> marked_at;
    for (uint64_t s = 5; s <= 10; ++s) {
        t.grow(1, s == 9 ? 3'000'000 : 10);  // 3,200,000 bytes are still inside the 60 s
        for (const auto& d : det.observe(at(s), t.samples())) {
            CHECK(d.measured == 3'000'040);
            marked_at.push_back(s);
        }
    }
    CHECK(marked_at == std::vector<uint64_t>{9});
}

TEST_CASE("IPv6 clients are accounted and marked like IPv4 ones") {
    Detector det({mailbox_rule()}, host_addresses(), every_second());
    Table t;
    t.put(inbound(1, "2001:db8:7::9", 993, 0));
    t.put(inbound(2, "2001:db8:7::9", 993, 0));
    t.put(inbound(3, "2001:db8:7::10", 993, 0));
    det.observe(at(0), t.samples());
    t.grow(1, 1'600'000);
    t.grow(2, 1'600'000);
    t.grow(3, 1'600'000);
    auto ds = det.observe(at(1), t.samples());
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].client == addr("2001:db8:7::9"));
    CHECK(ds[0].measure == Measure::ClientBytes);
    CHECK(ds[0].measured == 3'200'000);  // both of its connections
}

TEST_CASE("forwarded traffic: the client inside the rule's clients prefixes is marked") {
    auto r = rule("lan-downloads");
    r.protocol = policy::Protocol::Any;
    r.clients = {prefix("10.9.0.0/16")};
    r.flow_bytes = 1'000'000;
    Detector det({r}, host_addresses(), every_second());
    auto forwarded = [](uint32_t id, const char* src, const char* dst, uint64_t reply) {
        FlowSample f;
        f.id = id;
        f.l4proto = kTcp;
        f.orig_src = addr(src);
        f.orig_dst = addr(dst);
        f.orig_sport = 50000;
        f.orig_dport = 443;
        f.reply_bytes = reply;
        return f;
    };
    std::vector<FlowSample> s = {forwarded(1, "10.9.1.2", "93.184.216.34", 0),
                                 forwarded(2, "10.10.1.2", "93.184.216.34", 0)};
    det.observe(at(0), s);
    CHECK(det.tracked_flows() == 1);
    s[0].reply_bytes = 2'000'000;
    s[1].reply_bytes = 2'000'000;
    auto ds = det.observe(at(1), s);
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].client == addr("10.9.1.2"));
    CHECK(ds[0].measured == 2'000'000);
}

TEST_CASE("the rate rule needs the full `for` duration above client_rate") {
    auto r = rule("rate");
    r.local_ports = {993};
    r.client_rate_bits_per_s = 8'000'000;  // 1,000,000 bytes per 1 s poll
    r.for_ms = 5'000;
    Options o = every_second();
    SECTION("a steady 16 Mbit/s client is marked after 5 s, not before") {
        Detector det({r}, host_addresses(), o);
        Table t;
        t.put(inbound(1, "203.0.113.7", 993, 0));
        t.put(inbound(2, "203.0.113.8", 993, 0));  // 7.2 Mbit/s: below
        det.observe(at(0), t.samples());
        for (uint64_t s = 1; s <= 4; ++s) {
            t.grow(1, 2'000'000);
            t.grow(2, 900'000);
            CHECK(det.observe(at(s), t.samples()).empty());
        }
        t.grow(1, 2'000'000);
        t.grow(2, 900'000);
        auto ds = det.observe(at(5), t.samples());
        REQUIRE(ds.size() == 1);
        CHECK(ds[0].client == addr("203.0.113.7"));
        CHECK(ds[0].measure == Measure::ClientRate);
        CHECK(ds[0].measured == 16'000'000);
        CHECK(ds[0].threshold == 8'000'000);
    }
    SECTION("one poll below restarts the duration") {
        o.rate_average_ms = 0;  // no smoothing: each poll's rate
        Detector det({r}, host_addresses(), o);
        Table t;
        t.put(inbound(1, "203.0.113.7", 993, 0));
        det.observe(at(0), t.samples());
        std::vector<uint64_t> marked_at;
        for (uint64_t s = 1; s <= 12; ++s) {
            t.grow(1, s == 4 ? 500'000 : 2'000'000);
            if (!det.observe(at(s), t.samples()).empty()) marked_at.push_back(s);
        }
        CHECK(marked_at == std::vector<uint64_t>{9});  // above since 4 s, 5 s later
    }
}

TEST_CASE("the first matching rule takes the flow and later rules never see it") {
    auto first = rule("first");
    first.local_ports = {993};
    first.flow_bytes = 10'000'000;
    auto second = rule("second");
    second.flow_bytes = 1'000'000;
    Detector det({first, second}, host_addresses(), every_second());
    Table t;
    t.put(inbound(1, "203.0.113.7", 993, 0));
    t.put(inbound(2, "203.0.113.7", 80, 0));
    det.observe(at(0), t.samples());
    t.grow(1, 5'000'000);  // under the first rule's threshold, over the second's
    t.grow(2, 2'000'000);
    auto ds = det.observe(at(1), t.samples());
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].rule == 1);
    CHECK(ds[0].measured == 2'000'000);  // connection 1 (5,000,000) is not the second rule's
    CHECK(det.tracked_clients() == 2);   // (first, client) and (second, client)
    t.grow(1, 6'000'000);
    ds = det.observe(at(2), t.samples());
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].rule == 0);
    CHECK(ds[0].measured == 11'000'000);
}

TEST_CASE("decisions of one poll are sorted by rule, then client address") {
    auto a = upload_rule();
    auto b = rule("any");
    b.flow_bytes = 1'000'000;
    Detector det({a, b}, host_addresses(), every_second());
    Table t;
    t.put(inbound(1, "203.0.113.9", 80, 0));
    t.put(outbound(2, "198.51.100.20", 5301, 0));
    t.put(inbound(3, "203.0.113.2", 80, 0));
    t.put(outbound(4, "198.51.100.3", 5301, 0));
    t.put(inbound(5, "2001:db8:1::1", 80, 0));
    det.observe(at(0), t.samples());
    for (uint32_t id = 1; id <= 5; ++id) t.grow(id, 5'000'000);
    auto ds = det.observe(at(1), t.samples());
    REQUIRE(ds.size() == 5);
    std::vector<std::pair<size_t, std::string>> order;
    for (const auto& d : ds) order.emplace_back(d.rule, d.client.str());
    CHECK(order == std::vector<std::pair<size_t, std::string>>{{0, "198.51.100.3"},
                                                               {0, "198.51.100.20"},
                                                               {1, "203.0.113.2"},
                                                               {1, "203.0.113.9"},
                                                               {1, "2001:db8:1::1"}});
}
