// Builders for detect tests: rules, flows and a scripted conntrack table polled at given times.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "flowshaper/detect/detector.hpp"

namespace flowshaper::detect::testing {

inline net::Address addr(const char* text) {
    return *net::Address::parse(text);
}
inline net::Prefix prefix(const char* text) {
    return *net::Prefix::parse(text);
}

inline constexpr uint8_t kTcp = 6;
inline constexpr uint8_t kUdp = 17;

// This host: 192.0.2.1 and 2001:db8::1.
inline std::vector<net::Address> host_addresses() {
    return {addr("192.0.2.1"), addr("2001:db8::1")};
}

// A connection a client opened to this host's port `server_port` (reply bytes go toward it).
inline FlowSample inbound(uint32_t id, const char* client, uint16_t server_port, uint64_t reply_bytes,
                          uint64_t orig_bytes = 0, uint8_t proto = kTcp) {
    FlowSample f;
    f.id = id;
    f.orig_src = addr(client);
    f.family = f.orig_src.family;
    f.orig_dst = f.family == net::Family::V4 ? addr("192.0.2.1") : addr("2001:db8::1");
    f.l4proto = proto;
    f.orig_sport = static_cast<uint16_t>(40000 + id % 20000);
    f.orig_dport = server_port;
    f.orig_bytes = orig_bytes;
    f.reply_bytes = reply_bytes;
    return f;
}

// A connection this host opened to `remote`:`port` (original bytes go toward the remote end).
inline FlowSample outbound(uint32_t id, const char* remote, uint16_t port, uint64_t orig_bytes,
                           uint64_t reply_bytes = 0, uint8_t proto = kTcp) {
    FlowSample f = inbound(id, remote, port, reply_bytes, orig_bytes, proto);
    std::swap(f.orig_src, f.orig_dst);
    return f;
}

inline policy::Detect rule(const char* name) {
    policy::Detect r;
    r.name = name;
    r.device = "eth0";
    r.protocol = policy::Protocol::Tcp;
    r.limit.rate_bits_per_s = 2'000'000;
    r.limit.ceil_bits_per_s = 4'000'000;
    r.release_after_ms = 10'000;
    return r;
}

// A conntrack table that tests change between polls; poll() hands the whole table to the detector.
struct Table {
    std::map<uint32_t, FlowSample> flows;

    void put(const FlowSample& f) { flows[f.id] = f; }
    void end(uint32_t id) { flows.erase(id); }
    // Adds bytes toward the client of flow `id`: reply bytes for inbound, original for outbound.
    void grow(uint32_t id, uint64_t bytes) {
        FlowSample& f = flows.at(id);
        bool host_opened = f.orig_src == addr("192.0.2.1") || f.orig_src == addr("2001:db8::1");
        (host_opened ? f.orig_bytes : f.reply_bytes) += bytes;
    }
    std::vector<FlowSample> samples() const {
        std::vector<FlowSample> out;
        for (const auto& [id, f] : flows) out.push_back(f);
        return out;
    }
};

inline const Decision* find(const std::vector<Decision>& ds, DecisionKind kind, const char* client) {
    for (const auto& d : ds)
        if (d.kind == kind && d.client == addr(client)) return &d;
    return nullptr;
}

inline size_t count(const std::vector<Decision>& ds, DecisionKind kind) {
    size_t n = 0;
    for (const auto& d : ds) n += d.kind == kind ? 1 : 0;
    return n;
}

}  // namespace flowshaper::detect::testing
