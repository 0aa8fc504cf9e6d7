#include "flowshaper/policy/units.hpp"

#include <array>
#include <cctype>
#include <limits>
#include <vector>

#include "suggest.hpp"

namespace flowshaper::policy {

namespace {

using u128 = unsigned __int128;

struct Unit {
    std::string_view name;  // as printed in suggestions; matched case-insensitively
    uint64_t factor;
};

constexpr std::array kRateUnits{
    Unit{"bit", 1},
    Unit{"kbit", 1'000},
    Unit{"mbit", 1'000'000},
    Unit{"gbit", 1'000'000'000},
    Unit{"tbit", 1'000'000'000'000},
    Unit{"bps", 8},
    Unit{"kbps", 8'000},
    Unit{"mbps", 8'000'000},
    Unit{"gbps", 8'000'000'000},
    Unit{"tbps", 8'000'000'000'000},
};
constexpr std::array kSizeUnits{
    Unit{"B", 1},
    Unit{"KB", 1'000},
    Unit{"MB", 1'000'000},
    Unit{"GB", 1'000'000'000},
    Unit{"TB", 1'000'000'000'000},
    Unit{"KiB", 1ull << 10},
    Unit{"MiB", 1ull << 20},
    Unit{"GiB", 1ull << 30},
    Unit{"TiB", 1ull << 40},
};
constexpr std::array kDurationUnits{
    Unit{"ms", 1},
    Unit{"s", 1'000},
    Unit{"m", 60'000},
    Unit{"h", 3'600'000},
};

// One kind of quantity: its name in messages, its units, and what a bare number means.
struct Quantity {
    std::string_view what;  // "rate", "size", "duration"
    const Unit* units;
    size_t unit_count;
    std::string_view unit_list;  // for messages
    std::string_view example;    // "5mbit"
    bool bare_number_allowed;
};

constexpr Quantity kRate{"rate",
                         kRateUnits.data(),
                         kRateUnits.size(),
                         "bit, kbit, mbit, gbit, tbit, bps, kbps, mbps, gbps or tbps",
                         "5mbit",
                         true};
constexpr Quantity kSize{
    "size", kSizeUnits.data(), kSizeUnits.size(), "B, KB, MB, GB, TB, KiB, MiB, GiB or TiB", "500MB", true};
constexpr Quantity kDuration{"duration", kDurationUnits.data(), kDurationUnits.size(), "ms, s, m or h", "10s",
                             false};

// "1.5mbit" split into its parts.
struct Number {
    bool negative = false;
    std::string_view integer;   // digits before the point, never empty
    std::string_view fraction;  // digits after the point, maybe empty
    std::string_view unit;      // the rest
};

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

std::optional<Number> split_number(std::string_view text) {
    Number n;
    size_t i = 0;
    if (i < text.size() && (text[i] == '-' || text[i] == '+')) n.negative = text[i++] == '-';
    size_t start = i;
    while (i < text.size() && is_digit(text[i])) ++i;
    n.integer = text.substr(start, i - start);
    if (n.integer.empty()) return std::nullopt;
    if (i < text.size() && text[i] == '.') {
        size_t frac_start = ++i;
        while (i < text.size() && is_digit(text[i])) ++i;
        n.fraction = text.substr(frac_start, i - frac_start);
        if (n.fraction.empty()) return std::nullopt;
    }
    n.unit = text.substr(i);
    return n;
}

void fail(UnitError* error, std::string message, std::string suggestion = {}) {
    if (error) *error = UnitError{std::move(message), std::move(suggestion)};
}

std::string quoted(std::string_view text) {
    std::string out = "\"";
    out.append(text);
    return out += '"';
}

// integer.fraction * factor, rounded half up; nullopt on uint64 overflow.
std::optional<uint64_t> scale(const Number& n, uint64_t factor) {
    constexpr u128 kMax = std::numeric_limits<uint64_t>::max();
    u128 whole = 0;
    for (char c : n.integer) {
        whole = whole * 10 + static_cast<unsigned>(c - '0');
        if (whole > kMax) return std::nullopt;
    }
    u128 total = whole * factor;
    if (total > kMax) return std::nullopt;
    u128 frac = 0;
    u128 denominator = 1;
    for (size_t i = 0; i < n.fraction.size() && i < 18; ++i) {
        frac = frac * 10 + static_cast<unsigned>(n.fraction[i] - '0');
        denominator *= 10;
    }
    total += (frac * factor + denominator / 2) / denominator;
    if (total > kMax) return std::nullopt;
    return static_cast<uint64_t>(total);
}

const Unit* find_unit(const Quantity& q, std::string_view unit) {
    std::string lower = detail::lowercase(unit);
    for (size_t i = 0; i < q.unit_count; ++i)
        if (detail::lowercase(q.units[i].name) == lower) return &q.units[i];
    return nullptr;
}

std::optional<uint64_t> parse_quantity(const Quantity& q, std::string_view text, UnitError* error) {
    auto n = split_number(text);
    if (!n) {
        fail(error, "invalid " + std::string(q.what) + " " + quoted(text) +
                        ": expected a number and a unit such as " + quoted(q.example));
        return std::nullopt;
    }
    uint64_t factor = 1;
    if (n->unit.empty()) {
        if (!q.bare_number_allowed) {
            fail(error, std::string(q.what) + " " + quoted(text) + " needs a unit (" +
                            std::string(q.unit_list) + ")");
            return std::nullopt;
        }
    } else if (const Unit* unit = find_unit(q, n->unit)) {
        factor = unit->factor;
    } else if (size_t first = n->unit.find_first_not_of(' ');
               first != 0 && first != std::string_view::npos && find_unit(q, n->unit.substr(first))) {
        std::string joined(text.substr(0, text.size() - n->unit.size()));
        fail(error, "space between number and unit in " + quoted(text),
             joined + std::string(n->unit.substr(first)));
        return std::nullopt;
    } else {
        std::vector<std::string_view> names;
        for (size_t i = 0; i < q.unit_count; ++i) names.push_back(q.units[i].name);
        std::string suggestion = detail::closest(n->unit, names);
        std::string message =
            "unknown " + std::string(q.what) + " unit '" + std::string(n->unit) + "' in " + quoted(text);
        if (suggestion.empty()) message += "; expected " + std::string(q.unit_list);
        fail(error, std::move(message), std::move(suggestion));
        return std::nullopt;
    }
    auto value = scale(*n, factor);
    if (!value) {
        fail(error, std::string(q.what) + " " + quoted(text) + " is too large");
        return std::nullopt;
    }
    if (n->negative || *value == 0) {
        fail(error, std::string(q.what) + " " + quoted(text) + " must be greater than zero");
        return std::nullopt;
    }
    return value;
}

// The largest unit of `units` (scanned from the end) that divides `value` exactly.
std::string format_exact(uint64_t value, const Unit* units, size_t count, std::string_view fallback) {
    for (size_t i = count; i-- > 0;)
        if (value != 0 && units[i].factor > 1 && value % units[i].factor == 0)
            return std::to_string(value / units[i].factor) + std::string(units[i].name);
    return std::to_string(value) + std::string(fallback);
}

constexpr std::array<std::string_view, 2> kDscpSpecial{"EF", "LE"};

std::vector<std::string> dscp_names() {
    std::vector<std::string> names;
    for (int i = 0; i <= 7; ++i) names.push_back("CS" + std::to_string(i));
    for (int x = 1; x <= 4; ++x)
        for (int y = 1; y <= 3; ++y) names.push_back("AF" + std::to_string(x) + std::to_string(y));
    for (auto s : kDscpSpecial) names.emplace_back(s);
    return names;
}

std::optional<uint8_t> dscp_by_name(std::string_view upper) {
    if (upper == "EF") return 46;
    if (upper == "LE") return 1;
    if (upper.size() == 3 && upper.substr(0, 2) == "CS" && upper[2] >= '0' && upper[2] <= '7')
        return static_cast<uint8_t>(8 * (upper[2] - '0'));
    if (upper.size() == 4 && upper.substr(0, 2) == "AF" && upper[2] >= '1' && upper[2] <= '4' &&
        upper[3] >= '1' && upper[3] <= '3')
        return static_cast<uint8_t>(8 * (upper[2] - '0') + 2 * (upper[3] - '0'));
    return std::nullopt;
}

}  // namespace

std::string UnitError::text() const {
    return message + detail::did_you_mean(suggestion);
}

std::optional<uint64_t> parse_rate_bits_per_s(std::string_view text, UnitError* error) {
    return parse_quantity(kRate, text, error);
}

std::optional<uint64_t> parse_size_bytes(std::string_view text, UnitError* error) {
    return parse_quantity(kSize, text, error);
}

std::optional<uint64_t> parse_duration_ms(std::string_view text, UnitError* error) {
    return parse_quantity(kDuration, text, error);
}

std::optional<uint8_t> parse_dscp(std::string_view text, UnitError* error) {
    if (!text.empty() && (is_digit(text[0]) || text[0] == '-')) {
        auto n = split_number(text);
        if (!n || !n->unit.empty() || !n->fraction.empty()) {
            fail(error, "invalid DSCP " + quoted(text) + ": expected a name such as CS1 or a number 0..63");
            return std::nullopt;
        }
        auto value = n->negative ? std::nullopt : scale(*n, 1);
        if (!value || *value > 63) {
            fail(error, "DSCP " + std::string(text) + " is out of range 0..63");
            return std::nullopt;
        }
        return static_cast<uint8_t>(*value);
    }
    std::string upper(text);
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (auto value = dscp_by_name(upper)) return value;
    auto names = dscp_names();
    std::vector<std::string_view> views(names.begin(), names.end());
    std::string suggestion = detail::closest(text, views);
    std::string message = "unknown DSCP name '" + std::string(text) + "'";
    if (suggestion.empty()) message += "; expected CS0-CS7, AF11-AF43, EF, LE or a number 0..63";
    fail(error, std::move(message), std::move(suggestion));
    return std::nullopt;
}

std::string format_rate(uint64_t bits_per_s) {
    // Only the bit units: tc prints rates in bits.
    return format_exact(bits_per_s, kRateUnits.data(), 5, "bit");
}

std::string format_size(uint64_t bytes) {
    // Decimal units first (they are what people write), then binary ones.
    for (size_t i = 5; i-- > 1;)
        if (bytes != 0 && bytes % kSizeUnits[i].factor == 0)
            return std::to_string(bytes / kSizeUnits[i].factor) + std::string(kSizeUnits[i].name);
    return format_exact(bytes, kSizeUnits.data() + 5, 4, "B");
}

std::string format_duration(uint64_t ms) {
    return format_exact(ms, kDurationUnits.data(), kDurationUnits.size(), "ms");
}

}  // namespace flowshaper::policy
