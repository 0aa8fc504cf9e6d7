#include "flowshaper/common/net.hpp"

#include <arpa/inet.h>

#include <charconv>

namespace flowshaper::net {

std::string Address::str() const {
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(family == Family::V4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
    return buf;
}

std::optional<Address> Address::parse(std::string_view text) {
    if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
    std::string s(text);
    Address a;
    if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
        a.family = Family::V4;
        return a;
    }
    if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
        a.family = Family::V6;
        return a;
    }
    return std::nullopt;
}

Address Address::from_v4(uint32_t host_order) {
    Address a;
    a.family = Family::V4;
    a.bytes[0] = static_cast<uint8_t>(host_order >> 24);
    a.bytes[1] = static_cast<uint8_t>(host_order >> 16);
    a.bytes[2] = static_cast<uint8_t>(host_order >> 8);
    a.bytes[3] = static_cast<uint8_t>(host_order);
    return a;
}

namespace {

bool prefix_match(const Address& a, const Address& b, int length) {
    int full = length / 8;
    for (int i = 0; i < full; ++i)
        if (a.bytes[i] != b.bytes[i]) return false;
    int rest = length % 8;
    if (rest == 0) return true;
    auto mask = static_cast<uint8_t>(0xff << (8 - rest));
    return (a.bytes[full] & mask) == (b.bytes[full] & mask);
}

}  // namespace

bool Prefix::contains(const Address& a) const {
    return a.family == address.family && prefix_match(address, a, length);
}

bool Prefix::overlaps(const Prefix& other) const {
    if (other.family() != family()) return false;
    return prefix_match(address, other.address, std::min(length, other.length));
}

std::string Prefix::str() const {
    if (is_host()) return address.str();
    return address.str() + "/" + std::to_string(length);
}

std::optional<Prefix> Prefix::parse(std::string_view text, bool* host_bits_set) {
    if (host_bits_set) *host_bits_set = false;
    auto slash = text.find('/');
    auto addr = Address::parse(text.substr(0, slash));
    if (!addr) return std::nullopt;
    Prefix p{*addr, static_cast<uint8_t>(addr->bit_width())};
    if (slash != std::string_view::npos) {
        auto len_text = text.substr(slash + 1);
        unsigned len = 0;
        auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
        if (ec != std::errc{} || end != len_text.data() + len_text.size() || len_text.empty() ||
            len > static_cast<unsigned>(addr->bit_width()))
            return std::nullopt;
        p.length = static_cast<uint8_t>(len);
    }
    Address masked = p.address;
    for (int bit = p.length; bit < masked.bit_width(); ++bit)
        masked.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
    if (masked != p.address) {
        if (host_bits_set) *host_bits_set = true;
        return std::nullopt;
    }
    return p;
}

}  // namespace flowshaper::net
