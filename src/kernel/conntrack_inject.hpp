// Test and benchmark helper, not part of the kernel library: creates synthetic conntrack entries
// through ctnetlink (what `conntrack -I` does), thousands per second on one socket.
#pragma once

#include <cstdint>

#include "flowshaper/common/net.hpp"
#include "flowshaper/common/result.hpp"

namespace flowshaper::kernel {

struct SyntheticFlows {
    uint32_t count = 0;
    net::Address first_src;  // entry i gets first_src + i (in its last 32 bits)
    net::Address dst;
    uint16_t dport = 993;
    uint32_t timeout_s = 600;
    uint32_t mark = 0;
};

// Creates `count` assured, established TCP entries in the current namespace.
Status insert_synthetic_flows(const SyntheticFlows& spec);

}  // namespace flowshaper::kernel
