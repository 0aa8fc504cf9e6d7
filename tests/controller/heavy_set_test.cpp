// The set of capped clients: marks, the fw number pool, and what a reload keeps.
#include <catch2/catch.hpp>

#include "flowshaper/controller/heavy_set.hpp"

using namespace flowshaper;
using controller::HeavyKey;
using controller::HeavySet;

namespace {
const auto kA = *net::Address::parse("198.51.100.1");
const auto kB = *net::Address::parse("198.51.100.2");
const auto kC = *net::Address::parse("198.51.100.3");

plan::MarkLayout layout(uint32_t mask, size_t rules, bool fw) {
    auto m = plan::MarkLayout::make(mask, rules, fw);
    REQUIRE(m);
    return *m;
}
}  // namespace

TEST_CASE("heavy set: u32 clients share their rule's mark, fw clients get numbers of their own") {
    HeavySet u32;
    auto m = layout(0x00ff0000, 2, false);
    u32.reset(m, false);
    CHECK(u32.add({1, kA}, {}) == m.rule_value(1));
    CHECK(u32.add({1, kB}, {}) == m.rule_value(1));

    HeavySet fw;
    auto f = layout(0x00ff0000, 2, true);
    fw.reset(f, true);
    auto a = fw.add({0, kA}, {});
    auto b = fw.add({0, kB}, {});
    REQUIRE(a);
    REQUIRE(b);
    CHECK(*a != *b);
    CHECK(f.client_number_of(*a) == 1u);
    CHECK(f.client_number_of(*b) == 2u);
}

TEST_CASE("heavy set: a released fw client's number returns to the pool only when its release finishes") {
    HeavySet fw;
    auto f = layout(0x00ff0000, 1, true);
    fw.reset(f, true);
    auto before = fw.free_numbers();
    auto a = fw.add({0, kA}, {});
    fw.find({0, kA})->releasing = true;
    CHECK(fw.free_numbers() == before - 1);  // releasing: its connections may still carry it
    fw.finish_release({0, kA});
    CHECK(fw.free_numbers() == before);
    CHECK(fw.add({0, kB}, {}) == a);  // reused only now
}

TEST_CASE("heavy set: the pool runs dry instead of sharing a number") {
    HeavySet fw;
    auto f = layout(0x00000007, 1, true);  // 1 rule bit, 2 client bits: 3 numbers
    fw.reset(f, true);
    REQUIRE(f.max_clients() == 3);
    std::set<uint32_t> marks;
    for (uint8_t i = 1; i <= 3; ++i) {
        auto m = fw.add({0, *net::Address::parse("10.0.0." + std::to_string(i))}, {});
        REQUIRE(m);
        marks.insert(*m);
    }
    CHECK(marks.size() == 3);
    CHECK_FALSE(fw.add({0, kA}, {}));
    CHECK(fw.size() == 3);
}

TEST_CASE("heavy set: a reload keeps clients of rules that stay, with their fw numbers, re-indexed") {
    HeavySet fw;
    auto f = layout(0x00ff0000, 2, true);
    fw.reset(f, true);
    auto a = *fw.add({0, kA}, {"flow_bytes", 5, 4, "big", 7});
    auto b = *fw.add({1, kB}, {});
    fw.find({0, kA})->placed = true;
    // New policy: old rule 1 is now rule 0, old rule 0 is gone, a third rule is new.
    auto g = layout(0x00ff0000, 2, true);
    auto gone = fw.reload(g, true, {std::nullopt, 0});
    REQUIRE(gone.size() == 1);
    CHECK(gone[0] == HeavyKey{0, kA});
    REQUIRE(fw.size() == 1);
    const auto* kept = fw.find({0, kB});
    REQUIRE(kept);
    CHECK(g.client_number_of(kept->mark) == f.client_number_of(b));
    CHECK(g.rule_of(kept->mark) == 0u);
    // kA's number is free again, kB's is not.
    auto c = fw.add({0, kC}, {});
    REQUIRE(c);
    CHECK(g.client_number_of(*c) == f.client_number_of(a));
}
