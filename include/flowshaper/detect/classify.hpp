// detect: which [[detect]] rule a conntrack flow belongs to, who its client is, and how many bytes
// went toward that client. Pure: no kernel, no clock, no I/O.
//
// The client of a flow is its endpoint that is not an address of this host:
//   - orig_dst is ours, orig_src is not: the client opened the connection (this host is the
//     server); the bytes toward the client are the reply direction's; the rule's local_ports
//     must hold orig_dport (the server port).
//   - orig_src is ours, orig_dst is not: this host opened it; the bytes toward the client are the
//     original direction's; the rule's remote_ports must hold orig_dport.
//   - both ours (local traffic): no client, no rule matches.
//   - neither ours (forwarded): only rules with `clients` prefixes can match; the client is the
//     endpoint inside them, orig_src first (then it opened the connection, like a client of ours;
//     local_ports applies to orig_dport), else orig_dst (the other side opened it toward the
//     client; remote_ports applies to orig_dport).
// A rule with both port lists empty takes either direction and any port; with only local_ports,
// only connections the client opened; with only remote_ports, only connections this host (the
// other side) opened. Port lists never match protocols without ports (port 0).
// A rule with `clients` prefixes needs the client inside one of them. A client inside one of the
// rule's `exclude` prefixes makes that rule not match (a later rule may still match).
// The first matching rule in policy order wins.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "flowshaper/common/net.hpp"
#include "flowshaper/policy/policy.hpp"

namespace flowshaper::detect {

// One conntrack entry as the detector sees it (the controller copies it from the conntrack
// port's sample; the field names are the same). Ports in host byte order.
struct FlowSample {
    uint32_t id = 0;  // the kernel's conntrack id
    net::Family family = net::Family::V4;
    uint8_t l4proto = 0;  // IPPROTO_TCP (6), IPPROTO_UDP (17), ...
    net::Address orig_src, orig_dst;
    uint16_t orig_sport = 0, orig_dport = 0;
    uint64_t orig_bytes = 0, reply_bytes = 0;  // both directions' counters
    bool alive = true;                         // false: a DESTROY event's last counters (the flow has ended)
};

// This host's own addresses (IPv4 and IPv6), searchable in O(log n).
class LocalAddresses {
public:
    LocalAddresses() = default;
    explicit LocalAddresses(std::vector<net::Address> addresses);
    bool contains(const net::Address& address) const;
    size_t size() const { return sorted_.size(); }

private:
    std::vector<net::Address> sorted_;
};

struct Classification {
    size_t rule = 0;  // index into the rules
    net::Address client;
    bool client_opened = false;        // the client is orig_src (it opened the connection)
    uint64_t toward_client_bytes = 0;  // reply_bytes when client_opened, else orig_bytes
};

// The first rule (in order) that the flow matches, or nullopt.
std::optional<Classification> classify(const FlowSample& flow, const LocalAddresses& local,
                                       const std::vector<policy::Detect>& rules);

}  // namespace flowshaper::detect
