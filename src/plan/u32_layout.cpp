#include "u32_layout.hpp"

#include "flowshaper/plan/planner.hpp"

namespace flowshaper::plan {

namespace {

constexpr int32_t kV4DstOffset = 16;          // IPv4 header: destination address
constexpr int32_t kV6DstOffset = 24;          // IPv6 header: destination address
constexpr uint32_t kV4DscpMask = 0x00fc0000;  // TOS byte (offset 1), DSCP bits
constexpr uint32_t kV6DscpMask = 0x0fc00000;  // traffic class, DSCP bits

uint32_t word_at(const net::Address& a, int index) {
    return (uint32_t{a.bytes[index * 4]} << 24) | (uint32_t{a.bytes[index * 4 + 1]} << 16) |
           (uint32_t{a.bytes[index * 4 + 2]} << 8) | a.bytes[index * 4 + 3];
}

uint32_t mask_for(int prefix_len, int word_index) {
    int bits = prefix_len - word_index * 32;
    if (bits <= 0) return 0;
    if (bits >= 32) return 0xffffffffu;
    return ~((1u << (32 - bits)) - 1);
}

}  // namespace

// Every prefix length from /8 (IPv4) or /32 (IPv6) up has a hash table: keyed on the last byte
// that lies wholly inside the prefix, so that every address of the prefix lands in one bucket.
// A packet walks one link node per table of its family, then one bucket: constant work whatever
// the number of clients. Hosts and IPv6 /64s are always there (heavy clients are hosts); the
// other tables only when a client needs them.
const std::vector<HashGroup>& hash_groups() {
    static const std::vector<HashGroup> groups = {
        {net::Family::V4, 32, 32, 3, kTableV4Host, 1, true, "IPv4 hosts, by last byte"},
        {net::Family::V4, 24, 31, 2, kTableV4Net24, 2, false, "IPv4 /24../31, by byte 2"},
        {net::Family::V4, 16, 23, 1, kTableV4Net16, 3, false, "IPv4 /16../23, by byte 1"},
        {net::Family::V4, 8, 15, 0, kTableV4Net8, 4, false, "IPv4 /8../15, by byte 0"},
        {net::Family::V6, 128, 128, 15, kTableV6Host, 1, true, "IPv6 hosts, by last byte"},
        {net::Family::V6, 64, 127, 7, kTableV6Net, 2, true, "IPv6 /64../127, by byte 7"},
        {net::Family::V6, 48, 63, 5, kTableV6Net48, 3, false, "IPv6 /48../63, by byte 5"},
        {net::Family::V6, 32, 47, 3, kTableV6Net32, 4, false, "IPv6 /32../47, by byte 3"},
    };
    return groups;
}

const HashGroup* group_for(const net::Prefix& prefix) {
    for (const auto& g : hash_groups())
        if (g.family == prefix.family() && prefix.length >= g.min_length && prefix.length <= g.max_length)
            return &g;
    return nullptr;
}

MatchPlace place_for(const net::Prefix& prefix) {
    bool v4 = prefix.family() == net::Family::V4;
    MatchPlace place{v4 ? kPrioV4 : kPrioV6, v4 ? tc::kEthPIp : tc::kEthPIpv6, 0, 0};
    if (const auto* g = group_for(prefix)) {
        place.table = g->table;
        place.bucket = prefix.address.bytes[g->byte];
    }
    return place;
}

std::vector<tc::U32Key> keys_for(const MatchIdentity& id) {
    std::vector<tc::U32Key> keys;
    const auto& p = id.prefix;
    bool v4 = p.family() == net::Family::V4;
    if (id.dscp >= 0) {
        uint32_t mask = v4 ? kV4DscpMask : kV6DscpMask;
        uint32_t value = v4 ? (uint32_t(id.dscp) << 18) : (uint32_t(id.dscp) << 22);
        keys.push_back({value, mask, 0});
    }
    int words = v4 ? 1 : 4;
    int32_t base = v4 ? kV4DstOffset : kV6DstOffset;
    for (int w = 0; w < words; ++w) {
        uint32_t mask = mask_for(p.length, w);
        if (mask == 0) continue;
        keys.push_back({word_at(p.address, w) & mask, mask, base + 4 * w});
    }
    if (keys.empty()) keys.push_back({0, 0, base});  // ::/0 or 0.0.0.0/0: everything
    return keys;
}

std::optional<MatchIdentity> identity_of(const tc::U32Filter& filter) {
    if (filter.role != tc::U32Filter::Role::Match) return std::nullopt;
    bool v4 = filter.protocol == tc::kEthPIp;
    if (!v4 && filter.protocol != tc::kEthPIpv6) return std::nullopt;
    MatchIdentity id;
    id.prefix.address.family = v4 ? net::Family::V4 : net::Family::V6;
    int32_t base = v4 ? kV4DstOffset : kV6DstOffset;
    int words = v4 ? 1 : 4;
    int length = 0;
    bool contiguous = true;
    for (const auto& k : filter.keys) {
        if (k.offset == 0) {
            uint32_t mask = v4 ? kV4DscpMask : kV6DscpMask;
            if (k.mask != mask) return std::nullopt;
            id.dscp = static_cast<int>(v4 ? (k.value >> 18) : (k.value >> 22));
            continue;
        }
        int w = (k.offset - base) / 4;
        if (k.offset < base || (k.offset - base) % 4 != 0 || w >= words) return std::nullopt;
        if (k.mask == 0) continue;
        if (!contiguous || w * 32 != length) return std::nullopt;
        int bits = __builtin_popcount(k.mask);
        if (k.mask != mask_for(bits, 0)) return std::nullopt;
        for (int b = 0; b < 4; ++b) id.prefix.address.bytes[w * 4 + b] = uint8_t(k.value >> (24 - 8 * b));
        length += bits;
        contiguous = bits == 32;
    }
    id.prefix.length = static_cast<uint8_t>(length);
    if (keys_for(id) != filter.keys) return std::nullopt;  // not in flowshaper's canonical form
    return id;
}

std::string describe(const MatchIdentity& id) {
    if (id.dscp < 0) return "client " + id.prefix.str();
    return "heavy " + id.prefix.str() + " dscp " + std::to_string(id.dscp);
}

std::vector<tc::U32Filter> fixed_u32_nodes(const std::set<uint32_t>& tables_used) {
    using R = tc::U32Filter::Role;
    std::vector<tc::U32Filter> tables;
    std::vector<tc::U32Filter> links;
    for (const auto& g : hash_groups()) {
        if (!g.always && !tables_used.count(g.table)) continue;
        bool v4 = g.family == net::Family::V4;
        tc::U32Filter t;
        t.role = R::Table;
        t.prio = v4 ? kPrioV4 : kPrioV6;
        t.protocol = v4 ? tc::kEthPIp : tc::kEthPIpv6;
        t.handle = tc::u32_handle(g.table, 0, 0);
        t.divisor = 256;
        t.label = g.label;
        tc::U32Filter l;
        l.role = R::Link;
        l.prio = t.prio;
        l.protocol = t.protocol;
        l.handle = tc::u32_handle(0, 0, g.link_node);
        l.link_table = t.handle;
        // The hash takes the 32-bit word holding the byte, masked to it.
        l.hash_mask = 0xffu << (8 * (3 - g.byte % 4));
        l.hash_offset = (v4 ? kV4DstOffset : kV6DstOffset) + 4 * (g.byte / 4);
        l.keys = {{0, 0, 0}};
        l.label = std::string("into: ") + g.label;
        tables.push_back(std::move(t));
        links.push_back(std::move(l));
    }
    tables.insert(tables.end(), std::make_move_iterator(links.begin()), std::make_move_iterator(links.end()));
    return tables;
}

}  // namespace flowshaper::plan
