#include "flowshaper/controller/client_view.hpp"

#include <map>

namespace flowshaper::controller {

namespace {

struct CapPrefixes {
    std::string name;
    std::vector<net::Prefix> prefixes;
};

std::vector<CapPrefixes> cap_prefixes(const std::vector<CapSnapshot>& caps) {
    std::vector<CapPrefixes> out;
    for (const auto& cap : caps) {
        CapPrefixes c{cap.name, {}};
        for (const auto& text : cap.clients)
            if (auto p = net::Prefix::parse(text)) c.prefixes.push_back(*p);
        out.push_back(std::move(c));
    }
    return out;
}

}  // namespace

std::vector<ClientSnapshot> client_snapshots(const std::vector<detect::ClientRate>& rows,
                                             const Snapshot& context, uint64_t now_unix_ms) {
    std::map<net::Address, const HeavySnapshot*> heavy;
    for (const auto& h : context.heavy) heavy.emplace(h.client, &h);
    const auto caps = cap_prefixes(context.caps);
    std::vector<ClientSnapshot> out;
    out.reserve(rows.size());
    for (const auto& row : rows) {
        ClientSnapshot c;
        c.client = row.client;
        std::copy(std::begin(row.to_bits_per_s), std::end(row.to_bits_per_s), c.to_bits_per_s);
        std::copy(std::begin(row.from_bits_per_s), std::end(row.from_bits_per_s), c.from_bits_per_s);
        c.flows = row.flows;
        c.to_bytes = row.to_bytes;
        c.from_bytes = row.from_bytes;
        if (auto it = heavy.find(row.client); it != heavy.end()) {
            c.state = "capped by rule " + it->second->rule + (it->second->releasing ? " (releasing)" : "");
            if (auto at = it->second->release_at_unix_ms)
                c.release_in_ms = *at > now_unix_ms ? *at - now_unix_ms : 0;
        } else {
            for (const auto& cap : caps)
                for (const auto& p : cap.prefixes)
                    if (c.state.empty() && p.contains(row.client)) c.state = "cap " + cap.name;
        }
        out.push_back(std::move(c));
    }
    return out;
}

}  // namespace flowshaper::controller
