#include <catch2/catch.hpp>

#include "flowshaper/plan/marks.hpp"

using namespace flowshaper;

TEST_CASE("deposit and extract spread values over the mask's bits and back") {
    CHECK(plan::deposit_bits(0b101, 0x00ff0000) == 0x00050000);
    CHECK(plan::deposit_bits(0b11, 0b1010) == 0b1010);
    CHECK(plan::extract_bits(0x00050000, 0x00ff0000) == 0b101);
    for (uint32_t v = 0; v < 256; ++v)
        CHECK(plan::extract_bits(plan::deposit_bits(v, 0x0f0f0000), 0x0f0f0000) == v);
}

TEST_CASE("rule marks use the low bits of the mask and name their rule") {
    auto m = plan::MarkLayout::make(0x00ff0000, 3, false);
    REQUIRE(m);
    CHECK(m->rule_mask() == 0x00030000);
    CHECK(m->rule_value(0) == 0x00010000);
    CHECK(m->rule_value(2) == 0x00030000);
    CHECK(m->rule_of(0x00020000) == size_t{1});
    CHECK_FALSE(m->rule_of(0x00000000));
    CHECK_FALSE(m->rule_of(0xff00ffff));  // other users' bits are not ours
}

TEST_CASE("with per-client marks the bits above the rule field number the clients") {
    auto m = plan::MarkLayout::make(0x00ff0000, 1, true);
    REQUIRE(m);
    CHECK(m->rule_mask() == 0x00010000);
    CHECK(m->client_mask() == 0x00fe0000);
    CHECK(m->max_clients() == 127);
    uint32_t v = m->client_value(0, 5);
    CHECK(v == 0x000b0000);
    CHECK(m->rule_of(v) == size_t{0});
    CHECK(m->client_number_of(v) == 5u);
}

TEST_CASE("a mask too small for the rules is an error") {
    auto m = plan::MarkLayout::make(0x1, 2, false);
    REQUIRE_FALSE(m);
    CHECK_THAT(m.error().text(), Catch::Contains("too few for 2 [[detect]] rules"));
    CHECK_FALSE(plan::MarkLayout::make(0x3, 3, true));
}

TEST_CASE("the candidate flag takes the mask's highest bit when the fields can spare it") {
    auto m = plan::MarkLayout::make(0x00ff0000, 3, false, true);
    REQUIRE(m);
    CHECK(m->candidate_bit() == 0x00800000);
    CHECK(m->restore_mask() == 0x007f0000);
    CHECK(m->mask() == 0x00ff0000);
    CHECK(m->rule_mask() == 0x00030000);

    auto fw = plan::MarkLayout::make(0x00ff0000, 1, true, true);
    REQUIRE(fw);
    CHECK(fw->candidate_bit() == 0x00800000);
    CHECK(fw->client_mask() == 0x007e0000);  // the flag is not a client bit
    CHECK(fw->max_clients() == 63);
    CHECK((fw->client_value(0, 63) & fw->candidate_bit()) == 0);

    // No bit to spare: no flag, and the layout is the same as without asking.
    auto tight = plan::MarkLayout::make(0x3, 3, false, true);
    REQUIRE(tight);
    CHECK(tight->candidate_bit() == 0);
    CHECK(tight->restore_mask() == 0x3);
    auto tight_fw = plan::MarkLayout::make(0x3, 1, true, true);
    REQUIRE(tight_fw);
    CHECK(tight_fw->candidate_bit() == 0);
    CHECK(tight_fw->client_mask() == 0x2);
    CHECK(plan::MarkLayout::make(0x00ff0000, 3, false, false)->candidate_bit() == 0);
}
