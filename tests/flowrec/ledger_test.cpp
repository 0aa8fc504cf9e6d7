// The ledger with a manual clock: deltas per period, counter resets, active timeouts, DESTROY
// events, connections that vanish unseen, shutdown, and its bound.
#include <catch2/catch.hpp>

#include <algorithm>

#include "flowshaper/flowrec/ledger.hpp"

using namespace flowshaper;
using namespace flowshaper::flowrec;
using kernel::FlowSample;

namespace {

constexpr uint64_t kT0 = 1700000000000;  // epoch ms

FlowSample conn(uint32_t id, uint64_t ob, uint64_t rb, uint16_t sport = 40000) {
    FlowSample s;
    s.id = id;
    s.l4proto = 6;
    s.orig_src = *net::Address::parse("10.0.0.2");
    s.orig_dst = *net::Address::parse("192.0.2.1");
    s.orig_sport = sport;
    s.orig_dport = 443;
    s.reply_src = s.orig_dst;
    s.reply_dst = *net::Address::parse("198.51.100.1");
    s.reply_sport = 443;
    s.reply_dport = 61000;
    s.orig_bytes = ob;
    s.orig_packets = ob / 100;
    s.reply_bytes = rb;
    s.reply_packets = rb / 1000;
    return s;
}

struct Clocked {
    Ledger ledger{LedgerOptions{10000, 1000, 100}};
    uint64_t now = kT0;
    std::vector<FlowRecord> out;

    // One poll at now (then now += 1 s) with these dump entries and these DESTROY events.
    void poll(std::initializer_list<FlowSample> dump, std::initializer_list<FlowSample> destroyed = {},
              bool complete = true) {
        ledger.begin_poll(now);
        for (const auto& s : dump) ledger.observe(s, 0, out);
        for (const auto& s : destroyed) ledger.destroyed(s, now, 0, out);
        ledger.end_poll(complete, out);
        now += 1000;
    }
};

}  // namespace

TEST_CASE("a connection gives one record per active timeout with the bytes of that period", "[ledger]") {
    Clocked c;
    for (int second = 0; second <= 25; ++second)
        c.poll({conn(1, 1000u * (second + 1), 5000u * (second + 1))});
    // polls at 0..25 s; periods end at the polls at 10 s and 20 s
    REQUIRE(c.out.size() == 2);
    CHECK(c.out[0].reason == EndReason::ActiveTimeout);
    CHECK(c.out[0].start_ms == kT0);
    CHECK(c.out[0].end_ms == kT0 + 10000);
    CHECK(c.out[0].octets == 11000);  // the total at 10 s
    CHECK(c.out[0].rev_octets == 55000);
    CHECK(c.out[0].packets == 110);
    CHECK(c.out[1].start_ms == kT0 + 10000);
    CHECK(c.out[1].end_ms == kT0 + 20000);
    CHECK(c.out[1].octets == 10000);
    // its DESTROY at 26 s: the rest, "end of flow"
    c.poll({}, {conn(1, 27000, 135000)});
    REQUIRE(c.out.size() == 3);
    CHECK(c.out[2].reason == EndReason::EndOfFlow);
    CHECK(c.out[2].start_ms == kT0 + 20000);
    CHECK(c.out[2].end_ms == kT0 + 26000);
    CHECK(c.out[2].octets == 27000 - 21000);
    CHECK(c.out[2].rev_octets == 135000 - 105000);
    uint64_t total = 0;
    for (const auto& r : c.out) total += r.octets;
    CHECK(total == 27000);
    CHECK(c.ledger.size() == 0);
}

TEST_CASE("the NAT translation comes from the reply tuple and the tuple is the original one", "[ledger]") {
    Clocked c;
    c.poll({}, {conn(9, 500, 700)});
    REQUIRE(c.out.size() == 1);
    const FlowRecord& r = c.out[0];
    CHECK(r.src.str() == "10.0.0.2");
    CHECK(r.sport == 40000);
    CHECK(r.post_src.str() == "198.51.100.1");
    CHECK(r.post_sport == 61000);
    CHECK(r.post_dst.str() == "192.0.2.1");
    CHECK(r.post_dport == 443);
}

TEST_CASE("a connection that began and ended between polls is exported whole from its DESTROY event",
          "[ledger]") {
    Clocked c;
    FlowSample s = conn(3, 1234, 5678);
    s.start_ns = (kT0 - 500) * 1000000;
    s.stop_ns = (kT0 - 100) * 1000000;
    c.poll({}, {s});
    REQUIRE(c.out.size() == 1);
    CHECK(c.out[0].reason == EndReason::EndOfFlow);
    CHECK(c.out[0].octets == 1234);
    CHECK(c.out[0].rev_octets == 5678);
    CHECK(c.out[0].start_ms == kT0 - 500);  // conntrack's own timestamps when it has them
    CHECK(c.out[0].end_ms == kT0 - 100);
}

TEST_CASE("totals that went down mean zeroed counters: the new total is the delta", "[ledger]") {
    Clocked c;
    c.poll({conn(1, 5000, 5000)});
    c.poll({conn(1, 300, 200)});  // conntrack -Z
    c.poll({}, {conn(1, 400, 900)});
    REQUIRE(c.out.size() == 1);
    CHECK(c.out[0].octets == 5000 + 300 + 100);
    CHECK(c.out[0].rev_octets == 5000 + 200 + 700);
    CHECK(c.ledger.stats().counter_resets == 1);
}

