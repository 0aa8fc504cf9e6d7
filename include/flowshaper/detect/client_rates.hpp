// detect: per-client traffic for `flowshaper top` and the status socket's "clients" answer. Pure:
// fed with conntrack dumps and a clock by the caller, no kernel, no I/O.
//
// Each observe() takes one whole-table dump (live connections; DESTROY events' last counters may
// be passed with alive = false) and the time. A connection's bytes since the previous dump are
// added to its client: toward the client is the reply direction when the client opened the
// connection (this host serves it), the original direction when this host opened it (DESIGN.md,
// "client"); forwarded connections count for their originator. Connections between two local
// addresses have no client and are left out. A connection first seen in a later dump counts in
// full (it began since the previous dump); the first dump only sets the baseline.
//
// Rates are exponentially weighted moving averages with time constants of 2 s, 10 s and 40 s
// (the periods iftop shows), updated at each dump with the bytes since the previous one, so
// irregular dump intervals weigh correctly. A client's first measured interval sets all three
// (the average of everything known), so a new talker shows its rate at once, not a ramp from 0. A client is
// forgotten once it has no connection and its 40 s rate has fallen below 1 bit/s. State is bounded by
// `max_flows` connections and `max_clients` clients: beyond them new ones are not tracked (counted in
// dropped()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "flowshaper/common/net.hpp"
#include "flowshaper/detect/classify.hpp"

namespace flowshaper::detect {

struct ClientRate {
    net::Address client;
    uint64_t to_bits_per_s[3] = {0, 0, 0};    // toward the client, over 2 s, 10 s, 40 s
    uint64_t from_bits_per_s[3] = {0, 0, 0};  // from the client
    uint64_t flows = 0;                       // live connections in the last dump
    uint64_t to_bytes = 0, from_bytes = 0;    // totals of those connections
};

class ClientRates {
public:
    static constexpr double kPeriodsS[3] = {2.0, 10.0, 40.0};

    explicit ClientRates(size_t max_clients = 100'000, size_t max_flows = 1'000'000);

    void observe(uint64_t now_ms, const std::vector<FlowSample>& dump, const LocalAddresses& local);

    // Every tracked client, highest 2 s rate toward it first (then by address).
    std::vector<ClientRate> rows() const;
    size_t clients() const { return clients_.size(); }
    size_t flows() const { return flows_.size(); }
    uint64_t dropped() const { return dropped_; }

private:
    struct FlowState {
        net::Address client;
        uint64_t to_bytes = 0, from_bytes = 0;  // counters at the last dump
        uint64_t seen = 0;                      // generation of the last dump that had it
    };
    struct ClientState {
        double to_rate[3] = {0, 0, 0}, from_rate[3] = {0, 0, 0};  // bits/s
        uint64_t to_delta = 0, from_delta = 0;                    // bytes since the last dump
        uint64_t flows = 0, to_bytes = 0, from_bytes = 0;
        bool measured = false;  // a rate has been computed (else the first one is taken whole)
    };
    struct AddressHash {
        size_t operator()(const net::Address& a) const;
    };

    void account(const FlowSample& flow, const LocalAddresses& local);
    ClientState* client_state(const net::Address& client);
    void update_rates(double dt_s);

    size_t max_clients_, max_flows_;
    std::unordered_map<uint32_t, FlowState> flows_;  // by conntrack id
    std::unordered_map<net::Address, ClientState, AddressHash> clients_;
    uint64_t generation_ = 0;
    uint64_t last_ms_ = 0;
    uint64_t dropped_ = 0;
};

}  // namespace flowshaper::detect
