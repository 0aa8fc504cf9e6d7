#include "flowshaper/detect/client_rates.hpp"

#include <algorithm>
#include <cmath>

namespace flowshaper::detect {

namespace {

struct Sides {
    net::Address client;
    uint64_t to_bytes = 0, from_bytes = 0;
};

// Who the client is and which counter goes toward it; nullopt for local-to-local traffic.
std::optional<Sides> sides_of(const FlowSample& f, const LocalAddresses& local) {
    const bool src_local = local.contains(f.orig_src), dst_local = local.contains(f.orig_dst);
    if (src_local && dst_local) return std::nullopt;
    if (src_local) return Sides{f.orig_dst, f.orig_bytes, f.reply_bytes};  // this host opened it
    return Sides{f.orig_src, f.reply_bytes, f.orig_bytes};  // the client opened it (or forwarded)
}

}  // namespace

size_t ClientRates::AddressHash::operator()(const net::Address& a) const {
    size_t h = static_cast<size_t>(a.family);
    for (uint8_t b : a.bytes) h = h * 131 + b;
    return h;
}

ClientRates::ClientRates(size_t max_clients, size_t max_flows)
    : max_clients_(max_clients), max_flows_(max_flows) {}

ClientRates::ClientState* ClientRates::client_state(const net::Address& client) {
    auto it = clients_.find(client);
    if (it != clients_.end()) return &it->second;
    if (clients_.size() >= max_clients_) return nullptr;
    return &clients_[client];
}

void ClientRates::account(const FlowSample& flow, const LocalAddresses& local) {
    auto sides = sides_of(flow, local);
    if (!sides) return;
    auto it = flows_.find(flow.id);
    if (it != flows_.end() && it->second.client != sides->client) {  // the id was reused
        flows_.erase(it);
        it = flows_.end();
    }
    ClientState* client = client_state(sides->client);
    if (!client || (it == flows_.end() && flows_.size() >= max_flows_)) {
        ++dropped_;
        return;
    }
    const bool known = it != flows_.end();
    if (!known) it = flows_.emplace(flow.id, FlowState{sides->client, 0, 0, 0}).first;
    FlowState& state = it->second;
    if (known || generation_ > 0) {  // the first dump is the baseline
        client->to_delta += sides->to_bytes - std::min(state.to_bytes, sides->to_bytes);
        client->from_delta += sides->from_bytes - std::min(state.from_bytes, sides->from_bytes);
    }
    state.to_bytes = sides->to_bytes;
    state.from_bytes = sides->from_bytes;
    state.seen = generation_ + 1;
    if (!flow.alive) {
        flows_.erase(it);
        return;
    }
    ++client->flows;
    client->to_bytes += sides->to_bytes;
    client->from_bytes += sides->from_bytes;
}

void ClientRates::update_rates(double dt_s) {
    for (auto& [address, c] : clients_) {
        const double to_now = dt_s > 0 ? static_cast<double>(c.to_delta) * 8 / dt_s : 0;
        const double from_now = dt_s > 0 ? static_cast<double>(c.from_delta) * 8 / dt_s : 0;
        for (int i = 0; i < 3 && dt_s > 0; ++i) {
            // The first interval known for a client is all there is to average: take it whole.
            const double weight = c.measured ? 1 - std::exp(-dt_s / kPeriodsS[i]) : 1.0;
            c.to_rate[i] += weight * (to_now - c.to_rate[i]);
            c.from_rate[i] += weight * (from_now - c.from_rate[i]);
        }
        c.to_delta = c.from_delta = 0;
        if (dt_s > 0) c.measured = true;
    }
}

void ClientRates::observe(uint64_t now_ms, const std::vector<FlowSample>& dump, const LocalAddresses& local) {
    for (auto& [address, c] : clients_) c.flows = c.to_bytes = c.from_bytes = 0;
    for (const FlowSample& flow : dump) account(flow, local);
    std::erase_if(flows_, [&](const auto& entry) { return entry.second.seen != generation_ + 1; });
    const double dt_s =
        generation_ > 0 && now_ms > last_ms_ ? static_cast<double>(now_ms - last_ms_) / 1000 : 0;
    if (generation_ == 0 || now_ms > last_ms_) {
        update_rates(dt_s);
        last_ms_ = now_ms;
    }  // a dump at the same instant keeps its bytes for the next interval
    ++generation_;
    std::erase_if(clients_, [](const auto& entry) {
        const ClientState& c = entry.second;
        return c.flows == 0 && c.to_delta == 0 && c.from_delta == 0 && c.to_rate[2] < 1 && c.from_rate[2] < 1;
    });
}

std::vector<ClientRate> ClientRates::rows() const {
    std::vector<ClientRate> out;
    out.reserve(clients_.size());
    for (const auto& [address, c] : clients_) {
        ClientRate row;
        row.client = address;
        for (int i = 0; i < 3; ++i) {
            row.to_bits_per_s[i] = static_cast<uint64_t>(std::llround(c.to_rate[i]));
            row.from_bits_per_s[i] = static_cast<uint64_t>(std::llround(c.from_rate[i]));
        }
        row.flows = c.flows;
        row.to_bytes = c.to_bytes;
        row.from_bytes = c.from_bytes;
        out.push_back(row);
    }
    std::sort(out.begin(), out.end(), [](const ClientRate& a, const ClientRate& b) {
        if (a.to_bits_per_s[0] != b.to_bits_per_s[0]) return a.to_bits_per_s[0] > b.to_bits_per_s[0];
        return a.client < b.client;
    });
    return out;
}

}  // namespace flowshaper::detect
