// One biflow record: what the exporter sends for one connection and one period.
#pragma once

#include <cstdint>

#include "flowshaper/common/net.hpp"

namespace flowshaper::flowrec {

// IPFIX flowEndReason (IE 136, RFC 7012 / IANA "flowEndReason Values").
enum class EndReason : uint8_t {
    IdleTimeout = 1,
    ActiveTimeout = 2,    // the connection lives on; the next record continues it
    EndOfFlow = 3,        // conntrack said it ended (DESTROY event)
    ForcedEnd = 4,        // the exporter shut down
    LackOfResources = 5,  // it vanished without an event (lost events, full table): last known counters
};

// Addresses and ports are the conntrack original tuple (the side that opened the connection is
// the source); post_* are the same packets after NAT (from the reply tuple; equal to the original
// values when there is no NAT). "Forward" counts the original direction, "reverse" the reply
// direction (RFC 5103). Times are milliseconds since the Unix epoch.
struct FlowRecord {
    net::Family family = net::Family::V4;
    uint8_t l4proto = 0;
    uint8_t tos = 0;  // postIpClassOfService: DSCP << 2
    EndReason reason = EndReason::ActiveTimeout;
    net::Address src, dst, post_src, post_dst;
    uint16_t sport = 0, dport = 0, post_sport = 0, post_dport = 0;
    uint64_t start_ms = 0, end_ms = 0;
    uint64_t octets = 0, packets = 0;          // original direction, this period
    uint64_t rev_octets = 0, rev_packets = 0;  // reply direction, this period
};

}  // namespace flowshaper::flowrec
