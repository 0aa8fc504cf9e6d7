// Conntrack entries for the controller's tests, built without a kernel: clients' connections to
// the IMAP server that the tests' [[detect]] rules watch.
#pragma once

#include <netinet/in.h>

#include <cstdint>

#include "flowshaper/common/net.hpp"
#include "flowshaper/kernel/conntrack_port.hpp"

namespace flowshaper::testing {

// The local address whose port 993 the rules watch.
inline const net::Address kServer = *net::Address::parse("192.0.2.1");

// `client`:`sport` -> kServer:993 over TCP (IPv4): `reply_bytes` from the server, a fiftieth of
// that from the client.
inline kernel::FlowSample imap_flow(const net::Address& client, uint16_t sport, uint64_t reply_bytes = 0) {
    kernel::FlowSample f;
    f.family = net::Family::V4;
    f.l4proto = IPPROTO_TCP;
    f.orig_src = client;
    f.orig_dst = kServer;
    f.orig_sport = sport;
    f.orig_dport = 993;
    f.orig_bytes = reply_bytes / 50;
    f.reply_bytes = reply_bytes;
    return f;
}

}  // namespace flowshaper::testing
