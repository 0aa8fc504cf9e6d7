// How flowshaper uses its ctmark/fwmark bits (settings.mark_mask). Pure.
//
// The low bits of the mask hold the rule field: the 1-based index of the [[detect]] rule that
// found the connection heavy (0: not heavy). With the fw classifier the bits above hold the
// client field: a per-heavy-client number, so that a fw filter can map the whole mark to that
// client's class. The mangle table needs one rule per [[detect]] rule whatever the number of
// clients: "ctmark & rule_mask == rule value -> set DSCP".
//
// Optionally the highest bit of the mask is the candidate flag of the conntrack prefilter (set by
// the kernel on connections over a byte count; see kernel::MangleSpec::Candidate). It is never
// restored into the fwmark and never part of a rule or client value.
#pragma once

#include <cstdint>
#include <optional>

#include "flowshaper/common/result.hpp"

namespace flowshaper::plan {

class MarkLayout {
public:
    // Errors when the mask is too small for the rules (and, with fw, for at least one client).
    // With `candidate`, the highest bit becomes the candidate flag when the mask has a bit to
    // spare for it (candidate_bit() stays 0 otherwise: no prefilter, not an error).
    static Result<MarkLayout> make(uint32_t mark_mask, size_t rules, bool per_client, bool candidate = false);

    uint32_t mask() const { return mask_; }  // every bit flowshaper owns
    // The bits that name a rule and a client: written on heavy connections, restored into the
    // fwmark (the mask without the candidate flag).
    uint32_t restore_mask() const { return mask_ & ~candidate_bit_; }
    uint32_t candidate_bit() const { return candidate_bit_; }
    uint32_t rule_mask() const { return rule_mask_; }
    uint32_t client_mask() const { return client_mask_; }
    // The mark of rule `index` (0-based) with no client number.
    uint32_t rule_value(size_t index) const;
    // With a client number (1..max_clients()); the fw classifier's per-client mark.
    uint32_t client_value(size_t rule_index, uint32_t client_number) const;
    uint32_t max_clients() const;
    // Which rule a mark names, if any.
    std::optional<size_t> rule_of(uint32_t mark) const;
    std::optional<uint32_t> client_number_of(uint32_t mark) const;

private:
    uint32_t mask_ = 0;
    uint32_t rule_mask_ = 0;
    uint32_t client_mask_ = 0;
    uint32_t candidate_bit_ = 0;
};

// Spreads the low bits of `value` over the set bits of `mask` (like x86 PDEP).
uint32_t deposit_bits(uint32_t value, uint32_t mask);
// The inverse: gathers the bits of `word` under `mask` into the low bits (like PEXT).
uint32_t extract_bits(uint32_t word, uint32_t mask);

}  // namespace flowshaper::plan
