// Renders table inet flowshaper (see mangle_nft_port.hpp for its layout).
#include <cstdio>

#include "flowshaper/kernel/mangle_nft_port.hpp"
#include "nft_rules.hpp"

namespace flowshaper::kernel::nft {

std::string chain_name(net::Family family) {
    return family == net::Family::V4 ? "v4" : "v6";
}
std::string restore_chain_name(net::Family family) {
    return chain_name(family) + "_restore";
}
std::string set_name(net::Family family, size_t rule) {
    return std::string(family == net::Family::V4 ? "capped4_" : "capped6_") + std::to_string(rule);
}

namespace {

std::string hex(uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", v);
    return buf;
}

std::string port_list(const std::vector<uint16_t>& ports) {
    if (ports.size() == 1) return std::to_string(ports[0]);
    std::string out = "{ ";
    for (size_t i = 0; i < ports.size(); ++i) out += (i ? ", " : "") + std::to_string(ports[i]);
    return out + " }";
}

// One capped-client rule per port side in use (none: one rule for the protocol or any packet).
// The ctmark is written as nft folds it: ct mark & (~R | V) | V (no AND when ~R | V is all ones).
void capped_rules(std::string& out, net::Family family, size_t i, const MangleSpec& spec) {
    const auto& r = spec.dscp_rules[i];
    const auto& c = spec.capped[i];
    const std::string head = std::string("    ") + (family == net::Family::V4 ? "ip" : "ip6") + " daddr @" +
                             set_name(family, i) + " ";
    // nft drops an AND with all ones (the rule's mask is its value: nothing to clear).
    const uint32_t keep = ~r.ctmark_mask | r.ctmark_value;
    const std::string set = "ct mark set ct mark " + (keep == ~0u ? "" : "& " + hex(keep) + " ") + "| " +
                            hex(r.ctmark_value) + "\n";
    const std::string proto = c.l4proto == 6 ? "tcp" : "udp";
    if (!c.local_ports.empty()) out += head + proto + " sport " + port_list(c.local_ports) + " " + set;
    if (!c.remote_ports.empty()) out += head + proto + " dport " + port_list(c.remote_ports) + " " + set;
    if (c.local_ports.empty() && c.remote_ports.empty())
        out += head + (c.l4proto ? "meta l4proto " + std::to_string(c.l4proto) + " " : "") + set;
}

void chain(std::string& out, net::Family family, const MangleSpec& spec) {
    out += "  chain " + chain_name(family) + " {\n";
    for (size_t i = 0; i < spec.capped.size() && i < spec.dscp_rules.size(); ++i)
        capped_rules(out, family, i, spec);
    // The masked restore in two rules on the usual path (a packet whose fwmark holds no bit
    // outside mark_mask takes the ctmark's bits whole); a packet with other bits set goes through
    // the restore chain, which keeps them.
    const std::string others = "    meta mark & " + hex(~spec.mark_mask);
    out += others + " == 0 meta mark set ct mark & " + hex(spec.mark_mask) + "\n";
    out += others + " != 0 jump " + restore_chain_name(family) + "\n";
    if (spec.candidate)
        out += "    ct bytes >= " + std::to_string(spec.candidate->min_bytes) + " ct mark set ct mark | " +
               hex(spec.candidate->bit) + "\n";
    const std::string ip = family == net::Family::V4 ? "ip" : "ip6";
    for (const auto& r : spec.dscp_rules) {
        out += "    ct mark & " + hex(r.ctmark_mask) + " == " + hex(r.ctmark_value) + " " + ip +
               " dscp set " + std::to_string(r.dscp);
        if (!r.comment.empty()) out += " comment \"" + r.comment + "\"";
        out += "\n";
    }
    out += "  }\n";
}

// nft 1.0.6 has no one-rule masked restore: clear flowshaper's bits, then one rule per bit.
void restore_chain(std::string& out, net::Family family, const MangleSpec& spec) {
    out += "  chain " + restore_chain_name(family) + " {\n";
    out += "    meta mark set meta mark & " + hex(~spec.mark_mask) + "\n";
    for (uint32_t bit = 1; bit != 0; bit <<= 1)
        if (spec.mark_mask & bit)
            out += "    ct mark & " + hex(bit) + " == " + hex(bit) + " meta mark set meta mark | " +
                   hex(bit) + "\n";
    out += "  }\n";
}

void sets(std::string& out, net::Family family, const MangleSpec& spec,
          const std::vector<CappedClient>& members) {
    for (size_t i = 0; i < spec.capped.size(); ++i) {
        out += "  set " + set_name(family, i) + " { type " +
               (family == net::Family::V4 ? "ipv4_addr" : "ipv6_addr") + ";";
        std::string elements;
        for (const auto& m : members)
            if (m.rule == i && m.client.family == family)
                elements += (elements.empty() ? "" : ", ") + m.client.str();
        if (!elements.empty()) out += " elements = { " + elements + " };";
        out += " }\n";
    }
}

}  // namespace

std::string render_body(const std::optional<MangleSpec>& v4, const std::optional<MangleSpec>& v6,
                        const std::vector<CappedClient>& members) {
    std::string out;
    if (v4) sets(out, net::Family::V4, *v4, members);
    if (v6) sets(out, net::Family::V6, *v6, members);
    std::string vmap;
    if (v4) vmap += "ipv4 : jump v4";
    if (v6) vmap += std::string(v4 ? ", " : "") + "ipv6 : jump v6";
    out += std::string("  chain ") + kPostrouting +
           " {\n    type filter hook postrouting priority mangle; policy accept;\n    meta nfproto vmap { " +
           vmap + " }\n  }\n";
    if (v4) restore_chain(out, net::Family::V4, *v4);
    if (v6) restore_chain(out, net::Family::V6, *v6);
    if (v4) chain(out, net::Family::V4, *v4);
    if (v6) chain(out, net::Family::V6, *v6);
    return out;
}

}  // namespace flowshaper::kernel::nft

namespace flowshaper::kernel {

std::string render_nft_table(const std::optional<MangleSpec>& v4, const std::optional<MangleSpec>& v6,
                             const std::vector<CappedClient>& members) {
    if (!v4 && !v6) return std::string("delete table inet ") + kNftTable + "\n";
    return std::string("table inet ") + kNftTable + "\ndelete table inet " + kNftTable + "\ntable inet " +
           kNftTable + " {\n" + nft::render_body(v4, v6, members) + "}\n";
}

}  // namespace flowshaper::kernel
