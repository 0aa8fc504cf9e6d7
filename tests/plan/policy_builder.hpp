// Builds typed policies in tests without going through TOML.
#pragma once

#include "flowshaper/policy/policy.hpp"

namespace flowshaper::testing {

inline net::Prefix prefix(const char* text) {
    return *net::Prefix::parse(text);
}

inline policy::Policy small_policy() {
    policy::Policy p;
    p.file = "test.toml";
    policy::Interface eth0;
    eth0.device = "eth0";
    eth0.rate_bits_per_s = 1'000'000'000;
    eth0.default_class = "normal";
    eth0.classes.push_back({"normal", std::nullopt, 900'000'000, 1'000'000'000, 0, std::nullopt, {}});
    eth0.classes.push_back({"bulk", std::nullopt, 100'000'000, 1'000'000'000, 1, std::nullopt, {}});
    p.interfaces.push_back(eth0);
    policy::Cap c42;
    c42.name = "customer-42";
    c42.device = "eth0";
    c42.clients = {prefix("203.0.113.7"), prefix("2001:db8:7::/64")};
    c42.rate_bits_per_s = 5'000'000;
    c42.ceil_bits_per_s = 10'000'000;
    p.caps.push_back(c42);
    policy::Cap scrapers;
    scrapers.name = "scrapers";
    scrapers.device = "eth0";
    scrapers.clients = {prefix("198.51.100.0/24"), prefix("2001:db8:bad::/48")};
    scrapers.rate_bits_per_s = 2'000'000;
    scrapers.ceil_bits_per_s = 2'000'000;
    scrapers.shared = true;
    p.caps.push_back(scrapers);
    policy::Detect imap;
    imap.name = "imap-sync-loop";
    imap.device = "eth0";
    imap.protocol = policy::Protocol::Tcp;
    imap.local_ports = {143, 993};
    imap.flow_bytes = 500'000'000;
    imap.dscp = 8;
    imap.limit = {2'000'000, 4'000'000};
    p.detects.push_back(imap);
    return p;
}

// n per-client caps of 5mbit for 10.(i/65536).(i/256).(i%256) style addresses.
inline policy::Policy many_clients(size_t n, const std::string& device = "eth0") {
    policy::Policy p;
    p.file = "many.toml";
    policy::Interface iface;
    iface.device = device;
    iface.rate_bits_per_s = 10'000'000'000ull;
    p.interfaces.push_back(iface);
    policy::Cap cap;
    cap.name = "customers";
    cap.device = device;
    cap.rate_bits_per_s = 5'000'000;
    cap.ceil_bits_per_s = 10'000'000;
    for (size_t i = 0; i < n; ++i)
        cap.clients.push_back({net::Address::from_v4(0x0a000000u + static_cast<uint32_t>(i) + 1), 32});
    p.caps.push_back(cap);
    return p;
}

}  // namespace flowshaper::testing
