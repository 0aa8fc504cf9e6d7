#include "mangle_xt_rules.hpp"

#include "flowshaper/kernel/mangle_iptc_port.hpp"

#include <linux/netfilter/x_tables.h>
#include <linux/netfilter/xt_CONNMARK.h>
#include <linux/netfilter/xt_DSCP.h>
#include <linux/netfilter/xt_comment.h>
#include <linux/netfilter/xt_connbytes.h>
#include <linux/netfilter/xt_connmark.h>
#include <linux/netfilter/xt_multiport.h>
#include <linux/netfilter/xt_set.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <limits>

namespace flowshaper::kernel::mangle {

namespace {

// Where the family's entry header keeps what we read and write.
struct EntryLayout {
    size_t header;         // sizeof(ipt_entry) / sizeof(ip6t_entry)
    size_t conditions;     // bytes of the address/interface/protocol part that must be zero
    size_t target_offset;  // offsetof(..., target_offset)
    size_t next_offset;    // offsetof(..., next_offset)
    size_t proto;          // the u16 protocol (the only condition flowshaper writes)
    size_t proto_flag;     // IPv6: the flags byte whose IP6T_F_PROTO makes the kernel check it
};

EntryLayout layout(net::Family family) {
    if (family == net::Family::V4)
        return {sizeof(ipt_entry),
                offsetof(ipt_ip, invflags) + 1,
                offsetof(ipt_entry, target_offset),
                offsetof(ipt_entry, next_offset),
                offsetof(ipt_ip, proto),
                0};
    return {sizeof(ip6t_entry),
            offsetof(ip6t_ip6, invflags) + 1,
            offsetof(ip6t_entry, target_offset),
            offsetof(ip6t_entry, next_offset),
            offsetof(ip6t_ip6, proto),
            offsetof(ip6t_ip6, flags)};
}

// One match or target: its name, revision and payload (the xt_*info struct).
struct XtPart {
    std::string name;
    uint8_t revision = 0;
    Bytes data;
};

template <typename T>
Bytes as_bytes(const T& value) {
    Bytes out(sizeof(T));
    std::memcpy(out.data(), &value, sizeof(T));
    return out;
}

template <typename T>
T load(const uint8_t* at) {
    T value;
    std::memcpy(&value, at, sizeof(T));
    return value;
}

template <typename T>
void store(uint8_t* at, const T& value) {
    std::memcpy(at, &value, sizeof(T));
}

// xt_entry_match and xt_entry_target share their user layout: u16 size, name[29], u8 revision.
size_t part_size(const XtPart& part) {
    return XT_ALIGN(sizeof(xt_entry_match)) + XT_ALIGN(part.data.size());
}

void write_part(uint8_t* at, const XtPart& part) {
    xt_entry_match header{};
    header.u.user.match_size = static_cast<uint16_t>(part_size(part));
    std::strncpy(header.u.user.name, part.name.c_str(), sizeof header.u.user.name - 1);
    header.u.user.revision = part.revision;
    std::memcpy(at, &header, sizeof header);
    std::memcpy(at + sizeof header, part.data.data(), part.data.size());
}

Bytes build_entry(net::Family family, const std::vector<XtPart>& matches, const XtPart& target,
                  uint8_t l4proto = 0) {
    const EntryLayout l = layout(family);
    size_t size = l.header;
    for (const XtPart& m : matches) size += part_size(m);
    const size_t target_at = size;
    size += part_size(target);
    Bytes entry(size, 0);
    size_t at = l.header;
    for (const XtPart& m : matches) {
        write_part(entry.data() + at, m);
        at += part_size(m);
    }
    write_part(entry.data() + at, target);
    store<uint16_t>(entry.data() + l.target_offset, static_cast<uint16_t>(target_at));
    store<uint16_t>(entry.data() + l.next_offset, static_cast<uint16_t>(size));
    if (l4proto != 0) {
        store<uint16_t>(entry.data() + l.proto, l4proto);
        if (family == net::Family::V6) entry[l.proto_flag] = IP6T_F_PROTO;
    }
    return entry;
}

// The entry's protocol condition (0: none), or nullopt when the header holds any other
// condition (addresses, interfaces, inversions, fragments).
std::optional<uint8_t> header_proto(net::Family family, const Bytes& entry) {
    const EntryLayout l = layout(family);
    Bytes conditions(entry.begin(), entry.begin() + static_cast<ptrdiff_t>(l.conditions));
    const uint16_t proto = load<uint16_t>(conditions.data() + l.proto);
    if (proto > 255) return std::nullopt;
    store<uint16_t>(conditions.data() + l.proto, 0);
    if (family == net::Family::V6) {
        if (proto != 0 && conditions[l.proto_flag] != IP6T_F_PROTO) return std::nullopt;
        conditions[l.proto_flag] = 0;
    }
    for (uint8_t b : conditions)
        if (b != 0) return std::nullopt;
    return static_cast<uint8_t>(proto);
}

// A match or target read back: name, revision, payload (without padding beyond `size`).
struct PartView {
    std::string name;
    uint8_t revision = 0;
    const uint8_t* data = nullptr;
    size_t size = 0;  // payload bytes (part size minus the header)
};

// Reads the part at `at`; nullopt when it does not fit in [at, end).
std::optional<PartView> read_part(const uint8_t* at, const uint8_t* end) {
    if (end - at < static_cast<ptrdiff_t>(sizeof(xt_entry_match))) return std::nullopt;
    xt_entry_match header;
    std::memcpy(&header, at, sizeof header);
    const size_t size = header.u.user.match_size;
    if (size < sizeof header || static_cast<ptrdiff_t>(size) > end - at) return std::nullopt;
    // Bytes after the name's NUL may be anything (the kernel writes only strlen + 1).
    PartView view;
    view.name.assign(header.u.user.name, strnlen(header.u.user.name, sizeof header.u.user.name));
    view.revision = header.u.user.revision;
    view.data = at + sizeof header;
    view.size = size - sizeof header;
    return view;
}

bool is(const PartView& p, const char* name, uint8_t revision, size_t payload) {
    return p.name == name && p.revision == revision && p.size == XT_ALIGN(payload);
}

std::optional<KnownRule> parse_restore(const PartView& target) {
    if (!is(target, "CONNMARK", 2, sizeof(xt_connmark_tginfo2))) return std::nullopt;
    auto info = load<xt_connmark_tginfo2>(target.data);
    if (info.mode != XT_CONNMARK_RESTORE || info.ctmark != 0 || info.ctmask != info.nfmask ||
        info.shift_bits != 0 || info.shift_dir != 0)
        return std::nullopt;
    return RestoreRule{info.ctmask};
}

// iptables writes "--connbytes N" (no upper bound) as to = UINT64_MAX; so do we.
constexpr uint64_t kNoUpperBound = std::numeric_limits<uint64_t>::max();

std::optional<KnownRule> parse_candidate(const std::vector<PartView>& matches, const PartView& target) {
    if (matches.size() != 1 || !is(matches[0], "connbytes", 0, sizeof(xt_connbytes_info)))
        return std::nullopt;
    if (!is(target, "CONNMARK", 2, sizeof(xt_connmark_tginfo2))) return std::nullopt;
    auto bytes = load<xt_connbytes_info>(matches[0].data);
    if (bytes.what != XT_CONNBYTES_BYTES || bytes.direction != XT_CONNBYTES_DIR_BOTH ||
        bytes.count.to != kNoUpperBound || bytes.count.from == 0)
        return std::nullopt;
    auto info = load<xt_connmark_tginfo2>(target.data);
    // --set-xmark B/B and --or-mark B are the same rule (iptables writes nfmask 0xffffffff for
    // the latter; the SET mode never reads nfmask, so it is not compared).
    if (info.mode != XT_CONNMARK_SET || info.ctmark != info.ctmask || info.shift_bits != 0 ||
        info.shift_dir != 0 || info.ctmark == 0 || (info.ctmark & (info.ctmark - 1)) != 0)
        return std::nullopt;
    return CandidateRule{bytes.count.from, info.ctmark};
}

std::optional<KnownRule> parse_capped(const std::vector<PartView>& matches, const PartView& target,
                                      uint8_t l4proto) {
    if (matches.empty() || matches.size() > 2 || !is(matches[0], "set", 4, sizeof(xt_set_info_match_v4)))
        return std::nullopt;
    if (!is(target, "CONNMARK", 2, sizeof(xt_connmark_tginfo2))) return std::nullopt;
    const auto info4 = load<xt_set_info_match_v4>(matches[0].data);
    const auto& set = info4.match_set;
    if (set.dim != 1 || set.flags != 0) return std::nullopt;  // one dimension, the destination
    if (info4.flags != 0 || info4.packets.op != 0 || info4.bytes.op != 0) return std::nullopt;
    CappedRule rule;
    rule.set_index = set.index;
    rule.l4proto = l4proto;
    if (matches.size() == 2) {
        if (!is(matches[1], "multiport", 1, sizeof(xt_multiport_v1)) || (l4proto != 6 && l4proto != 17))
            return std::nullopt;
        auto mp = load<xt_multiport_v1>(matches[1].data);
        if (mp.invert != 0 || mp.count == 0 || mp.count > XT_MULTI_PORTS ||
            (mp.flags != XT_MULTIPORT_SOURCE && mp.flags != XT_MULTIPORT_DESTINATION))
            return std::nullopt;
        for (unsigned i = 0; i < mp.count; ++i)
            if (mp.pflags[i] != 0) return std::nullopt;  // ranges: never ours
        rule.source_ports = mp.flags == XT_MULTIPORT_SOURCE;
        rule.ports.assign(mp.ports, mp.ports + mp.count);
    }
    auto info = load<xt_connmark_tginfo2>(target.data);
    if (info.mode != XT_CONNMARK_SET || info.shift_bits != 0 || info.shift_dir != 0 || info.nfmask != 0 ||
        (info.ctmark & ~info.ctmask) != 0 || info.ctmask == 0)
        return std::nullopt;
    rule.ctmark_value = info.ctmark;
    rule.ctmark_mask = info.ctmask;
    return rule;
}

std::optional<KnownRule> parse_dscp(const std::vector<PartView>& matches, const PartView& target) {
    if (matches.empty() || matches.size() > 2) return std::nullopt;
    if (!is(matches[0], "connmark", 1, sizeof(xt_connmark_mtinfo1))) return std::nullopt;
    if (!is(target, "DSCP", 0, sizeof(xt_DSCP_info))) return std::nullopt;
    auto mark = load<xt_connmark_mtinfo1>(matches[0].data);
    if (mark.invert != 0) return std::nullopt;
    DscpRule rule{mark.mark, mark.mask, load<xt_DSCP_info>(target.data).dscp, {}};
    if (rule.dscp > XT_DSCP_MAX) return std::nullopt;
    if (matches.size() == 2) {
        if (!is(matches[1], "comment", 0, sizeof(xt_comment_info))) return std::nullopt;
        const char* text = reinterpret_cast<const char*>(matches[1].data);
        rule.comment.assign(text, strnlen(text, XT_MAX_COMMENT_LEN));
        if (rule.comment.empty()) return std::nullopt;  // we never write an empty comment
    }
    return rule;
}

// A string as iptables-save prints it: bare when it is a plain word, else quoted and escaped.
std::string save_string(const std::string& text) {
    static const char plain[] = "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    if (!text.empty() && text.find_first_not_of(plain) == std::string::npos) return text;
    std::string out = "\"";
    for (char c : text) {
        if (c == '"' || c == '\\' || c == '\'') out += '\\';
        out += c;
    }
    return out + "\"";
}

}  // namespace

size_t entry_header_size(net::Family family) {
    return layout(family).header;
}

uint16_t next_offset(net::Family family, const uint8_t* entry) {
    return load<uint16_t>(entry + layout(family).next_offset);
}

Bytes build_restore_rule(net::Family family, uint32_t mask) {
    xt_connmark_tginfo2 info{};
    info.ctmask = mask;
    info.nfmask = mask;
    info.mode = XT_CONNMARK_RESTORE;
    return build_entry(family, {}, XtPart{"CONNMARK", 2, as_bytes(info)});
}

Bytes build_dscp_rule(net::Family family, const DscpRule& rule) {
    xt_connmark_mtinfo1 mark{};
    mark.mark = rule.ctmark_value;
    mark.mask = rule.ctmark_mask;
    std::vector<XtPart> matches{XtPart{"connmark", 1, as_bytes(mark)}};
    if (!rule.comment.empty()) {
        xt_comment_info comment{};
        std::strncpy(comment.comment, rule.comment.c_str(), sizeof comment.comment - 1);
        matches.push_back(XtPart{"comment", 0, as_bytes(comment)});
    }
    xt_DSCP_info dscp{};
    dscp.dscp = rule.dscp;
    return build_entry(family, matches, XtPart{"DSCP", 0, as_bytes(dscp)});
}

Bytes build_candidate_rule(net::Family family, const CandidateRule& rule) {
    xt_connbytes_info bytes{};
    bytes.count.from = rule.min_bytes;
    bytes.count.to = kNoUpperBound;
    bytes.what = XT_CONNBYTES_BYTES;
    bytes.direction = XT_CONNBYTES_DIR_BOTH;
    xt_connmark_tginfo2 info{};
    info.ctmark = rule.bit;
    info.ctmask = rule.bit;
    info.mode = XT_CONNMARK_SET;
    return build_entry(family, {XtPart{"connbytes", 0, as_bytes(bytes)}},
                       XtPart{"CONNMARK", 2, as_bytes(info)});
}

Bytes build_jump_rule(net::Family family, const std::string& target) {
    // A standard target: a verdict slot that libiptc fills in (jump offset or verdict).
    int verdict = 0;
    return build_entry(family, {}, XtPart{target, 0, as_bytes(verdict)});
}

Bytes build_capped_rule(net::Family family, const CappedRule& rule) {
    // Revision 4, the one iptables 1.8.9 writes and prints back (another revision reads as
    // "[unsupported revision]"); no counter conditions, no flags.
    xt_set_info_match_v4 set{};
    set.match_set.index = rule.set_index;
    set.match_set.dim = 1;  // flags 0: the first dimension from the destination address
    std::vector<XtPart> matches{XtPart{"set", 4, as_bytes(set)}};
    if (!rule.ports.empty()) {
        xt_multiport_v1 mp{};
        mp.flags = rule.source_ports ? XT_MULTIPORT_SOURCE : XT_MULTIPORT_DESTINATION;
        mp.count = static_cast<uint8_t>(std::min(rule.ports.size(), kMaxPorts));
        std::copy_n(rule.ports.begin(), mp.count, mp.ports);
        matches.push_back(XtPart{"multiport", 1, as_bytes(mp)});
    }
    xt_connmark_tginfo2 info{};
    info.ctmark = rule.ctmark_value;
    info.ctmask = rule.ctmark_mask;
    info.mode = XT_CONNMARK_SET;
    return build_entry(family, matches, XtPart{"CONNMARK", 2, as_bytes(info)}, rule.l4proto);
}

std::vector<CappedRule> capped_rules(const MangleSpec& spec, size_t i, uint16_t set_index) {
    const MangleSpec::CappedMatch& c = spec.capped[i];
    const MangleSpec::DscpRule& d = spec.dscp_rules[i];
    const CappedRule base{set_index, c.l4proto, true, {}, d.ctmark_value, d.ctmark_mask};
    std::vector<CappedRule> out;
    auto add = [&](const std::vector<uint16_t>& ports, bool source) {
        for (size_t at = 0; at < ports.size(); at += kMaxPorts) {
            CappedRule r = base;
            r.source_ports = source;
            r.ports.assign(ports.begin() + static_cast<ptrdiff_t>(at),
                           ports.begin() + static_cast<ptrdiff_t>(std::min(ports.size(), at + kMaxPorts)));
            out.push_back(std::move(r));
        }
    };
    add(c.local_ports, true);
    add(c.remote_ports, false);
    if (out.empty()) out.push_back(base);
    return out;
}

std::vector<Bytes> build_chain(net::Family family, const MangleSpec& spec,
                               const std::vector<uint16_t>& set_indices) {
    std::vector<Bytes> rules;
    for (size_t i = 0; i < spec.capped.size() && i < set_indices.size() && i < spec.dscp_rules.size(); ++i)
        for (const CappedRule& r : capped_rules(spec, i, set_indices[i]))
            rules.push_back(build_capped_rule(family, r));
    rules.push_back(build_restore_rule(family, spec.mark_mask));
    if (spec.candidate) rules.push_back(build_candidate_rule(family, *spec.candidate));
    for (const DscpRule& r : spec.dscp_rules) rules.push_back(build_dscp_rule(family, r));
    return rules;
}

std::optional<KnownRule> parse_rule(net::Family family, const Bytes& entry, const std::string& target) {
    const EntryLayout l = layout(family);
    if (entry.size() < l.header) return std::nullopt;
    const std::optional<uint8_t> proto = header_proto(family, entry);  // no other condition
    if (!proto) return std::nullopt;
    const size_t target_at = load<uint16_t>(entry.data() + l.target_offset);
    const size_t end_at = load<uint16_t>(entry.data() + l.next_offset);
    if (end_at != entry.size() || target_at < l.header || target_at >= end_at) return std::nullopt;

    std::vector<PartView> matches;
    for (size_t at = l.header; at < target_at;) {
        auto m = read_part(entry.data() + at, entry.data() + target_at);
        if (!m) return std::nullopt;
        at += sizeof(xt_entry_match) + m->size;
        matches.push_back(*m);
    }
    auto t = read_part(entry.data() + target_at, entry.data() + end_at);
    if (!t) return std::nullopt;
    if (target == "CONNMARK" && !matches.empty() && matches[0].name == "set")
        return parse_capped(matches, *t, *proto);
    if (*proto != 0) return std::nullopt;  // only the capped-client rules match a protocol
    if (target == "CONNMARK") return matches.empty() ? parse_restore(*t) : parse_candidate(matches, *t);
    if (target == "DSCP") return parse_dscp(matches, *t);
    if (matches.empty() && !target.empty() && t->size == XT_ALIGN(sizeof(int))) return JumpRule{target};
    return std::nullopt;
}

std::string target_name(net::Family family, const Bytes& entry) {
    const EntryLayout l = layout(family);
    if (entry.size() < l.header) return {};
    const size_t target_at = load<uint16_t>(entry.data() + l.target_offset);
    auto t = read_part(entry.data() + std::min(target_at, entry.size()), entry.data() + entry.size());
    return t ? t->name : std::string{};
}

static std::string describe_capped(const CappedRule& c, const std::string& set_name) {
    char buf[128];
    std::string out;
    if (c.l4proto)
        out += c.l4proto == 6    ? "-p tcp "
               : c.l4proto == 17 ? "-p udp "
                                 : "-p " + std::to_string(c.l4proto) + " ";
    // Appended piece by piece: "#" + std::to_string(...) trips GCC 12's -Wrestrict (bug 105651).
    out += "-m set --match-set ";
    if (set_name.empty())
        out.append(1, '#').append(std::to_string(c.set_index));
    else
        out += set_name;
    out += " dst";
    if (!c.ports.empty()) {
        out += std::string(" -m multiport ") + (c.source_ports ? "--sports " : "--dports ");
        for (size_t i = 0; i < c.ports.size(); ++i) {
            if (i) out += ',';
            out += std::to_string(c.ports[i]);
        }
    }
    std::snprintf(buf, sizeof buf, " -j CONNMARK --set-xmark 0x%x/0x%x", c.ctmark_value, c.ctmark_mask);
    return out + buf;
}

std::string describe(const KnownRule& rule, const std::string& set_name) {
    char buf[128];
    if (auto* c = std::get_if<CappedRule>(&rule)) return describe_capped(*c, set_name);
    if (auto* r = std::get_if<RestoreRule>(&rule)) {
        std::snprintf(buf, sizeof buf, "-j CONNMARK --restore-mark --nfmask 0x%x --ctmask 0x%x", r->mask,
                      r->mask);
        return buf;
    }
    if (auto* j = std::get_if<JumpRule>(&rule)) return "-j " + j->target;
    if (auto* c = std::get_if<CandidateRule>(&rule)) {
        std::snprintf(buf, sizeof buf,
                      "-m connbytes --connbytes %llu --connbytes-mode bytes --connbytes-dir both "
                      "-j CONNMARK --set-xmark 0x%x/0x%x",
                      static_cast<unsigned long long>(c->min_bytes), c->bit, c->bit);
        return buf;
    }
    const auto& d = std::get<DscpRule>(rule);
    std::snprintf(buf, sizeof buf, "-m connmark --mark 0x%x/0x%x", d.ctmark_value, d.ctmark_mask);
    std::string out = buf;
    if (!d.comment.empty()) out += " -m comment --comment " + save_string(d.comment);
    std::snprintf(buf, sizeof buf, " -j DSCP --set-dscp 0x%02x", d.dscp);
    return out + buf;
}

void set_source_v4(Bytes& entry, uint32_t address_network_order, uint32_t mask_network_order) {
    store(entry.data() + offsetof(ipt_entry, ip) + offsetof(ipt_ip, src), address_network_order);
    store(entry.data() + offsetof(ipt_entry, ip) + offsetof(ipt_ip, smsk), mask_network_order);
}

}  // namespace flowshaper::kernel::mangle

namespace flowshaper::kernel {

std::vector<std::string> render_save_lines(const MangleSpec& spec, net::Family family) {
    std::vector<std::string> lines{std::string(":") + kMangleChain + " - [0:0]",
                                   std::string("-A ") + kMangleHook + " -j " + kMangleChain};
    const std::string prefix = std::string("-A ") + kMangleChain + " ";
    for (size_t i = 0; i < spec.capped.size() && i < spec.dscp_rules.size(); ++i)
        for (const auto& r : mangle::capped_rules(spec, i, 0))
            lines.push_back(prefix + mangle::describe(r, ipset_name(family, i)));
    lines.push_back(prefix + mangle::describe(mangle::RestoreRule{spec.mark_mask}));
    if (spec.candidate) lines.push_back(prefix + mangle::describe(*spec.candidate));
    for (const auto& r : spec.dscp_rules) lines.push_back(prefix + mangle::describe(r));
    return lines;
}

}  // namespace flowshaper::kernel
