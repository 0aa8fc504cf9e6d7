#include "mangle_engine.hpp"

#include <cerrno>
#include <cstring>

#include "flowshaper/kernel/mangle_iptc_port.hpp"

namespace flowshaper::kernel::mangle {

std::string table_name(net::Family family) {
    return family == net::Family::V4 ? "mangle (IPv4)" : "mangle (IPv6)";
}

std::string explain(int err, const std::string& library_text) {
    std::string hint;
    switch (err) {
        case EPERM:
        case EACCES:
            hint = "flowshaper needs CAP_NET_ADMIN: run it as root or grant the capability";
            break;
        case ENOENT:
            hint =
                "a kernel module is missing: the table needs iptable_mangle/ip6table_mangle, the rules "
                "need xt_CONNMARK, xt_connmark, xt_DSCP, xt_comment and xt_connbytes; load them with "
                "modprobe";
            break;
        case ENOPROTOOPT:
            hint = "the kernel has no legacy iptables (ip_tables/ip6_tables)";
            break;
        case EAGAIN:
            hint = "another program changed the table at the same time without taking the xtables lock";
            break;
        case EINVAL:
            hint = "the kernel refused one of the rules";
            break;
        case EMLINK:
            hint = std::string("another rule still jumps to chain ") + kMangleChain + "; remove it first";
            break;
        default:
            break;
    }
    std::string text = library_text.empty() ? std::strerror(err) : library_text;
    return hint.empty() ? text : text + " (" + hint + ")";
}

namespace {

bool same_rule(net::Family family, const TableRule& have, const Bytes& want) {
    auto a = parse_rule(family, have.entry, have.target);
    auto b = parse_rule(family, want, target_name(family, want));
    return a && b && *a == *b;
}

// Positions of the unconditional jumps to flowshaper's chain in the hook (ours, or copies).
std::vector<unsigned> our_jumps(MangleTable& table, net::Family family) {
    std::vector<unsigned> at;
    auto rules = table.rules(kMangleHook);
    for (unsigned i = 0; i < rules.size(); ++i) {
        auto rule = parse_rule(family, rules[i].entry, rules[i].target);
        if (rule && *rule == KnownRule{JumpRule{kMangleChain}}) at.push_back(i);
    }
    return at;
}

// Erases the rules at `positions` (ascending) from the last to the first.
Status erase_all(MangleTable& table, const std::string& chain, const std::vector<unsigned>& positions) {
    for (auto it = positions.rbegin(); it != positions.rend(); ++it)
        if (auto st = table.erase(chain, *it); !st) return st;
    return {};
}

// The kernel index of each capped-client set of `spec` (the sets exist before the rules).
Result<std::vector<uint16_t>> set_indices(MangleTable& table, net::Family family, const MangleSpec& spec) {
    std::vector<uint16_t> out;
    for (size_t i = 0; i < spec.capped.size(); ++i) {
        auto index = table.set_index(ipset_name(family, i));
        if (!index) return index.error();
        out.push_back(*index);
    }
    return out;
}

Result<bool> converge_chain(MangleTable& table, net::Family family, const MangleSpec& spec) {
    auto indices = set_indices(table, family, spec);
    if (!indices) return indices.error();
    bool changed = false;
    if (!table.has_chain(kMangleChain)) {
        if (auto st = table.create_chain(kMangleChain); !st) return st.error();
        changed = true;
    }
    const std::vector<Bytes> want = build_chain(family, spec, *indices);
    const std::vector<TableRule> have = table.rules(kMangleChain);
    for (size_t i = 0; i < have.size() && i < want.size(); ++i) {
        if (same_rule(family, have[i], want[i])) continue;
        if (auto st = table.replace(kMangleChain, static_cast<unsigned>(i), want[i]); !st) return st.error();
        changed = true;
    }
    for (size_t i = have.size(); i > want.size(); --i) {
        if (auto st = table.erase(kMangleChain, static_cast<unsigned>(i - 1)); !st) return st.error();
        changed = true;
    }
    for (size_t i = have.size(); i < want.size(); ++i) {
        if (auto st = table.append(kMangleChain, want[i]); !st) return st.error();
        changed = true;
    }
    return changed;
}

}  // namespace

Result<bool> converge(MangleTable& table, net::Family family, const MangleSpec& spec) {
    auto changed = converge_chain(table, family, spec);
    if (!changed) return changed;
    // The jump goes in after the chain exists (libiptc resolves the name when it is inserted).
    std::vector<unsigned> jumps = our_jumps(table, family);
    if (jumps.empty()) {
        if (auto st = table.insert(kMangleHook, 0, build_jump_rule(family, kMangleChain)); !st)
            return st.error();
        return true;
    }
    if (jumps.size() > 1) {  // a copy made by hand: packets would pass the chain twice
        if (auto st = erase_all(table, kMangleHook, {jumps.begin() + 1, jumps.end()}); !st) return st.error();
        return true;
    }
    return *changed;
}

Result<bool> remove_ours(MangleTable& table, net::Family family) {
    std::vector<unsigned> jumps = our_jumps(table, family);
    if (auto st = erase_all(table, kMangleHook, jumps); !st) return st.error();
    if (!table.has_chain(kMangleChain)) return !jumps.empty();
    for (size_t n = table.rules(kMangleChain).size(); n > 0; --n)
        if (auto st = table.erase(kMangleChain, static_cast<unsigned>(n - 1)); !st) return st.error();
    if (auto st = table.delete_chain(kMangleChain); !st) return st.error();
    return true;
}

// Folds one capped-client rule into spec.capped: its set must be ours, of this family, and for
// the same [[detect]] rule as the last one or the next.
bool add_capped_rule(MangleTable& table, net::Family family, const CappedRule& rule, MangleSpec& spec) {
    auto name = table.set_name(rule.set_index);
    auto id = name ? parse_ipset_name(*name) : std::nullopt;
    if (!id || id->second != family) return false;
    if (id->first == spec.capped.size()) spec.capped.push_back({rule.l4proto, {}, {}});
    if (id->first + 1 != spec.capped.size() || spec.capped.back().l4proto != rule.l4proto) return false;
    auto& ports = rule.source_ports ? spec.capped.back().local_ports : spec.capped.back().remote_ports;
    ports.insert(ports.end(), rule.ports.begin(), rule.ports.end());
    return true;
}

Result<std::optional<MangleSpec>> parse_ours(MangleTable& table, net::Family family) {
    if (!table.has_chain(kMangleChain)) return std::optional<MangleSpec>{};
    MangleSpec spec;
    const std::vector<TableRule> rules = table.rules(kMangleChain);
    size_t first = 0;  // the restore rule's position: after the capped-client rules
    for (size_t i = 0; i < rules.size(); ++i) {
        auto rule = parse_rule(family, rules[i].entry, rules[i].target);
        const auto* capped = rule ? std::get_if<CappedRule>(&*rule) : nullptr;
        const auto* restore = rule ? std::get_if<RestoreRule>(&*rule) : nullptr;
        const auto* dscp = rule ? std::get_if<DscpRule>(&*rule) : nullptr;
        const auto* candidate = rule ? std::get_if<CandidateRule>(&*rule) : nullptr;
        if (i == first && capped && add_capped_rule(table, family, *capped, spec)) {
            ++first;
        } else if (i == first && restore) {
            spec.mark_mask = restore->mask;
        } else if (i == first + 1 && candidate) {
            spec.candidate = *candidate;
        } else if (i > first && dscp) {
            spec.dscp_rules.push_back(*dscp);
        } else {
            return make_error("read chain", std::string(kMangleChain) + " in " + table_name(family), EPROTO,
                              "rule " + std::to_string(i + 1) +
                                  " was not written by flowshaper (the next ensure replaces it)");
        }
    }
    if (rules.size() == first)
        return make_error("read chain", std::string(kMangleChain) + " in " + table_name(family), EPROTO,
                          "the chain has no restore rule (the next ensure fills it)");
    return std::optional<MangleSpec>{spec};
}

Status MangleEngine::transact(net::Family family, const std::function<Result<bool>(MangleTable&)>& edit) {
    Error last;
    for (int attempt = 1; attempt <= max_attempts_; ++attempt) {
        auto table = source_.open(family);
        if (!table) return table.error();
        auto changed = edit(**table);
        if (!changed) return changed.error();
        if (!*changed) return {};
        auto st = (*table)->commit();
        if (st) {
            ++commits_;
            return {};
        }
        // EAGAIN: the table changed since the snapshot. EINVAL: either the kernel refused a rule
        // (every attempt fails alike) or libiptc's second step (adding the old counters) lost a
        // race after the table was replaced (the next snapshot then needs no change).
        if (st.error().code != EAGAIN && st.error().code != EINVAL) return st;
        last = st.error();
    }
    last.detail += "; gave up after " + std::to_string(max_attempts_) + " attempts";
    return last;
}

Status MangleEngine::ensure(net::Family family, const MangleSpec& spec) {
    if (auto st = validate(spec); !st) return st;
    return transact(family, [&](MangleTable& t) { return converge(t, family, spec); });
}

Status MangleEngine::remove_all(net::Family family) {
    return transact(family, [&](MangleTable& t) { return remove_ours(t, family); });
}

Result<std::optional<MangleSpec>> MangleEngine::read(net::Family family) {
    auto table = source_.open(family);
    if (!table) return table.error();
    return parse_ours(**table, family);
}

}  // namespace flowshaper::kernel::mangle
