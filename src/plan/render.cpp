#include "flowshaper/plan/render.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>

#include "flowshaper/policy/units.hpp"

namespace flowshaper::plan {

namespace {

std::string hex32(uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", v);
    return buf;
}

std::string rate(uint64_t bytes_per_s) {
    return policy::format_rate(bytes_per_s * 8);
}

void render_children(std::ostringstream& out, const DevicePlan& plan,
                     const std::multimap<tc::Handle, const tc::HtbClass*>& children, tc::Handle parent,
                     const std::string& indent) {
    auto [begin, end] = children.equal_range(parent);
    for (auto it = begin; it != end; ++it) {
        const auto& c = *it->second;
        bool last = std::next(it) == end;
        out << indent << (last ? "`- " : "|- ") << tc::format_handle(c.classid) << "  " << c.label
            << "  rate " << rate(c.rate_bytes_per_s) << " ceil " << rate(c.ceil_bytes_per_s);
        if (plan.desired.root && c.classid == plan.desired.root->default_class) out << "  [default]";
        out << "\n";
        render_children(out, plan, children, c.classid, indent + (last ? "   " : "|  "));
    }
}

// "leaf queues: bfifo on 3 leaves (4542..62500 bytes): auto: the kernel has neither ..."
void render_leaves(std::ostringstream& out, const DevicePlan& plan) {
    const auto& leaves = plan.desired.leaves;
    out << "  leaf queues: " << (leaves.empty() ? plan.leaf_kind : leaves.front().kind);
    if (leaves.empty()) {
        out << " (nothing created)";
    } else {
        out << " on " << leaves.size() << " leaves";
        auto [lo, hi] = std::minmax_element(leaves.begin(), leaves.end(), [](const auto& a, const auto& b) {
            return a.limit_bytes < b.limit_bytes;
        });
        if (hi->limit_bytes) {
            out << " (" << lo->limit_bytes;
            if (hi->limit_bytes != lo->limit_bytes) out << ".." << hi->limit_bytes;
            out << " bytes)";
        }
    }
    if (!plan.leaf_reason.empty()) out << ": " << plan.leaf_reason;
    out << "\n";
}

}  // namespace

std::string render_text(const DevicePlan& plan) {
    std::ostringstream out;
    const auto& st = plan.desired;
    out << st.device << ": htb " << tc::format_handle(tc::kRootQdisc) << " link "
        << policy::format_rate(plan.link_rate_bits_per_s) << ", " << st.classes.size() << " classes ("
        << plan.client_classes << " for clients)\n";
    std::multimap<tc::Handle, const tc::HtbClass*> children;
    for (const auto& c : st.classes) children.emplace(c.parent, &c);
    render_children(out, plan, children, tc::kRootQdisc, "  ");
    size_t matches = 0;
    std::string tables;
    for (const auto& f : st.u32) {
        if (f.role == tc::U32Filter::Role::Match) ++matches;
        if (f.role == tc::U32Filter::Role::Table) tables += (tables.empty() ? "" : "; ") + f.label;
    }
    out << "  classification: hashed u32, 256 buckets per table (" << tables << "); " << matches
        << " client match nodes, " << plan.wide_prefixes << " in the short list of wider prefixes";
    if (!st.fw.empty()) out << "; fw: " << st.fw.size() << " marks";
    out << "\n";
    render_leaves(out, plan);
    return out.str();
}

namespace {

std::string proto(uint16_t p) {
    return p == tc::kEthPIp ? "ip" : p == tc::kEthPIpv6 ? "ipv6" : "all";
}

void u32_line(std::ostringstream& out, const std::string& dev, const tc::U32Filter& f) {
    std::string base = "filter add dev " + dev + " parent " + tc::format_handle(tc::kRootQdisc) + " prio " +
                       std::to_string(f.prio) + " protocol " + proto(f.protocol);
    if (f.role == tc::U32Filter::Role::Table) {
        out << base << " handle " << tc::format_u32_handle(f.handle) << " u32 divisor " << f.divisor << "\n";
        return;
    }
    uint32_t table = tc::u32_table_of(f.handle);
    char handle[32];
    if (table == 0) {
        // The prio's root table: the kernel numbers it, so name only the node.
        std::snprintf(handle, sizeof handle, "::%x", tc::u32_node_of(f.handle));
        out << base << " handle " << handle << " u32";
    } else {
        std::snprintf(handle, sizeof handle, "%x:%x:%x", table, tc::u32_bucket_of(f.handle),
                      tc::u32_node_of(f.handle));
        char bucket[32];
        std::snprintf(bucket, sizeof bucket, "%x:%x:", table, tc::u32_bucket_of(f.handle));
        out << base << " handle " << handle << " u32 ht " << bucket;
    }
    for (const auto& k : f.keys)
        out << " match u32 " << hex32(k.value) << " " << hex32(k.mask) << " at " << k.offset;
    if (f.role == tc::U32Filter::Role::Link)
        out << " link " << tc::format_u32_handle(f.link_table) << " hashkey mask " << hex32(f.hash_mask)
            << " at " << f.hash_offset;
    else
        out << " flowid " << tc::format_handle(f.classid);
    out << "\n";
}

}  // namespace

std::string render_tc_batch(const DevicePlan& plan) {
    std::ostringstream out;
    const auto& st = plan.desired;
    const std::string& dev = st.device;
    if (st.root)
        out << "qdisc add dev " << dev << " root handle " << tc::format_handle(st.root->handle)
            << " htb default " << std::hex << tc::minor_of(st.root->default_class) << std::dec << " r2q "
            << st.root->r2q << "\n";
    for (const auto& c : st.classes) {
        out << "class add dev " << dev << " parent " << tc::format_handle(c.parent) << " classid "
            << tc::format_handle(c.classid) << " htb rate " << c.rate_bytes_per_s * 8 << "bit ceil "
            << c.ceil_bytes_per_s * 8 << "bit burst " << c.burst_bytes << "b cburst " << c.cburst_bytes
            << "b";
        if (c.quantum_bytes) out << " quantum " << c.quantum_bytes;
        out << " prio " << c.prio << "\n";
    }
    for (const auto& q : st.leaves) {
        out << "qdisc add dev " << dev << " parent " << tc::format_handle(q.parent) << " handle "
            << tc::format_handle(q.handle) << " " << q.kind;
        if (q.limit_packets) out << " limit " << q.limit_packets;
        if (q.limit_bytes) out << " limit " << q.limit_bytes;  // bytes for a bfifo
        out << "\n";
    }
    for (auto role : {tc::U32Filter::Role::Table, tc::U32Filter::Role::Link, tc::U32Filter::Role::Match})
        for (const auto& f : st.u32)
            if (f.role == role) u32_line(out, dev, f);
    for (const auto& f : st.fw)
        out << "filter add dev " << dev << " parent " << tc::format_handle(tc::kRootQdisc) << " prio "
            << f.prio << " protocol all handle " << hex32(f.handle) << "/" << hex32(f.mask) << " fw classid "
            << tc::format_handle(f.classid) << "\n";
    return out.str();
}

}  // namespace flowshaper::plan
