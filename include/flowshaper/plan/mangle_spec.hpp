// What flowshaper wants in the firewall's mangle stage, whatever the backend (libiptc's chain
// FLOWSHAPER or nftables' table inet flowshaper): planned here from the policy, pure, and handed
// to kernel::ManglePort::ensure(). The backends turn it into their own rules.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "flowshaper/common/result.hpp"
#include "flowshaper/plan/marks.hpp"
#include "flowshaper/policy/policy.hpp"

namespace flowshaper::plan {

// The rules of one family, in the order the backends write them:
//   capped-client rules (when `capped` is set): a new connection of a client in rule i's kernel set,
//       on rule i's ports, gets ctmark_value under ctmark_mask from its first packet;
//   restore: the ctmark bits of mark_mask copied into the fwmark (other fwmark bits kept);
//   candidate (optional): connections past min_bytes get ctmark bit `bit`;
//   one DSCP rule per [[detect]] rule: ctmark & ctmark_mask == ctmark_value -> DSCP.
struct MangleSpec {
    uint32_t mark_mask = 0;  // ctmark/fwmark bits flowshaper owns (restored into the fwmark)

    // Which packets of a capped client the kernel set's rule marks (egress: the client is the
    // destination). Empty port lists with l4proto 0: every packet to the client.
    struct CappedMatch {
        uint8_t l4proto = 0;                 // 0: any; 6 tcp; 17 udp
        std::vector<uint16_t> local_ports;   // this host's port: the packet's source port
        std::vector<uint16_t> remote_ports;  // the client's port: the packet's destination port
        bool operator==(const CappedMatch&) const = default;
    };

    // Connections whose ctmark & ctmark_mask == ctmark_value leave with DSCP `dscp`.
    struct DscpRule {
        uint32_t ctmark_value = 0;
        uint32_t ctmark_mask = 0;
        uint8_t dscp = 0;     // 0..63
        std::string comment;  // shown by iptables-save / nft list; empty: none
        bool operator==(const DscpRule&) const = default;
    };
    std::vector<DscpRule> dscp_rules;  // one per [[detect]] rule, in this order

    // The kernel-side prefilter: a connection that has moved at least `min_bytes` (both
    // directions together) gets ctmark bit `bit` from the next packet that leaves, so that a
    // dump filtered on that bit carries only the connections that can be heavy. `bit` lies
    // outside mark_mask (it is never restored into the fwmark) and outside every DSCP rule.
    struct Candidate {
        uint64_t min_bytes = 0;
        uint32_t bit = 0;
        bool operator==(const Candidate&) const = default;
    };
    std::optional<Candidate> candidate;

    // Empty: no kernel sets. Otherwise one entry per DSCP rule, same order: the chain marks the
    // connections of the clients in rule i's kernel set (nft set / ipset), matched by capped[i],
    // with rule i's ctmark from their first packet, before the restore rule copies it.
    std::vector<CappedMatch> capped;

    // Every ctmark bit these rules write or restore.
    uint32_t owned_bits() const { return mark_mask | (candidate ? candidate->bit : 0); }

    bool operator==(const MangleSpec&) const = default;
};

// Checks what the kernel would accept and what could ever match: mark_mask != 0, dscp <= 63,
// comment < 256 bytes without NUL or '"', ctmark_mask within mark_mask, ctmark_value within
// ctmark_mask, a candidate bit that is one bit outside mark_mask, with min_bytes > 0, l4proto
// 0/6/17 and ports only with a protocol. The error names the rule (1-based).
Status validate(const MangleSpec& spec);

// The policy's mangle rules: the restore mask and one DSCP rule per [[detect]] rule from the
// mark layout, the prefilter's candidate flag when there is one, the rule's protocol and ports
// for its capped-client set when `capped_sets`.
MangleSpec mangle_spec(const policy::Policy& policy, const MarkLayout& marks,
                       const std::optional<MangleSpec::Candidate>& prefilter, bool capped_sets = false);

}  // namespace flowshaper::plan
