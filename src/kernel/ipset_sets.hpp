// flowshaper's ipsets of capped clients (the libiptc backend's kernel sets): one hash:ip set per
// ([[detect]] rule, family), named by ipset_name() (mangle_iptc_port.hpp), through libipset.
// Sets of any other name are never listed for writing, flushed or destroyed.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "flowshaper/kernel/mangle_port.hpp"

namespace flowshaper::kernel::ipset {

// flowshaper's sets of the current namespace (by name), of `family`.
Result<std::vector<std::string>> our_sets(net::Family family);
// Creates the sets of rules 0..count-1 of `family` that are missing (members of existing ones stay).
Status ensure_sets(net::Family family, size_t count);
// Destroys flowshaper's sets of `family` for rules >= `from` (0: all of them). A set still
// referred to by a rule fails with EBUSY.
Status destroy_sets(net::Family family, size_t from = 0);
// Adds / removes a member (adding one that is there, removing one that is not: no error).
Status add(const CappedClient& member);
Status remove(const CappedClient& member);
// Every member of every set of ours, both families.
Result<std::vector<CappedClient>> members();
// Empties every set of ours, both families.
Status flush_all();

}  // namespace flowshaper::kernel::ipset
