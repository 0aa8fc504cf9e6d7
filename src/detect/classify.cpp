#include "flowshaper/detect/classify.hpp"

#include <algorithm>

namespace flowshaper::detect {

LocalAddresses::LocalAddresses(std::vector<net::Address> addresses) : sorted_(std::move(addresses)) {
    std::sort(sorted_.begin(), sorted_.end());
    sorted_.erase(std::unique(sorted_.begin(), sorted_.end()), sorted_.end());
}

bool LocalAddresses::contains(const net::Address& address) const {
    return std::binary_search(sorted_.begin(), sorted_.end(), address);
}

namespace {

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;

bool protocol_matches(policy::Protocol protocol, uint8_t l4proto) {
    switch (protocol) {
        case policy::Protocol::Any:
            return true;
        case policy::Protocol::Tcp:
            return l4proto == kTcp;
        case policy::Protocol::Udp:
            return l4proto == kUdp;
    }
    return false;
}

bool in_any(const std::vector<net::Prefix>& prefixes, const net::Address& address) {
    return std::any_of(prefixes.begin(), prefixes.end(),
                       [&](const net::Prefix& p) { return p.contains(address); });
}

bool has_port(const std::vector<uint16_t>& ports, uint16_t port) {
    return port != 0 && std::find(ports.begin(), ports.end(), port) != ports.end();
}

// Which side of the flow is ours, worked out once for all rules.
enum class Side { ClientOpened, HostOpened, Local, Forwarded };

Side side_of(const FlowSample& flow, const LocalAddresses& local) {
    bool src_local = local.contains(flow.orig_src);
    bool dst_local = local.contains(flow.orig_dst);
    if (src_local && dst_local) return Side::Local;
    if (dst_local) return Side::ClientOpened;
    if (src_local) return Side::HostOpened;
    return Side::Forwarded;
}

bool ports_match(const policy::Detect& rule, bool client_opened, uint16_t dport) {
    if (rule.local_ports.empty() && rule.remote_ports.empty()) return true;
    return client_opened ? has_port(rule.local_ports, dport) : has_port(rule.remote_ports, dport);
}

std::optional<Classification> match_rule(const FlowSample& flow, Side side, const policy::Detect& rule) {
    if (!protocol_matches(rule.protocol, flow.l4proto)) return std::nullopt;
    bool client_opened = false;
    switch (side) {
        case Side::Local:
            return std::nullopt;
        case Side::ClientOpened:
            client_opened = true;
            break;
        case Side::HostOpened:
            client_opened = false;
            break;
        case Side::Forwarded:
            if (rule.clients.empty()) return std::nullopt;
            if (in_any(rule.clients, flow.orig_src))
                client_opened = true;
            else if (in_any(rule.clients, flow.orig_dst))
                client_opened = false;
            else
                return std::nullopt;
            break;
    }
    const net::Address& client = client_opened ? flow.orig_src : flow.orig_dst;
    if (side != Side::Forwarded && !rule.clients.empty() && !in_any(rule.clients, client))
        return std::nullopt;
    if (in_any(rule.exclude, client)) return std::nullopt;
    if (!ports_match(rule, client_opened, flow.orig_dport)) return std::nullopt;
    Classification c;
    c.client = client;
    c.client_opened = client_opened;
    c.toward_client_bytes = client_opened ? flow.reply_bytes : flow.orig_bytes;
    return c;
}

}  // namespace

std::optional<Classification> classify(const FlowSample& flow, const LocalAddresses& local,
                                       const std::vector<policy::Detect>& rules) {
    Side side = side_of(flow, local);
    if (side == Side::Local) return std::nullopt;
    for (size_t i = 0; i < rules.size(); ++i) {
        auto c = match_rule(flow, side, rules[i]);
        if (c) {
            c->rule = i;
            return c;
        }
    }
    return std::nullopt;
}

}  // namespace flowshaper::detect
