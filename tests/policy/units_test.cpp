// tc-style units: rates, sizes, durations, DSCP, and printing them back.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "flowshaper/policy/units.hpp"

using namespace flowshaper::policy;

namespace {

struct Good {
    const char* text;
    uint64_t value;
};
struct Bad {
    const char* text;
    const char* message;  // UnitError::text()
};

}  // namespace

TEST_CASE("every rate unit converts to bits per second with bps units being bytes", "[units]") {
    const std::vector<Good> cases{
        {"1bit", 1},
        {"5kbit", 5'000},
        {"5mbit", 5'000'000},
        {"1gbit", 1'000'000'000},
        {"2tbit", 2'000'000'000'000},
        {"1bps", 8},
        {"3kbps", 24'000},
        {"1mbps", 8'000'000},
        {"1gbps", 8'000'000'000},
        {"1tbps", 8'000'000'000'000},
        {"1000", 1000},
        {"5MBIT", 5'000'000},
        {"5Mbit", 5'000'000},
        {"1GBps", 8'000'000'000},
        {"1.5mbit", 1'500'000},
        {"0.5kbit", 500},
        {"1.5bit", 2},  // rounded half up to whole bits
        {"0.0000001gbit", 100},
        {"2.125kbps", 17'000},
        {"18446744073709551615bit", UINT64_MAX},
        {"+7bit", 7},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        UnitError error;
        auto v = parse_rate_bits_per_s(c.text, &error);
        REQUIRE(v.has_value());
        CHECK(*v == c.value);
    }
}

TEST_CASE("bad rates are rejected with a message and a did-you-mean when close", "[units]") {
    const std::vector<Bad> cases{
        {"5mbits", "unknown rate unit 'mbits' in \"5mbits\"; did you mean 'mbit'?"},
        {"5kbt", "unknown rate unit 'kbt' in \"5kbt\"; did you mean 'kbit'?"},
        {"5q",
         "unknown rate unit 'q' in \"5q\"; expected bit, kbit, mbit, gbit, tbit, bps, kbps, mbps, gbps or "
         "tbps"},
        {"0mbit", "rate \"0mbit\" must be greater than zero"},
        {"0", "rate \"0\" must be greater than zero"},
        {"0.4bit", "rate \"0.4bit\" must be greater than zero"},
        {"-5mbit", "rate \"-5mbit\" must be greater than zero"},
        {"18446744073709551616bit", "rate \"18446744073709551616bit\" is too large"},
        {"20000000tbit", "rate \"20000000tbit\" is too large"},
        {"99999999999999999999999999", "rate \"99999999999999999999999999\" is too large"},
        {"", "invalid rate \"\": expected a number and a unit such as \"5mbit\""},
        {"fast", "invalid rate \"fast\": expected a number and a unit such as \"5mbit\""},
        {"mbit", "invalid rate \"mbit\": expected a number and a unit such as \"5mbit\""},
        {"1.mbit", "invalid rate \"1.mbit\": expected a number and a unit such as \"5mbit\""},
        {".5mbit", "invalid rate \".5mbit\": expected a number and a unit such as \"5mbit\""},
        {"5 mbit", "space between number and unit in \"5 mbit\"; did you mean '5mbit'?"},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        UnitError error;
        CHECK_FALSE(parse_rate_bits_per_s(c.text, &error).has_value());
        CHECK(error.text() == c.message);
    }
    CHECK_FALSE(parse_rate_bits_per_s("garbage", nullptr).has_value());
}

TEST_CASE("every size unit converts to bytes both decimal and binary", "[units]") {
    const std::vector<Good> cases{
        {"1B", 1},
        {"15KB", 15'000},
        {"500MB", 500'000'000},
        {"2GB", 2'000'000'000},
        {"1TB", 1'000'000'000'000},
        {"1KiB", 1024},
        {"1MiB", 1'048'576},
        {"1GiB", 1'073'741'824},
        {"1TiB", 1'099'511'627'776},
        {"1500", 1500},
        {"500mb", 500'000'000},
        {"1gib", 1'073'741'824},
        {"1.5GB", 1'500'000'000},
        {"0.5KiB", 512},
        {"16777215TiB", 18'446'742'974'197'923'840ull},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        auto v = parse_size_bytes(c.text, nullptr);
        REQUIRE(v.has_value());
        CHECK(*v == c.value);
    }
}

TEST_CASE("bad sizes are rejected including zero and overflow", "[units]") {
    const std::vector<Bad> cases{
        {"500MBs", "unknown size unit 'MBs' in \"500MBs\"; did you mean 'MB'?"},
        {"15kibs", "unknown size unit 'kibs' in \"15kibs\"; did you mean 'KiB'?"},
        {"1furlong",
         "unknown size unit 'furlong' in \"1furlong\"; expected B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"},
        {"0MB", "size \"0MB\" must be greater than zero"},
        {"-1KB", "size \"-1KB\" must be greater than zero"},
        {"16777216TiB", "size \"16777216TiB\" is too large"},
        {"big", "invalid size \"big\": expected a number and a unit such as \"500MB\""},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        UnitError error;
        CHECK_FALSE(parse_size_bytes(c.text, &error).has_value());
        CHECK(error.text() == c.message);
    }
}

TEST_CASE("every duration unit converts to milliseconds and a bare number needs a unit", "[units]") {
    const std::vector<Good> good{
        {"250ms", 250},   {"1s", 1'000},     {"10m", 600'000}, {"1h", 3'600'000}, {"1.5s", 1'500},
        {"10M", 600'000}, {"2H", 7'200'000}, {"0.5m", 30'000}, {"1MS", 1},
    };
    for (const auto& c : good) {
        INFO(c.text);
        auto v = parse_duration_ms(c.text, nullptr);
        REQUIRE(v.has_value());
        CHECK(*v == c.value);
    }
    const std::vector<Bad> bad{
        {"10", "duration \"10\" needs a unit (ms, s, m or h)"},
        {"0s", "duration \"0s\" must be greater than zero"},
        {"0.1ms", "duration \"0.1ms\" must be greater than zero"},
        {"-5s", "duration \"-5s\" must be greater than zero"},
        {"1hr", "unknown duration unit 'hr' in \"1hr\"; did you mean 'h'?"},
        {"30sec", "unknown duration unit 'sec' in \"30sec\"; expected ms, s, m or h"},
        {"1 s", "space between number and unit in \"1 s\"; did you mean '1s'?"},
        {"99999999999999999h", "duration \"99999999999999999h\" is too large"},
        {"soon", "invalid duration \"soon\": expected a number and a unit such as \"10s\""},
    };
    for (const auto& c : bad) {
        INFO(c.text);
        UnitError error;
        CHECK_FALSE(parse_duration_ms(c.text, &error).has_value());
        CHECK(error.text() == c.message);
    }
}

TEST_CASE("DSCP names map to their code points and numbers 0..63 are accepted", "[units]") {
    struct Dscp {
        const char* text;
        int value;
    };
    const std::vector<Dscp> good{
        {"CS0", 0},   {"CS1", 8},   {"CS2", 16},  {"CS3", 24},  {"CS4", 32},  {"CS5", 40},
        {"CS6", 48},  {"CS7", 56},  {"AF11", 10}, {"AF12", 12}, {"AF13", 14}, {"AF21", 18},
        {"AF22", 20}, {"AF23", 22}, {"AF31", 26}, {"AF32", 28}, {"AF33", 30}, {"AF41", 34},
        {"AF42", 36}, {"AF43", 38}, {"EF", 46},   {"LE", 1},    {"cs1", 8},   {"af41", 34},
        {"ef", 46},   {"Le", 1},    {"0", 0},     {"63", 63},   {"12", 12},
    };
    for (const auto& c : good) {
        INFO(c.text);
        auto v = parse_dscp(c.text, nullptr);
        REQUIRE(v.has_value());
        CHECK(int(*v) == c.value);
    }
    const std::vector<Bad> bad{
        {"64", "DSCP 64 is out of range 0..63"},
        {"-1", "DSCP -1 is out of range 0..63"},
        {"99999999999999999999999", "DSCP 99999999999999999999999 is out of range 0..63"},
        {"1.5", "invalid DSCP \"1.5\": expected a name such as CS1 or a number 0..63"},
        {"EFF", "unknown DSCP name 'EFF'; did you mean 'EF'?"},
        {"AF44", "unknown DSCP name 'AF44'; did you mean 'AF41'?"},
        {"AF51", "unknown DSCP name 'AF51'; did you mean 'AF11'?"},
        {"scavenger", "unknown DSCP name 'scavenger'; expected CS0-CS7, AF11-AF43, EF, LE or a number 0..63"},
        {"", "unknown DSCP name ''; expected CS0-CS7, AF11-AF43, EF, LE or a number 0..63"},
    };
    for (const auto& c : bad) {
        INFO(c.text);
        UnitError error;
        CHECK_FALSE(parse_dscp(c.text, &error).has_value());
        CHECK(error.text() == c.message);
    }
}

TEST_CASE("values print back in the largest exact tc unit and parse to the same value", "[units]") {
    CHECK(format_rate(5'000'000) == "5mbit");
    CHECK(format_rate(1'500'000) == "1500kbit");
    CHECK(format_rate(1'000'000'000) == "1gbit");
    CHECK(format_rate(3'000'000'000'000) == "3tbit");
    CHECK(format_rate(1234) == "1234bit");
    CHECK(format_rate(0) == "0bit");
    CHECK(format_size(500'000'000) == "500MB");
    CHECK(format_size(1'048'576) == "1MiB");
    CHECK(format_size(3 * 1024) == "3KiB");
    CHECK(format_size(17) == "17B");
    CHECK(format_duration(600'000) == "10m");
    CHECK(format_duration(3'600'000) == "1h");
    CHECK(format_duration(90'000) == "90s");
    CHECK(format_duration(250) == "250ms");
    for (uint64_t v : std::vector<uint64_t>{1, 999, 1000, 123'456'789, 8'000'000'000, UINT64_MAX}) {
        INFO(v);
        CHECK(parse_rate_bits_per_s(format_rate(v), nullptr) == v);
        CHECK(parse_size_bytes(format_size(v), nullptr) == v);
        CHECK(parse_duration_ms(format_duration(v), nullptr) == v);
    }
}
