// xtables rule buffers: an ipt_entry / ip6t_entry followed by XT_ALIGNed matches and one
// target, built in byte buffers (the kernel structs end in flexible arrays), and parsed back.
// Only the rule shapes flowshaper writes are recognised; anything else is "not ours".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "flowshaper/common/net.hpp"
#include "flowshaper/kernel/mangle_port.hpp"

namespace flowshaper::kernel::mangle {

using Bytes = std::vector<uint8_t>;

// -j CONNMARK --restore-mark --nfmask M --ctmask M (CONNMARK revision 2).
struct RestoreRule {
    uint32_t mask = 0;
    bool operator==(const RestoreRule&) const = default;
};
// An unconditional jump to a chain, or an unconditional verdict (ACCEPT, ...).
struct JumpRule {
    std::string target;
    bool operator==(const JumpRule&) const = default;
};
// -m connmark --mark V/M [-m comment --comment C] -j DSCP --set-dscp D (connmark 1, DSCP 0).
using DscpRule = MangleSpec::DscpRule;
// -m connbytes --connbytes N --connbytes-mode bytes --connbytes-dir both
// -j CONNMARK --set-xmark B/B (connbytes 0, CONNMARK 2): the prefilter's candidate flag.
using CandidateRule = MangleSpec::Candidate;

// [-p tcp|udp] -m set --match-set S dst [-m multiport --sports|--dports P,...]
// -j CONNMARK --set-xmark V/R (set 4, multiport 1, CONNMARK 2): a capped client's connections
// get their rule's ctmark from the first packet toward the client. S is the kernel's set index.
struct CappedRule {
    uint16_t set_index = 0;
    uint8_t l4proto = 0;          // 0: any
    bool source_ports = true;     // --sports (this host's ports) or --dports (the client's)
    std::vector<uint16_t> ports;  // empty: no port match; at most kMaxPorts
    uint32_t ctmark_value = 0;
    uint32_t ctmark_mask = 0;
    bool operator==(const CappedRule&) const = default;
};
inline constexpr size_t kMaxPorts = 15;  // XT_MULTI_PORTS: more ports take more rules

using KnownRule = std::variant<RestoreRule, DscpRule, JumpRule, CandidateRule, CappedRule>;

Bytes build_restore_rule(net::Family family, uint32_t mask);
Bytes build_dscp_rule(net::Family family, const DscpRule& rule);
Bytes build_candidate_rule(net::Family family, const CandidateRule& rule);
// `target`: a chain name or a verdict; libiptc turns either into a standard target.
Bytes build_jump_rule(net::Family family, const std::string& target);
Bytes build_capped_rule(net::Family family, const CappedRule& rule);
// The capped-client rules of DSCP rule `rule` of `spec` whose set has kernel index `set_index`.
std::vector<CappedRule> capped_rules(const MangleSpec& spec, size_t rule, uint16_t set_index);
// The rules of flowshaper's chain for `spec`, in order; `set_indices`: the kernel index of each
// capped-client set (one per spec.capped entry).
std::vector<Bytes> build_chain(net::Family family, const MangleSpec& spec,
                               const std::vector<uint16_t>& set_indices = {});

// Parses one entry as the table holds it. `target` is the target's name as libiptc reports it
// (for a jump: the chain's name). Returns nullopt for any other shape: conditions in the entry
// header, other matches, other revisions, other options.
std::optional<KnownRule> parse_rule(net::Family family, const Bytes& entry, const std::string& target);

// The target name written in an entry we built (the fake's view of what libiptc reports).
std::string target_name(net::Family family, const Bytes& entry);

// The rule in iptables-save syntax, without "-A CHAIN". `set_name`: how a CappedRule's set is
// named (default: "#<index>").
std::string describe(const KnownRule& rule, const std::string& set_name = {});

// Bytes of the entry header, and where its offsets live (family-specific).
size_t entry_header_size(net::Family family);
uint16_t next_offset(net::Family family, const uint8_t* entry);

// For tests: sets the header's source address (so that the rule has a condition).
void set_source_v4(Bytes& entry, uint32_t address_network_order, uint32_t mask_network_order);

}  // namespace flowshaper::kernel::mangle
