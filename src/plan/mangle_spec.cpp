#include "flowshaper/plan/mangle_spec.hpp"

#include <cerrno>

namespace flowshaper::plan {

namespace {

constexpr unsigned kDscpMax = 63;
constexpr size_t kCommentMax = 256;  // xtables' XT_MAX_COMMENT_LEN, NUL included

Error bad(const std::string& what) {
    return make_error("check mangle rules", "", EINVAL, what);
}

Status validate_capped(const MangleSpec::CappedMatch& c, const std::string& which) {
    if (c.l4proto != 0 && c.l4proto != 6 && c.l4proto != 17)
        return bad(which + "protocol " + std::to_string(c.l4proto) + " is neither tcp (6) nor udp (17)");
    if (c.l4proto == 0 && (!c.local_ports.empty() || !c.remote_ports.empty()))
        return bad(which + "ports need a protocol (tcp or udp)");
    for (const auto* ports : {&c.local_ports, &c.remote_ports})
        for (uint16_t p : *ports)
            if (p == 0) return bad(which + "port 0");
    return {};
}

Status validate_rule(const MangleSpec& spec, const MangleSpec::DscpRule& r, const std::string& which) {
    if (r.dscp > kDscpMax) return bad(which + "DSCP " + std::to_string(r.dscp) + " is above 63");
    if (r.comment.size() >= kCommentMax) return bad(which + "comment longer than 255 bytes");
    if (r.comment.find('\0') != std::string::npos) return bad(which + "comment contains a NUL byte");
    if (r.comment.find('"') != std::string::npos) return bad(which + "comment contains a '\"'");
    if (r.ctmark_mask == 0 || (r.ctmark_mask & ~spec.mark_mask) != 0)
        return bad(which + "ctmark mask is empty or outside mark_mask");
    if ((r.ctmark_value & ~r.ctmark_mask) != 0)
        return bad(which + "ctmark value has bits outside its mask (it could never match)");
    if (spec.candidate && (r.ctmark_mask & spec.candidate->bit) != 0)
        return bad(which + "ctmark mask overlaps the candidate bit");
    return {};
}

}  // namespace

Status validate(const MangleSpec& spec) {
    if (spec.mark_mask == 0) return bad("mark_mask is 0: flowshaper needs at least one mark bit");
    if (!spec.capped.empty() && spec.capped.size() != spec.dscp_rules.size())
        return bad("capped-client matches: " + std::to_string(spec.capped.size()) + " for " +
                   std::to_string(spec.dscp_rules.size()) + " DSCP rules");
    for (size_t i = 0; i < spec.dscp_rules.size(); ++i) {
        const std::string which = "DSCP rule " + std::to_string(i + 1) + ": ";
        if (auto st = validate_rule(spec, spec.dscp_rules[i], which); !st) return st;
        if (!spec.capped.empty())
            if (auto st = validate_capped(spec.capped[i], which); !st) return st;
    }
    if (const auto& c = spec.candidate) {
        if (c->bit == 0 || (c->bit & (c->bit - 1)) != 0)
            return bad("the candidate flag must be exactly one bit");
        if ((c->bit & spec.mark_mask) != 0)
            return bad("the candidate bit lies inside mark_mask (it would be restored into the fwmark)");
        if (c->min_bytes == 0)
            return bad("the candidate threshold is 0 bytes: every connection would qualify");
    }
    return {};
}

MangleSpec mangle_spec(const policy::Policy& policy, const MarkLayout& marks,
                       const std::optional<MangleSpec::Candidate>& prefilter, bool capped_sets) {
    MangleSpec spec;
    spec.mark_mask = marks.restore_mask();
    spec.candidate = prefilter;
    for (size_t i = 0; i < policy.detects.size(); ++i) {
        const policy::Detect& d = policy.detects[i];
        spec.dscp_rules.push_back({marks.rule_value(i), marks.rule_mask(), d.dscp, d.name});
        if (!capped_sets) continue;
        MangleSpec::CappedMatch match;
        match.l4proto = d.protocol == policy::Protocol::Tcp   ? 6
                        : d.protocol == policy::Protocol::Udp ? 17
                                                              : 0;
        match.local_ports = d.local_ports;
        match.remote_ports = d.remote_ports;
        spec.capped.push_back(std::move(match));
    }
    return spec;
}

}  // namespace flowshaper::plan
