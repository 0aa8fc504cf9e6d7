// tc-style units: rates, sizes, durations, and DSCP names.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace flowshaper::policy {

// A parse failure; `suggestion` is a did-you-mean unit when one is close.
struct UnitError {
    std::string message;
    std::string suggestion;
};

// "5mbit" -> 5'000'000 bits/s; "1mbps" -> 8'000'000 bits/s (tc: bps is bytes per second).
std::optional<uint64_t> parse_rate_bits_per_s(std::string_view text, UnitError* error);
// "500MB" -> 500'000'000; "1GiB" -> 1'073'741'824; a bare integer is bytes.
std::optional<uint64_t> parse_size_bytes(std::string_view text, UnitError* error);
// "10m" -> 600'000; "250ms" -> 250; "1h" -> 3'600'000.
std::optional<uint64_t> parse_duration_ms(std::string_view text, UnitError* error);
// "CS1" -> 8, "EF" -> 46, "LE" -> 1, "AF41" -> 34, "12" -> 12.
std::optional<uint8_t> parse_dscp(std::string_view text, UnitError* error);

// tc spelling for printing: 5000000 -> "5mbit", 1234 -> "1234bit".
std::string format_rate(uint64_t bits_per_s);
std::string format_size(uint64_t bytes);
std::string format_duration(uint64_t ms);

}  // namespace flowshaper::policy
