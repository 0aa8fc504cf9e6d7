// detect::ClientRates with a manual clock: each observe() is one dump at a time the test picks.
#include <catch2/catch.hpp>

#include "flowshaper/detect/client_rates.hpp"

using namespace flowshaper;
using namespace flowshaper::detect;

namespace {

const net::Address kServer = *net::Address::parse("192.0.2.1");
const net::Address kClient = *net::Address::parse("203.0.113.7");
const net::Address kOther = *net::Address::parse("198.51.100.5");
const LocalAddresses kLocal({kServer, *net::Address::parse("127.0.0.1")});

// The client opened a connection to us: toward it is the reply direction.
FlowSample served(uint32_t id, const net::Address& client, uint64_t to_client, uint64_t from_client) {
    FlowSample f;
    f.id = id;
    f.l4proto = 6;
    f.orig_src = client;
    f.orig_dst = kServer;
    f.orig_sport = 40000;
    f.orig_dport = 993;
    f.orig_bytes = from_client;
    f.reply_bytes = to_client;
    return f;
}

const ClientRate* row_of(const std::vector<ClientRate>& rows, const net::Address& a) {
    for (const auto& r : rows)
        if (r.client == a) return &r;
    return nullptr;
}

}  // namespace

TEST_CASE("a steady download reads the same rate over 2 s, 10 s and 40 s") {
    ClientRates rates;
    uint64_t to = 0;
    for (uint64_t t = 0; t <= 300'000; t += 1000, to += 1'000'000)  // 1 MB/s = 8 Mbit/s toward the client
        rates.observe(t, {served(1, kClient, to, to / 100)}, kLocal);
    auto rows = rates.rows();
    REQUIRE(rows.size() == 1);
    for (int i = 0; i < 3; ++i) {
        CHECK(rows[0].to_bits_per_s[i] == Approx(8'000'000).epsilon(0.01));
        CHECK(rows[0].from_bits_per_s[i] == Approx(80'000).epsilon(0.01));
    }
    CHECK(rows[0].flows == 1);
    CHECK(rows[0].to_bytes == 300'000'000);
}

TEST_CASE("the 2 s rate follows a change within seconds, the 40 s rate slowly") {
    ClientRates rates;
    uint64_t to = 0, t = 0;
    for (; t <= 200'000; t += 1000) rates.observe(t, {served(1, kClient, to, 0)}, kLocal);  // idle
    for (int i = 0; i < 5; ++i) {  // then 5 s at 10 MB/s (80 Mbit/s)
        t += 1000;
        to += 10'000'000;
        rates.observe(t, {served(1, kClient, to, 0)}, kLocal);
    }
    auto r = rates.rows().at(0);
    CHECK(r.to_bits_per_s[0] > 0.9 * 80e6);  // 1 - e^-2.5 = 92 %
    CHECK(r.to_bits_per_s[1] == Approx(80e6 * (1 - std::exp(-0.5))).epsilon(0.01));
    CHECK(r.to_bits_per_s[2] == Approx(80e6 * (1 - std::exp(-5.0 / 40))).epsilon(0.01));
    for (int i = 0; i < 20; ++i) {  // quiet again for 20 s
        t += 1000;
        rates.observe(t, {served(1, kClient, to, 0)}, kLocal);
    }
    r = rates.rows().at(0);
    CHECK(r.to_bits_per_s[0] < 0.001 * 80e6);
    CHECK(r.to_bits_per_s[2] > 0.05 * 80e6);
}

TEST_CASE("irregular dump intervals weigh by time: one 4 s gap equals four 1 s steps") {
    ClientRates a, b;
    a.observe(0, {served(1, kClient, 0, 0)}, kLocal);
    b.observe(0, {served(1, kClient, 0, 0)}, kLocal);
    for (uint64_t s = 1; s <= 4; ++s) a.observe(s * 1000, {served(1, kClient, s * 500'000, 0)}, kLocal);
    b.observe(4000, {served(1, kClient, 2'000'000, 0)}, kLocal);
    for (int i = 0; i < 3; ++i)
        CHECK(b.rows()[0].to_bits_per_s[i] == Approx(a.rows()[0].to_bits_per_s[i]).epsilon(0.001));
}

TEST_CASE(
    "toward the client is the reply direction when it opened the connection, the original when we did") {
    ClientRates rates;
    FlowSample ours;  // this host opened a connection to kOther (a backup upload, say)
    ours.id = 2;
    ours.orig_src = kServer;
    ours.orig_dst = kOther;
    rates.observe(0, {served(1, kClient, 0, 0), ours}, kLocal);
    ours.orig_bytes = 4'000'000;  // 4 MB toward kOther in 1 s
    ours.reply_bytes = 100'000;
    rates.observe(1000, {served(1, kClient, 1'000'000, 10'000), ours}, kLocal);
    auto rows = rates.rows();
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].client == kOther);  // highest rate toward the client first
    CHECK(rows[0].to_bytes == 4'000'000);
    CHECK(rows[0].from_bytes == 100'000);
    CHECK(rows[1].client == kClient);
    CHECK(rows[1].to_bytes == 1'000'000);
    CHECK(rows[1].from_bytes == 10'000);
    CHECK(rows[1].to_bits_per_s[0] == 8'000'000);  // the first interval is taken whole
}

TEST_CASE("a new talker shows its rate at once over all three periods, then they part") {
    ClientRates rates;
    rates.observe(0, {served(1, kClient, 0, 0)}, kLocal);
    rates.observe(1000, {served(1, kClient, 5'000'000, 0)}, kLocal);  // 40 Mbit/s in its first second
    auto r = rates.rows().at(0);
    for (int i = 0; i < 3; ++i) CHECK(r.to_bits_per_s[i] == 40'000'000);
    rates.observe(2000, {served(1, kClient, 5'000'000, 0)}, kLocal);  // then silence
    r = rates.rows().at(0);
    CHECK(r.to_bits_per_s[0] == Approx(40e6 * std::exp(-0.5)).epsilon(0.001));
    CHECK(r.to_bits_per_s[2] == Approx(40e6 * std::exp(-1.0 / 40)).epsilon(0.001));
}

TEST_CASE("local-to-local traffic has no client and the first dump only sets the baseline") {
    ClientRates rates;
    FlowSample local;
    local.id = 9;
    local.orig_src = kServer;
    local.orig_dst = *net::Address::parse("127.0.0.1");
    local.orig_bytes = local.reply_bytes = 1'000'000'000;
    rates.observe(0, {local, served(1, kClient, 5'000'000'000, 0)}, kLocal);
    rates.observe(1000, {local, served(1, kClient, 5'000'000'000, 0)}, kLocal);
    auto rows = rates.rows();
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].to_bits_per_s[0] == 0);  // 5 GB before the first dump are not a rate
    CHECK(rows[0].to_bytes == 5'000'000'000);
}

TEST_CASE("a connection that begins between dumps counts in full, one that ends counts its last bytes") {
    ClientRates rates;
    rates.observe(0, {served(1, kClient, 0, 0)}, kLocal);
    auto ended = served(1, kClient, 1'000'000, 0);
    ended.alive = false;  // DESTROY event's last counters
    rates.observe(1000, {ended, served(2, kClient, 1'000'000, 0)}, kLocal);
    auto r = *row_of(rates.rows(), kClient);
    CHECK(r.flows == 1);
    CHECK(r.to_bits_per_s[0] == 16'000'000);
    CHECK(rates.flows() == 1);
}

TEST_CASE("a client without connections is forgotten once its rates have decayed") {
    ClientRates rates;
    rates.observe(0, {served(1, kClient, 0, 0)}, kLocal);
    rates.observe(1000, {served(1, kClient, 1'000'000, 0)}, kLocal);
    rates.observe(2000, {}, kLocal);
    CHECK(rates.clients() == 1);  // still decaying: shown as a recent talker
    CHECK(rates.flows() == 0);
    uint64_t t = 2000;
    while (rates.clients() > 0 && t < 3'600'000) rates.observe(t += 10'000, {}, kLocal);
    CHECK(rates.clients() == 0);
    CHECK(t > 400'000);  // 40 s time constant: 8 Mbit/s needs ~16 constants to fall below 1 bit/s
    CHECK(t < 1'200'000);
}

TEST_CASE("state is bounded: clients beyond the limit are not tracked and are counted") {
    ClientRates rates(/*max_clients=*/2, /*max_flows=*/10);
    std::vector<FlowSample> dump;
    for (uint32_t i = 0; i < 5; ++i)
        dump.push_back(served(i + 1, net::Address::from_v4(0xcb007100u + i), 0, 0));
    rates.observe(0, dump, kLocal);
    CHECK(rates.clients() == 2);
    CHECK(rates.flows() == 2);
    CHECK(rates.dropped() == 3);
}

TEST_CASE("a reused conntrack id with another client is a new connection, not a negative delta") {
    ClientRates rates;
    rates.observe(0, {served(1, kClient, 9'000'000, 0)}, kLocal);
    rates.observe(1000, {served(1, kOther, 1000, 0)}, kLocal);
    auto rows = rates.rows();
    auto other = row_of(rows, kOther);
    REQUIRE(other);
    CHECK(other->to_bits_per_s[0] == 8000);
    CHECK(row_of(rates.rows(), kClient) == nullptr);  // no connection, no rate: forgotten
}
