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

MatchPlace place_for(const net::Prefix& prefix) {
    if (prefix.family() == net::Family::V4) {
        if (prefix.length == 32) return {kPrioV4, tc::kEthPIp, kTableV4Host, prefix.address.bytes[3]};
        return {kPrioV4, tc::kEthPIp, 0, 0};
    }
    if (prefix.length == 128) return {kPrioV6, tc::kEthPIpv6, kTableV6Host, prefix.address.bytes[15]};
    if (prefix.length >= 64) return {kPrioV6, tc::kEthPIpv6, kTableV6Net, prefix.address.bytes[7]};
    return {kPrioV6, tc::kEthPIpv6, 0, 0};
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

std::vector<tc::U32Filter> fixed_u32_nodes() {
    using R = tc::U32Filter::Role;
    auto table = [](uint16_t prio, uint16_t proto, uint32_t id, const char* label) {
        tc::U32Filter f;
        f.role = R::Table;
        f.prio = prio;
        f.protocol = proto;
        f.handle = tc::u32_handle(id, 0, 0);
        f.divisor = 256;
        f.label = label;
        return f;
    };
    auto link = [](uint16_t prio, uint16_t proto, uint32_t node, uint32_t to, uint32_t mask, int32_t off,
                   const char* label) {
        tc::U32Filter f;
        f.role = R::Link;
        f.prio = prio;
        f.protocol = proto;
        f.handle = tc::u32_handle(0, 0, node);
        f.link_table = tc::u32_handle(to, 0, 0);
        f.hash_mask = mask;
        f.hash_offset = off;
        f.keys = {{0, 0, 0}};
        f.label = label;
        return f;
    };
    return {
        table(kPrioV4, tc::kEthPIp, kTableV4Host, "IPv4 hosts, by last byte"),
        table(kPrioV6, tc::kEthPIpv6, kTableV6Host, "IPv6 hosts, by last byte"),
        table(kPrioV6, tc::kEthPIpv6, kTableV6Net, "IPv6 /64../127, by byte 7"),
        link(kPrioV4, tc::kEthPIp, 1, kTableV4Host, 0x000000ff, kV4DstOffset, "IPv4 dst hash"),
        link(kPrioV6, tc::kEthPIpv6, 1, kTableV6Host, 0x000000ff, kV6DstOffset + 12, "IPv6 dst hash"),
        link(kPrioV6, tc::kEthPIpv6, 2, kTableV6Net, 0x000000ff, kV6DstOffset + 4, "IPv6 /64 hash"),
    };
}

}  // namespace flowshaper::plan
