// IPv4/IPv6 addresses and prefixes as value types.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace flowshaper::net {

enum class Family : uint8_t { V4 = 4, V6 = 6 };

// An address; for V4 only bytes[0..3] are used, the rest stay zero.
struct Address {
    Family family = Family::V4;
    std::array<uint8_t, 16> bytes{};

    int bit_width() const { return family == Family::V4 ? 32 : 128; }
    int byte_width() const { return family == Family::V4 ? 4 : 16; }
    std::string str() const;
    static std::optional<Address> parse(std::string_view text);
    static Address from_v4(uint32_t host_order);

    auto operator<=>(const Address&) const = default;
};

// An address with a prefix length; the host bits are always zero.
struct Prefix {
    Address address;
    uint8_t length = 0;

    Family family() const { return address.family; }
    bool is_host() const { return length == address.bit_width(); }
    bool contains(const Address& a) const;
    bool overlaps(const Prefix& other) const;
    // "203.0.113.7" for a host, "2001:db8::/64" otherwise.
    std::string str() const;
    // Accepts "a.b.c.d", "a.b.c.d/n", "x::y", "x::y/n". Host bits set is an error: the
    // caller gets std::nullopt and `host_bits_set` tells why.
    static std::optional<Prefix> parse(std::string_view text, bool* host_bits_set = nullptr);

    auto operator<=>(const Prefix&) const = default;
};

}  // namespace flowshaper::net
