// Where a client's u32 match node goes: which table, which bucket, which keys.
#pragma once

#include <optional>

#include "flowshaper/common/net.hpp"
#include "flowshaper/tc/model.hpp"

namespace flowshaper::plan {

struct MatchPlace {
    uint16_t prio = 0;
    uint16_t protocol = 0;
    uint32_t table = 0;  // 0: the prio's root table (the short list of wide prefixes)
    uint32_t bucket = 0;
};

// The identity of a match node: the client prefix and, for heavy traffic, the DSCP it carries.
struct MatchIdentity {
    net::Prefix prefix;
    int dscp = -1;  // -1: any

    auto operator<=>(const MatchIdentity&) const = default;
};

MatchPlace place_for(const net::Prefix& prefix);
std::vector<tc::U32Key> keys_for(const MatchIdentity& id);
// The inverse of keys_for; nullopt for keys flowshaper would not have written.
std::optional<MatchIdentity> identity_of(const tc::U32Filter& filter);

// The fixed part of the layout: hash tables and the links into them.
std::vector<tc::U32Filter> fixed_u32_nodes();

}  // namespace flowshaper::plan
