// diff: the ordered changes that turn what a device has into what the plan wants.
#pragma once

#include <vector>

#include "flowshaper/tc/model.hpp"

namespace flowshaper::plan {

// Order: removals first (filters, then leaves, then classes children before parents), then
// additions and in-place changes (qdisc, classes parents before children, leaves, hash tables,
// links, matches). A class whose parent changed is removed and added again, with the filters
// and children that depend on it. Identical states give no change at all.
std::vector<tc::Change> diff(const tc::DeviceState& desired, const tc::DeviceState& observed);

}  // namespace flowshaper::plan
