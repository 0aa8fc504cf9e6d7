// Properties of the encoder over random records and budgets, checked without decoding records:
// every message within its budget, sets tiling it with short zero padding, sequence numbers
// counting records, and every record's bytes present once, in order.
#include <catch2/catch.hpp>

#include <random>

#include "message_check.hpp"

using namespace flowshaper;
using namespace flowshaper::flowrec;

namespace {

FlowRecord random_record(std::mt19937_64& rng) {
    FlowRecord r;
    r.family = rng() % 3 == 0 ? net::Family::V6 : net::Family::V4;
    for (net::Address* a : {&r.src, &r.dst, &r.post_src, &r.post_dst}) {
        a->family = r.family;
        for (int i = 0; i < a->byte_width(); ++i)
            a->bytes[static_cast<size_t>(i)] = static_cast<uint8_t>(rng());
    }
    r.l4proto = static_cast<uint8_t>(rng());
    r.tos = static_cast<uint8_t>(rng());
    r.reason = static_cast<EndReason>(1 + rng() % 5);
    r.sport = static_cast<uint16_t>(rng());
    r.dport = static_cast<uint16_t>(rng());
    r.start_ms = rng();
    r.end_ms = rng();
    r.octets = rng();
    r.rev_packets = rng();
    return r;
}

}  // namespace

TEST_CASE("random records in random budgets: messages are well formed and carry every record once",
          "[ipfix][property]") {
    std::mt19937_64 rng(20261202);
    for (int round = 0; round < 300; ++round) {
        std::vector<FlowRecord> records(rng() % 400);
        for (auto& r : records) r = random_record(rng);
        const size_t budget = round % 4 == 0 ? 65535 : 300 + rng() % 9000;
        const uint32_t domain = static_cast<uint32_t>(rng());
        INFO("round " << round << ", " << records.size() << " records, budget " << budget);
        CHECK(check::encode_and_check(records, budget, domain) == "");
    }
}

TEST_CASE("the property check catches tampered messages", "[ipfix][property]") {
    std::mt19937_64 rng(7);
    std::vector<FlowRecord> records(40);
    for (auto& r : records) r = random_record(rng);
    std::string error;
    const auto good = check::encode_all(records, 1472, 1, &error);
    REQUIRE(error.empty());
    REQUIRE(good.size() >= 3);
    REQUIRE(check::check_messages(records, good, 1472, 1) == "");

    auto bad = good;
    bad[1][8 + 3] ^= 1;  // sequence number
    CHECK(check::check_messages(records, bad, 1472, 1) == "bad sequence or domain");
    bad = good;
    bad[2].back() = 0;  // a record byte or padding changed
    bad[2][bad[2].size() - 5] ^= 0xff;
    CHECK_FALSE(check::check_messages(records, bad, 1472, 1).empty());
    bad = good;
    bad.pop_back();
    CHECK(check::check_messages(records, bad, 1472, 1) == "records missing");
    CHECK(check::check_messages(records, good, good[0].size() - 1, 1) == "message size outside its budget");
}