TEST_CASE("a connection missing from a complete dump without an event is closed with its last counters",
          "[ledger]") {
    Clocked c;
    c.poll({conn(1, 100, 100), conn(2, 200, 200, 40001)});
    c.poll({conn(1, 150, 150), conn(2, 250, 250, 40001)});
    c.poll({conn(1, 160, 160)}, {}, false);  // a filtered dump proves nothing
    c.poll({conn(1, 165, 165)});             // complete, 2 missing twice: its DESTROY may be late
    CHECK(c.out.empty());
    c.poll({conn(1, 170, 170)});  // the third poll without it: its DESTROY was lost
    REQUIRE(c.out.size() == 1);
    CHECK(c.out[0].reason == EndReason::LackOfResources);
    CHECK(c.out[0].octets == 250);
    CHECK(c.out[0].end_ms == kT0 + 1000);  // last seen
    // a DESTROY much later still adds only what was not exported yet
    for (int i = 0; i < 20; ++i) c.poll({conn(1, 180, 180)});
    c.poll({conn(1, 180, 180)}, {conn(2, 260, 250, 40001)});
    REQUIRE(std::count_if(c.out.begin(), c.out.end(), [](const FlowRecord& r) { return r.sport == 40001; }) ==
            2);
    CHECK(c.out.back().sport == 40001);
    CHECK(c.out.back().reason == EndReason::EndOfFlow);
    CHECK(c.out.back().octets == 10);
    CHECK(c.out.back().rev_octets == 0);
    CHECK(c.ledger.stats().vanished == 1);
}

TEST_CASE("a reused conntrack id with another tuple closes the old connection", "[ledger]") {
    Clocked c;
    c.poll({conn(1, 100, 100)});
    c.poll({conn(1, 7, 7, 50000)});
    REQUIRE(c.out.size() == 1);
    CHECK(c.out[0].sport == 40000);
    CHECK(c.out[0].reason == EndReason::LackOfResources);
    c.poll({}, {conn(1, 10, 10, 50000)});
    REQUIRE(c.out.size() == 2);
    CHECK(c.out[1].sport == 50000);
    CHECK(c.out[1].octets == 10);
}

TEST_CASE("an idle period sends nothing and shutdown sends the rest as forced end", "[ledger]") {
    Clocked c;
    c.poll({conn(1, 100, 100)});
    for (int i = 0; i < 30; ++i) c.poll({conn(1, 100, 100)});
    CHECK(c.out.size() == 1);  // the first period's bytes at 10 s, then idle
    c.poll({conn(1, 130, 100)});
    c.ledger.flush(c.now, c.out);
    REQUIRE(c.out.size() == 2);
    CHECK(c.out[1].reason == EndReason::ForcedEnd);
    CHECK(c.out[1].octets == 30);
    CHECK(c.ledger.size() == 0);
}

TEST_CASE("poll jitter does not move a period end by a whole poll", "[ledger]") {
    Clocked c;
    c.poll({conn(1, 100, 100)});
    c.now += 8950;  // the 10th poll comes 50 ms early (the 9th late, this one on time)
    c.poll({conn(1, 200, 200)});
    REQUIRE(c.out.size() == 1);
    CHECK(c.out[0].octets == 200);
}

TEST_CASE("the ledger tracks at most max_connections, the others come whole from their DESTROY", "[ledger]") {
    Clocked c;
    c.ledger.begin_poll(c.now);
    for (uint32_t id = 1; id <= 150; ++id)
        c.ledger.observe(conn(id, 10, 10, static_cast<uint16_t>(id)), 0, c.out);
    c.ledger.end_poll(true, c.out);
    CHECK(c.ledger.size() == 100);
    CHECK(c.ledger.stats().untracked == 50);
    c.ledger.destroyed(conn(150, 40, 50, 150), c.now, 0, c.out);
    REQUIRE(c.out.size() == 1);
    CHECK(c.out[0].octets == 40);
    CHECK(c.out[0].rev_octets == 50);
}

TEST_CASE("the DSCP flowshaper sets goes into postIpClassOfService", "[ledger]") {
    Clocked c;
    c.ledger.begin_poll(c.now);
    c.ledger.observe(conn(1, 10, 10), 8, c.out);
    c.ledger.end_poll(true, c.out);
    c.ledger.destroyed(conn(1, 20, 20), c.now, 0, c.out);
    REQUIRE(c.out.size() == 1);
    CHECK(c.out[0].tos == 0x20);
}

TEST_CASE("without a reply tuple (a sample from elsewhere) the post-NAT fields repeat the original ones",
          "[ledger]") {
    Clocked c;
    FlowSample s = conn(5, 10, 20);
    s.family = net::Family::V6;
    s.orig_src = *net::Address::parse("2001:db8::2");
    s.orig_dst = *net::Address::parse("2001:db8::1");
    s.reply_src = s.reply_dst = net::Address{net::Family::V6, {}};
    s.reply_sport = s.reply_dport = 0;
    c.poll({}, {s});
    REQUIRE(c.out.size() == 1);
    CHECK(c.out[0].post_src == s.orig_src);
    CHECK(c.out[0].post_dst == s.orig_dst);
    CHECK(c.out[0].post_sport == 40000);
    CHECK(c.out[0].post_dport == 443);
}

TEST_CASE("a DESTROY that comes polls after its entry left the dumps ends it with exact counters",
          "[ledger]") {
    // An entry that timed out is skipped by dumps until the garbage collector reaps it and sends
    // the DESTROY: no "lack of resources" record for it, and no byte counted twice.
    Clocked c;
    c.poll({conn(1, 100, 100)});
    c.poll({});
    c.poll({});
    CHECK(c.out.empty());
    c.poll({}, {conn(1, 120, 130)});
    REQUIRE(c.out.size() == 1);
    CHECK(c.out[0].reason == EndReason::EndOfFlow);
    CHECK(c.out[0].octets == 120);
    CHECK(c.out[0].rev_octets == 130);
    CHECK(c.ledger.stats().vanished == 0);
}
