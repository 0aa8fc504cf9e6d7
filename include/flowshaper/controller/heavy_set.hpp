// The daemon's set of capped clients: which (rule, client) pairs are capped, the ctmark value each
// one's connections get, whether its class is in the kernel yet, and why it was capped. Pure: no
// kernel, no clock; the daemon asks it and tells it what the kernel acknowledged.
//
// Marks: with the u32 classifier every client of a rule shares the rule's mark (u32 matches the
// address). With fw the mark names the client: a per-client number from a pool, so a number is
// never handed out while a connection may still carry it — a client's number returns to the
// pool only when it is released (its marks cleared) or dropped before any connection was marked.
// A reload keeps the clients of rules that still exist with their numbers (reload()).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "flowshaper/common/net.hpp"
#include "flowshaper/plan/marks.hpp"
#include "flowshaper/plan/planner.hpp"

namespace flowshaper::controller {

struct HeavyKey {
    size_t rule = 0;
    net::Address client;
    auto operator<=>(const HeavyKey&) const = default;
};

// Why a client was capped, for the status socket and the audit trail.
struct HeavyWhy {
    std::string measure;  // "flow_bytes", "client_bytes", "client_rate", "adopted"
    uint64_t measured = 0, threshold = 0;
    std::string reason;
    uint64_t since_ms = 0;  // monotonic
};

struct HeavyEntry {
    uint32_t mark = 0;    // the ctmark value its connections get
    bool placed = false;  // its class and filter are in the kernel: its connections may be marked
    // Released, but some of its connections still carry the mark: its class stays (they would
    // fall into the default class with the DSCP still on them) until they are cleared.
    bool releasing = false;
    HeavyWhy why;
};

class HeavySet {
public:
    // A new layout (start): empties the set and refills the fw number pool.
    void reset(const plan::MarkLayout& marks, bool fw);

    // Takes a number from the pool (fw) or uses the rule's mark (u32) and adds the client, not yet
    // placed. nullopt: every fw number is in use (the client is not added).
    std::optional<uint32_t> add(const HeavyKey& key, HeavyWhy why);
    // A client found in the kernel after a restart: placed, with the rule's mark (u32) or the
    // per-client mark its connections and its fw filter carry (fw; its number leaves the pool).
    void adopt(const HeavyKey& key, HeavyWhy why, std::optional<uint32_t> fw_mark = std::nullopt);
    // Drops a client whose connections never carried its mark (its class could not be made).
    void drop(const HeavyKey& key);
    // Drops a released client whose marks are all cleared: its fw number returns to the pool.
    void finish_release(const HeavyKey& key);

    // Reload: `rule_map[i]` is the new index of old rule i (nullopt: the rule is gone). Clients of
    // rules that stay keep their state and (fw) their client number, re-encoded in the new layout;
    // the others are returned (their marks must be cleared by the caller). The pool then holds
    // exactly the numbers no kept client uses.
    std::vector<HeavyKey> reload(const plan::MarkLayout& marks, bool fw,
                                 const std::vector<std::optional<size_t>>& rule_map);

    HeavyEntry* find(const HeavyKey& key);
    const HeavyEntry* find(const HeavyKey& key) const;
    bool contains(const HeavyKey& key) const { return find(key) != nullptr; }
    const std::map<HeavyKey, HeavyEntry>& entries() const { return entries_; }
    size_t size() const { return entries_.size(); }
    size_t placed() const;
    std::set<HeavyKey> releasing() const;
    size_t free_numbers() const { return free_numbers_.size(); }

    // The clients whose classes the tree must hold (placed or not), as the planner takes them.
    std::vector<plan::HeavyClient> clients() const;

private:
    void refill_pool();

    plan::MarkLayout marks_;
    bool fw_ = false;
    std::map<HeavyKey, HeavyEntry> entries_;
    std::set<uint32_t> free_numbers_;
};

}  // namespace flowshaper::controller
