// What the both-backend kernel suites share: the port of a backend (as the daemon opens it, with
// the other backend's cleanup), the backend's name for INFO lines, and the whole firewall of a
// namespace as the independent tools list it.
#pragma once

#include <catch2/catch.hpp>
#include <memory>
#include <sstream>
#include <string>

#include "flowshaper/kernel/mangle_backend.hpp"
#include "netns.hpp"

namespace flowshaper::testing {

inline std::unique_ptr<kernel::ManglePort> open_port(kernel::MangleBackend backend) {
    auto port = kernel::make_mangle_port(backend);
    REQUIRE(port);
    return std::move(*port);
}

inline const char* name(kernel::MangleBackend b) {
    return b == kernel::MangleBackend::Nftables ? "nftables" : "iptables";
}

// Everything the namespace's firewall holds: nf_tables (iptables-nft's tables included), the
// legacy mangle tables and the ipsets, comments and timestamps left out.
inline std::string ruleset(const Netns& ns) {
    std::string out = ns.exec_ok("nft -j list ruleset");
    for (const char* save :
         {"iptables-legacy-save -t mangle", "ip6tables-legacy-save -t mangle", "ipset save"}) {
        std::string text;
        ns.exec(save, &text);
        std::istringstream in(text);
        for (std::string line; std::getline(in, line);)
            if (!line.empty() && line[0] != '#') out += line + "\n";
    }
    return out;
}

}  // namespace flowshaper::testing
