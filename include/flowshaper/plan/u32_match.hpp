// The u32 keys of a client's match node, both ways: what plan writes (keys_for) and what a reader
// of the kernel's filters gets back (identity_of). The one encoder and the one decoder: anything
// that needs to know which client a u32 node selects (show, adoption, diff) asks here.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "flowshaper/common/net.hpp"
#include "flowshaper/tc/model.hpp"

namespace flowshaper::plan {

// The identity of a match node: the client prefix and, for heavy traffic, the DSCP it carries.
struct MatchIdentity {
    net::Prefix prefix;
    int dscp = -1;  // -1: any

    auto operator<=>(const MatchIdentity&) const = default;
};

// The keys: the DSCP (offset 0: IPv4 TOS byte, IPv6 traffic class) when set, then the words of
// the destination address the prefix covers (a partial word masked); "everything" for /0.
std::vector<tc::U32Key> keys_for(const MatchIdentity& id);

// The inverse of keys_for for a Match node of protocol IPv4 or IPv6; nullopt for any node
// flowshaper would not have written (another role or protocol, foreign offsets or masks).
std::optional<MatchIdentity> identity_of(const tc::U32Filter& filter);

// "client 203.0.113.7", "client 2001:db8:7::/64", "heavy 10.0.0.9 dscp 8"
std::string describe(const MatchIdentity& id);

}  // namespace flowshaper::plan
