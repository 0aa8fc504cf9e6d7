// The port through which flowshaper reads conntrack's byte counters, writes ctmark bits on single
// connections and hears about new and closed connections.
// Real implementation: make_nfct_conntrack_port() (libnetfilter_conntrack over ctnetlink).
// Fake: FakeConntrackPort (in memory, with error injection and event loss).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "flowshaper/common/net.hpp"
#include "flowshaper/common/result.hpp"

namespace flowshaper::kernel {

// One conntrack entry. Ports in host byte order (0 for protocols without ports). The counters
// include IP headers and stay 0 unless nf_conntrack_acct was 1 when the connection began.
struct FlowSample {
    uint32_t id = 0;  // the kernel's conntrack id (stable while the entry lives)
    net::Family family = net::Family::V4;
    uint8_t l4proto = 0;  // IPPROTO_TCP, IPPROTO_UDP, ...
    net::Address orig_src, orig_dst;
    uint16_t orig_sport = 0, orig_dport = 0;
    uint64_t orig_bytes = 0, reply_bytes = 0;
    uint64_t orig_packets = 0, reply_packets = 0;
    uint32_t mark = 0;  // ctmark
    // The reply tuple (as the answering side sends): under NAT it is not the swapped original
    // tuple. reply_dst:reply_dport is the original direction's source after SNAT/MASQUERADE.
    net::Address reply_src, reply_dst;
    uint16_t reply_sport = 0, reply_dport = 0;
    // nf_conntrack_timestamp (set when the entry was created): ns since the epoch, 0 = not known.
    uint64_t start_ns = 0, stop_ns = 0;

    // Same connection (original tuple); the id and the counters are not compared.
    bool same_tuple(const FlowSample& other) const;
};

// What the kernel should leave out of a dump (it still walks the whole table, but sends and we
// parse only what matches). Empty = everything, IPv4 and IPv6.
struct DumpFilter {
    std::optional<net::Family> family;
    struct MarkMatch {
        uint32_t value = 0;
        uint32_t mask = 0;
    };
    std::optional<MarkMatch> mark;  // (ctmark & mask) == value
    bool assured_only = false;      // only entries that saw traffic both ways (IPS_ASSURED)

    bool empty() const { return !family && !mark && !assured_only; }
    bool matches(const FlowSample& flow, bool assured) const;
};

enum class FlowEventType { New, Destroy };

struct FlowEvent {
    FlowEventType type = FlowEventType::New;
    FlowSample flow;  // counters are filled in Destroy events only
};

using FlowSink = std::function<void(const FlowSample&)>;
using EventSink = std::function<void(const FlowEvent&)>;

class ConntrackPort {
public:
    virtual ~ConntrackPort() = default;

    // Dumps the table of the current namespace (IPv4 and IPv6), calling `sink` once per entry.
    virtual Status dump(const DumpFilter& filter, const FlowSink& sink) = 0;
    // The same, collected (costs sizeof(FlowSample) per entry).
    Result<std::vector<FlowSample>> dump_all(const DumpFilter& filter = {});

    // Sets (ctmark & ~mask) | (value & mask) on the connection with flow's original tuple, in one
    // kernel operation (other bits written concurrently by others survive). ENOENT when it is gone.
    virtual Status set_mark(const FlowSample& flow, uint32_t value, uint32_t mask) = 0;

    // A non-blocking fd that becomes readable when NEW/DESTROY events are waiting (-1: no events).
    virtual int event_fd() = 0;
    // Calls `sink` for every waiting event, without blocking. Returns true when events were lost
    // (the kernel reported ENOBUFS): the caller must resync with a full dump.
    virtual Result<bool> drain_events(const EventSink& sink) = 0;
};

struct NfctOptions {
    bool events = true;                             // open the event socket
    uint32_t event_rcvbuf_bytes = 4 * 1024 * 1024;  // SO_RCVBUF(FORCE) of the event socket
};

// The libnetfilter_conntrack implementation, bound to the network namespace of the calling thread.
Result<std::unique_ptr<ConntrackPort>> make_nfct_conntrack_port(const NfctOptions& options = {});

// Conntrack timestamps (net.netfilter.nf_conntrack_timestamp=1): exact start and stop times of
// connections that begin from now on, for flow records. Returns whether it was already on.
Result<bool> enable_conntrack_timestamps();

// Byte accounting (net.netfilter.nf_conntrack_acct) is switched on by ManglePort::
// ensure_conntrack_accounting() (mangle_port.hpp), together with the rule that activates conntrack.

// In-memory ConntrackPort for the controller's and detector's tests.
class FakeConntrackPort final : public ConntrackPort {
public:
    struct MarkWrite {
        FlowSample flow;
        uint32_t value = 0;
        uint32_t mask = 0;
    };

    FakeConntrackPort();
    ~FakeConntrackPort() override;

    // Adds the entry (a New event; id assigned when 0) or updates the one with the same tuple
    // (its counters and state; its ctmark stays, as in the kernel). Returns the entry's id.
    uint32_t upsert(FlowSample flow, bool assured = true);
    // Sets ctmark bits the way a rule in the kernel would (not a write of this port's user).
    bool or_mark(uint32_t id, uint32_t bits);
    // Removes the entry with this id (a Destroy event carrying its last counters).
    bool remove(uint32_t id);
    const FlowSample* find(uint32_t id) const;
    size_t size() const { return table_.size(); }

    // Error injection: the next dump / the next set_mark fails with `err` (once).
    void fail_next_dump(int err) { dump_error_ = err; }
    void fail_next_set_mark(int err) { mark_error_ = err; }
    // The queued events are dropped and the next drain_events() reports the loss (ENOBUFS).
    void overflow_events();

    const std::vector<MarkWrite>& mark_writes() const { return mark_writes_; }
    uint64_t dumps() const { return dumps_; }
    uint64_t filtered_dumps() const { return filtered_dumps_; }  // dumps with a non-empty filter

    Status dump(const DumpFilter& filter, const FlowSink& sink) override;
    Status set_mark(const FlowSample& flow, uint32_t value, uint32_t mask) override;
    int event_fd() override { return event_fd_; }
    Result<bool> drain_events(const EventSink& sink) override;

private:
    struct Entry {
        FlowSample flow;
        bool assured = true;
    };
    void push_event(FlowEventType type, const FlowSample& flow);

    std::vector<Entry> table_;
    std::deque<FlowEvent> events_;
    std::vector<MarkWrite> mark_writes_;
    uint32_t next_id_ = 1;
    int dump_error_ = 0;
    int mark_error_ = 0;
    bool lost_ = false;
    uint64_t dumps_ = 0;
    uint64_t filtered_dumps_ = 0;
    int event_fd_ = -1;  // an eventfd, readable while events are queued
};

}  // namespace flowshaper::kernel
