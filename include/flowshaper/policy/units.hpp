// tc-style units: rates, sizes, durations, and DSCP names.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace flowshaper::policy {

// A parse failure. `message` is complete without the suggestion ("unknown rate unit 'mbits' in
// \"5mbits\""); `suggestion` is a did-you-mean unit or name when one is close ("mbit").
struct UnitError {
    std::string message;
    std::string suggestion;

    // The message with "; did you mean 'x'?" appended when there is a suggestion.
    std::string text() const;
};

// Units are case-insensitive and numbers may have decimals ("1.5mbit"); the result is rounded to a
// whole unit of the result. Zero, negative and uint64 overflow are errors. `error` may be null.
//
// "5mbit" -> 5'000'000 bits/s; "1mbps" -> 8'000'000 bits/s (tc: bps is bytes per second);
// "1000" -> 1000 bits/s.
std::optional<uint64_t> parse_rate_bits_per_s(std::string_view text, UnitError* error);
// "500MB" -> 500'000'000; "1GiB" -> 1'073'741'824; a bare integer is bytes.
std::optional<uint64_t> parse_size_bytes(std::string_view text, UnitError* error);
// "10m" -> 600'000; "250ms" -> 250; "1h" -> 3'600'000; "1.5s" -> 1500. A bare number needs a unit.
std::optional<uint64_t> parse_duration_ms(std::string_view text, UnitError* error);
// "CS1" -> 8, "EF" -> 46, "LE" -> 1, "AF41" -> 34 (AFxy = 8x + 2y), "12" -> 12; names are
// case-insensitive, numbers 0..63.
std::optional<uint8_t> parse_dscp(std::string_view text, UnitError* error);

// tc spelling for printing, exact (the largest unit that divides the value): 5000000 -> "5mbit",
// 1234 -> "1234bit", 1500000 -> "1500kbit"; sizes "500MB", "1MiB", "17B"; durations "10m", "250ms".
std::string format_rate(uint64_t bits_per_s);
std::string format_size(uint64_t bytes);
std::string format_duration(uint64_t ms);

}  // namespace flowshaper::policy
