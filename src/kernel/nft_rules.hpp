// The text of table inet flowshaper (render) and its JSON listing read back (parse). Pure.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "flowshaper/kernel/mangle_port.hpp"

namespace flowshaper::kernel::nft {

inline constexpr const char* kPostrouting = "postrouting";  // the base chain
std::string chain_name(net::Family family);                 // "v4" / "v6"
std::string restore_chain_name(net::Family family);         // "v4_restore" / "v6_restore"
std::string set_name(net::Family family, size_t rule);      // "capped4_0", ...

// What the table holds, read back from `nft -j list table inet flowshaper`.
struct TableState {
    bool exists = false;
    std::optional<MangleSpec> v4, v6;  // nullopt: no chain of that family
    std::vector<CappedClient> members;
};

// The body of the table (between the braces) for both families' specs and the sets' members.
std::string render_body(const std::optional<MangleSpec>& v4, const std::optional<MangleSpec>& v6,
                        const std::vector<CappedClient>& members);

// Parses the JSON listing of our table. An error (EPROTO) names the first rule or object that
// flowshaper did not write; `exists` stays false when the listing holds no table of ours.
Result<TableState> parse_table(const std::string& json_text);

}  // namespace flowshaper::kernel::nft
