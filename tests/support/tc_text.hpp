// Independent readings of the kernel's tc state through `tc` itself, for real-kernel tests.
// iproute2 6.1 prints no JSON for `tc class show`, so classes are parsed from its text.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "netns.hpp"

namespace flowshaper::testing {

struct TcClass {
    std::string parent;  // "root" or a handle
    std::string rate;    // as tc prints it: "5Mbit"
    std::string ceil;
    uint64_t bytes = 0;
    uint64_t packets = 0;
    uint64_t drops = 0;
};

// `tc -s class show dev DEV`, by class handle ("f5:100"): the HTB classes only (fq_codel and sfq
// leaves list each active flow as a class of their own).
std::map<std::string, TcClass> tc_class_table(const Netns& ns, const std::string& dev);

// The flowid of the u32 node whose text in `tc filter show` contains `needle`
// (e.g. "0ac80002/ffffffff at 16"); empty when there is none.
std::string tc_flowid_of(const Netns& ns, const std::string& dev, const std::string& needle);

}  // namespace flowshaper::testing
