// detect: per-flow and per-client accounting of the bytes sent toward the client, the [[detect]]
// thresholds, hysteresis and release. Pure: no kernel, no clock, no I/O — the caller passes the
// time and complete conntrack dumps; the detector returns decisions: which (rule, client) became
// heavy (Mark) and which was quiet long enough (Release). Which connections carry a heavy client's
// ctmark is not decided here: the caller knows whether the client's class is in the kernel and
// whether its release is under way, so it marks them itself (the daemon's mark_flows).
//
// Accounting, per (rule, client) — a client is tracked once per rule its flows match (classify.hpp):
//   - Each poll, a flow's delta is its toward-client counter minus the value seen at the previous
//     poll. A flow is keyed by conntrack id + a hash of its original tuple: an id reused by another
//     tuple is another flow; a counter smaller than before is a new connection (it restarted), whose
//     delta is its whole counter. Flows absent from a dump have ended and are forgotten (their bytes
//     up to the previous poll were counted; a sample with alive=false — a DESTROY event's last
//     counters — adds the rest).
//   - The first observe() is a baseline: its counters count for flow_bytes (a connection's total
//     is a fact) but not for client_bytes or the rate (nobody knows when those bytes moved).
//     Later, a flow seen for the first time contributes its whole counter to the poll that saw it.
//
// Thresholds (a rule may set several: any of them makes the client heavy):
//   - flow_bytes: one of the client's connections has moved at least flow_bytes toward it.
//   - client_bytes + window: the bytes toward the client over the last `window`, summed over all
//     its connections, ended ones included (reconnecting does not reset it), reach client_bytes.
//     The window is a ring of 60 slots of ceil(window/60) ms each: a byte counts for between 59
//     and 60 slots after the poll that saw it (59/60 of the window up to the window, give or take
//     the rounding of the slot to whole milliseconds).
//   - client_rate + for: the moving average (exponential, time constant Options::rate_average_ms,
//     seeded with the client's first measured rate) of the client's toward-client rate has stayed
//     above client_rate for at least `for`. The streak starts at the beginning of the first poll
//     interval whose average was above and ends at the first poll whose average is not.
//
// Release (hysteresis): a heavy client is released once the toward-client rate of every poll
// interval over the last release_after (its measured rate per poll, not averaged) was below the
// rule's release rate: the smallest of
//     limit.rate / 2 (a capped client that keeps using its cap stays capped),
//     client_bytes * 8 / window (the rate that would reach client_bytes within the window),
//     client_rate,
// counting only the thresholds the rule sets (limit.rate always; a release rate of 0 means: no
// bytes at all). Quiet time starts at the beginning of the first quiet poll interval. Conntrack
// counts bytes as they enter the client's leaf queue, so the wire goes quiet up to that queue's
// drain time later: the release waits release_after plus that time (a bfifo of
// Options::leaf_queue_ms at limit.ceil, at least tc::kMinLeafQueueBytes, drained at limit.rate —
// tc::leaf_queue_bytes and tc::leaf_queue_drain_ms, as plan sizes it). A release
// starts the client's accounting afresh: its window is emptied, the rate streak cleared, and its
// connections count flow_bytes from their counters at the release (a connection that passed
// flow_bytes does not mark the client again unless it moves another flow_bytes).
//
// Clock: all times are the detector's own clock, advanced by each observe() by the step
// now_ms - previous now_ms when 0 < step <= Options::max_step_ms. Any other step — the clock went
// backwards, stood still, or jumped forward (suspend, a clock step) — counts as no time at all:
// the poll's bytes are accounted (flow_bytes, the window), but no rate is measured and the `for`
// streak, the quiet time and the window's slots do not move. So no negative delta, no giant rate,
// no window emptied at once, no mass release, no `for` satisfied by a jump; the next regular step
// continues from the new now_ms. clock_anomalies() counts the backward steps and forward jumps.
// Feed a monotonic clock (CLOCK_BOOTTIME or CLOCK_MONOTONIC) and these are rare.
//
// State is bounded: only flows that match a rule are tracked (a 32-byte record each, in an
// open-addressing table rebuilt from every dump); clients that are not heavy, have no flow left
// and no bytes in their window are forgotten.
//
// Decisions are sorted by rule, then client address; at most one per (rule, client) per call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "flowshaper/common/net.hpp"
#include "flowshaper/detect/classify.hpp"
#include "flowshaper/policy/policy.hpp"

