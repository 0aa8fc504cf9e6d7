// Per-connection ledger: turns conntrack totals into per-period deltas and biflow records.
// Pure: no kernel, no clock of its own (every call takes the time, epoch milliseconds).
//
// Per poll, in this order:
//   begin_poll(now_ms);
//   observe(sample, dscp, out) for every entry of the dump;
//   destroyed(sample, now_ms, dscp, out) for every DESTROY event drained after the dump;
//   end_poll(complete, out);  // complete: the dump was the whole table, unfiltered
// and at shutdown flush(now_ms, out).
//
// Deltas are per (conntrack id, original tuple). A total below the last one seen means the
// counters were zeroed (conntrack -Z): the new total is the delta. A connection's period ends at
// the first poll at least active_timeout after its start (less a tenth of a poll interval, at
// most 100 ms, so jitter does not shift it by a whole poll): a record "active timeout" if it moved bytes in
// the period (an idle period sends nothing). A DESTROY event ends it: "end of flow", with the bytes since the
// last dump. A connection absent from vanish_after_polls polls (the last a complete dump) whose
// DESTROY was not seen (lost events) ends with its last known counters: "lack of resources"; a
// DESTROY arriving later still adds what remained, once. flush(): "forced end". At most
// max_connections are tracked; a connection beyond that is counted in stats().untracked and exported whole
// from its DESTROY event.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "flowshaper/flowrec/record.hpp"
#include "flowshaper/kernel/conntrack_port.hpp"

namespace flowshaper::flowrec {

struct LedgerOptions {
    uint64_t active_timeout_ms = 60000;
    uint64_t poll_interval_ms = 1000;
    size_t max_connections = 1000000;
    // A tracked connection missing from this many polls in a row, the last one complete, without
    // a DESTROY event is closed as "lack of resources" (the kernel sends the DESTROY of an entry
    // that timed out when its garbage collector reaps it, after the entry left the dumps).
    uint32_t vanish_after_polls = 3;
};

struct LedgerStats {
    uint64_t untracked = 0;       // new connections not tracked because the ledger was full
    uint64_t counter_resets = 0;  // totals that went down
    uint64_t vanished = 0;        // closed as "lack of resources"
};

class Ledger {
public:
    explicit Ledger(const LedgerOptions& options);

    void begin_poll(uint64_t now_ms);
    // `dscp`: what flowshaper marks this connection with (0: nothing), sent as postIpClassOfService.
    void observe(const kernel::FlowSample& sample, uint8_t dscp, std::vector<FlowRecord>& out);
    void destroyed(const kernel::FlowSample& sample, uint64_t now_ms, uint8_t dscp,
                   std::vector<FlowRecord>& out);
    void end_poll(bool complete, std::vector<FlowRecord>& out);
    void flush(uint64_t now_ms, std::vector<FlowRecord>& out);

    size_t size() const { return entries_.size(); }
    const LedgerStats& stats() const { return stats_; }

    struct Counters {
        uint64_t orig_bytes = 0, orig_packets = 0, reply_bytes = 0, reply_packets = 0;
    };
    struct Entry {
        kernel::FlowSample tuple;  // tuples, timestamps; its counters are the last totals seen
        Counters pending;          // not yet exported
        uint64_t period_start_ms = 0;
        uint64_t last_seen_ms = 0;
        uint32_t seen_poll = 0;
        uint8_t tos = 0;
    };

private:
    void add(const kernel::FlowSample& sample, uint8_t dscp);
    void account(Entry& entry, const kernel::FlowSample& sample);
    void emit(Entry& entry, uint64_t end_ms, EndReason reason, std::vector<FlowRecord>& out);

    LedgerOptions options_;
    std::unordered_map<uint32_t, Entry> entries_;
    // Closed as vanished by the last complete poll: a late DESTROY adds only what is left.
    std::unordered_map<uint32_t, Entry> vanished_;
    uint64_t now_ms_ = 0;
    uint32_t poll_ = 0;
    LedgerStats stats_;
};

// The record of one connection's period (exposed for tests and the fuzz target).
FlowRecord make_record(const kernel::FlowSample& tuple, const Ledger::Counters& delta, uint64_t start_ms,
                       uint64_t end_ms, EndReason reason, uint8_t tos);

}  // namespace flowshaper::flowrec
