// The policy while it is being read: the typed values plus where each valid value came from,
// so that the cross-checks can point at it. Internal to the policy module.
#pragma once

#include <vector>

#include "flowshaper/policy/policy.hpp"
#include "reader.hpp"

namespace flowshaper::policy::detail {

struct Draft {
    Policy policy;
    // Parallel to policy.interfaces / caps / detects (and each interface's classes): the
    // positions of the values that were read without error. A key absent here was missing or
    // wrong, and has been reported already.
    std::vector<Locs> interface_locs;
    std::vector<std::vector<Locs>> class_locs;
    std::vector<Locs> cap_locs;
    std::vector<Locs> detect_locs;
};

// "127.0.0.1:9469", "[::1]:9469" -> address and port; anything else (a name, no port) -> nullopt.
std::optional<Settings::Listen> parse_listen(std::string_view text);
void read_settings(Sink& sink, const toml::node& node, const SourceLoc& key_loc, Settings& settings);
void read_interfaces(Sink& sink, const toml::node& node, const SourceLoc& key_loc, Draft& draft);
void read_caps(Sink& sink, const toml::node& node, const SourceLoc& key_loc, Draft& draft);
void read_detects(Sink& sink, const toml::node& node, const SourceLoc& key_loc, Draft& draft);
// [[export]] (export_section.cpp); reads after [settings] (active_timeout is checked against poll_interval).
void read_exports(Sink& sink, const toml::node& node, const SourceLoc& key_loc, Draft& draft);

// Everything that needs more than one table: names, parents, sums, devices, client overlaps.
void check_policy(Sink& sink, const Draft& draft);

}  // namespace flowshaper::policy::detail
