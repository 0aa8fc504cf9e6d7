#include "flowshaper/plan/marks.hpp"

#include <bit>
#include <string>

namespace flowshaper::plan {

uint32_t deposit_bits(uint32_t value, uint32_t mask) {
    uint32_t out = 0;
    for (uint32_t bit = 1; mask != 0; bit <<= 1) {
        uint32_t lowest = mask & -mask;
        if (value & bit) out |= lowest;
        mask &= mask - 1;
    }
    return out;
}

uint32_t extract_bits(uint32_t word, uint32_t mask) {
    uint32_t out = 0;
    for (uint32_t bit = 1; mask != 0; bit <<= 1) {
        uint32_t lowest = mask & -mask;
        if (word & lowest) out |= bit;
        mask &= mask - 1;
    }
    return out;
}

namespace {

// The lowest `n` set bits of `mask`.
uint32_t low_bits_of(uint32_t mask, int n) {
    uint32_t out = 0;
    for (int i = 0; i < n && mask != 0; ++i) {
        uint32_t lowest = mask & -mask;
        out |= lowest;
        mask &= mask - 1;
    }
    return out;
}

}  // namespace

Result<MarkLayout> MarkLayout::make(uint32_t mark_mask, size_t rules, bool per_client, bool candidate) {
    int available = std::popcount(mark_mask);
    int rule_bits = rules == 0 ? 0 : std::bit_width(rules);  // values 1..rules
    if (rule_bits > available || (per_client && rule_bits >= available))
        return make_error("mark_mask", "", 0,
                          "mark_mask has " + std::to_string(available) + " bits, too few for " +
                              std::to_string(rules) + " [[detect]] rules" +
                              (per_client ? " and per-client fw marks" : ""));
    MarkLayout m;
    m.mask_ = mark_mask;
    // The flag takes a bit only when the fields keep what they need (fw: one client bit at least).
    int needed = rule_bits + (per_client ? 1 : 0);
    if (candidate && needed < available) m.candidate_bit_ = 1u << (std::bit_width(mark_mask) - 1);
    m.rule_mask_ = low_bits_of(mark_mask, rule_bits);
    m.client_mask_ = per_client ? (m.restore_mask() & ~m.rule_mask_) : 0;
    return m;
}

uint32_t MarkLayout::rule_value(size_t index) const {
    return deposit_bits(static_cast<uint32_t>(index + 1), rule_mask_);
}

uint32_t MarkLayout::client_value(size_t rule_index, uint32_t client_number) const {
    return rule_value(rule_index) | deposit_bits(client_number, client_mask_);
}

uint32_t MarkLayout::max_clients() const {
    int bits = std::popcount(client_mask_);
    return bits >= 32 ? 0xffffffffu : (1u << bits) - 1;
}

std::optional<size_t> MarkLayout::rule_of(uint32_t mark) const {
    uint32_t v = extract_bits(mark, rule_mask_);
    if (v == 0) return std::nullopt;
    return v - 1;
}

std::optional<uint32_t> MarkLayout::client_number_of(uint32_t mark) const {
    uint32_t v = extract_bits(mark, client_mask_);
    if (v == 0) return std::nullopt;
    return v;
}

}  // namespace flowshaper::plan