namespace flowshaper::detect {

struct Options {
    uint64_t poll_interval_ms = 1000;  // the nominal poll period
    uint64_t max_step_ms = 0;          // a larger step is a clock jump; 0: 10 * poll_interval_ms
    uint64_t rate_average_ms = 5000;   // time constant of the moving average (client_rate); 0: none
    uint64_t leaf_queue_ms = 100;      // Settings::leaf_queue_ms: the heavy classes' leaf queue length
};

enum class DecisionKind {
    Mark,     // the client became heavy: cap it, then mark its connections
    Release,  // the client stayed quiet for release_after: unmark, then remove its cap
};

// What `measured` and `threshold` are.
enum class Measure {
    FlowBytes,    // one connection's bytes toward the client
    ClientBytes,  // the client's bytes within the window
    ClientRate,   // the client's moving-average rate, bits/s
    QuietRate,    // Release: the highest per-poll rate (bits/s) during the quiet period
};

struct Decision {
    DecisionKind kind = DecisionKind::Mark;
    size_t rule = 0;
    std::string rule_name;
    net::Address client;
    Measure measure = Measure::FlowBytes;
    uint64_t measured = 0;   // bytes or bits/s, see `measure`
    uint64_t threshold = 0;  // same unit
    std::string reason;      // for the log line: "connection 17 moved 600000000 bytes toward ..."
};

// Detector::view(): one tracked (rule, client) as of the last observe(). Read-only.
struct ClientView {
    uint64_t poll_rate_bits_per_s = 0;     // toward the client, last timed poll
    std::optional<uint64_t> quiet_for_ms;  // heavy and quiet: for how long (detector clock)
    uint64_t release_after_ms = 0;         // the quiet time a release needs: the rule's release_after
                                           // plus its leaf queue's drain time (see Release above)
    uint64_t release_rate_bits_per_s = 0;  // the rate below which a poll counts as quiet
                                           // (0: only a poll with no bytes at all counts)
};

const char* to_string(DecisionKind kind);
const char* to_string(Measure measure);

class Detector {
public:
    Detector(std::vector<policy::Detect> rules, std::vector<net::Address> local_addresses,
             Options options = {});
    ~Detector();
    Detector(const Detector&) = delete;
    Detector& operator=(const Detector&) = delete;

    // One poll: `samples` is a complete dump (flows absent from it have ended), optionally followed
    // by alive=false samples with the last counters of flows that ended since the previous poll.
    std::vector<Decision> observe(uint64_t now_ms, const std::vector<FlowSample>& samples);

    // After a restart: the daemon found this client's class in the kernel. The client is heavy
    // from now on, without a Mark decision. Returns false when `rule` is out of range.
    bool adopt(size_t rule, const net::Address& client, uint64_t now_ms);
    // The caller could not act on a Mark (e.g. the kernel refused the class): forget that the
    // client is heavy without a Release, so that a later poll decides again.
    void revoke(size_t rule, const net::Address& client);

    // This host's addresses changed: every flow is classified again at the next observe(); a flow
    // that changes rule or client, or is seen for the first time in that poll, starts from its
    // current counter (its earlier bytes count for flow_bytes only, like at the baseline).
    void set_local_addresses(std::vector<net::Address> addresses);

    bool is_heavy(size_t rule, const net::Address& client) const;
    struct HeavyClient {
        size_t rule = 0;
        net::Address client;
        auto operator<=>(const HeavyClient&) const = default;
    };
    std::vector<HeavyClient> heavy_clients() const;  // sorted

    // A tracked (rule, client) as of the last observe(), for the status socket.
    using ClientView = detect::ClientView;
    // nullopt: not tracked (no connection left and an empty window, or `rule` out of range).
    std::optional<ClientView> view(size_t rule, const net::Address& client) const;

    // Introspection for tests, the status socket and the benchmark.
    size_t tracked_flows() const;
    size_t tracked_clients() const;
    uint64_t clock_anomalies() const;
    static size_t flow_record_bytes();

private:
    struct State;
    std::unique_ptr<State> state_;
};

}  // namespace flowshaper::detect
