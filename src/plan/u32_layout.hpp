// Where a client's u32 match node goes: which table, which bucket, which keys.
#pragma once

#include <optional>
#include <set>

#include "flowshaper/common/net.hpp"
#include "flowshaper/plan/u32_match.hpp"
#include "flowshaper/tc/model.hpp"

namespace flowshaper::plan {

struct MatchPlace {
    uint16_t prio = 0;
    uint16_t protocol = 0;
    uint32_t table = 0;  // 0: the prio's root table (the short list of wide prefixes)
    uint32_t bucket = 0;
};

// A hash table for a range of prefix lengths, hashed on one byte of the destination address.
struct HashGroup {
    net::Family family;
    uint8_t min_length;
    uint8_t max_length;
    uint8_t byte;  // index into the address: wholly inside every prefix of the range
    uint32_t table;
    uint32_t link_node;  // the link's node number in the prio's root table
    bool always;         // present even when no client uses it (hosts: heavy clients land there)
    const char* label;
};
const std::vector<HashGroup>& hash_groups();

// Which table and bucket a prefix goes to; table 0 (the prio's root table, a short linear list)
// only for prefixes shorter than every hash group (IPv4 below /8, IPv6 below /32).
MatchPlace place_for(const net::Prefix& prefix);
// keys_for and identity_of (the node's keys, both ways): flowshaper/plan/u32_match.hpp.

// The fixed part of the layout: hash tables and the links into them (the tables that are always
// there, and those in `tables_used`), tables first.
std::vector<tc::U32Filter> fixed_u32_nodes(const std::set<uint32_t>& tables_used = {});

}  // namespace flowshaper::plan
