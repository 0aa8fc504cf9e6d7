// The detector's per-(rule, client) state: this poll's sums, the client_bytes window, the moving
// average of the rate, and the hysteresis timers. All times are the detector's clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "flowshaper/common/net.hpp"

namespace flowshaper::detect::internal {

// Bytes per time slot over a sliding window: 60 slots of ceil(window/60) ms. A byte added at time t
// counts while now < (slot of t + 60) * slot_ms: for between 59 and 60 slots.
class WindowRing {
public:
    static constexpr size_t kSlots = 60;

    bool enabled() const { return !slots_.empty(); }
    void configure(uint64_t window_ms);
    void add(uint64_t now_ms, uint64_t bytes);
    // Drops the slots that left the window; time never goes backwards here.
    void advance(uint64_t now_ms);
    uint64_t sum() const { return sum_; }
    void clear();

private:
    std::vector<uint64_t> slots_;
    uint64_t slot_ms_ = 1;
    uint64_t head_ = 0;  // slot number (now / slot_ms) of the newest slot
    uint64_t sum_ = 0;
};

struct ClientState {
    net::Address address;
    uint32_t rule = 0;
    bool in_use = false;
    bool heavy = false;

    // This poll.
    uint32_t flows = 0;           // records of it in the flow table
    uint64_t delta_bytes = 0;     // bytes toward it since the previous poll
    uint64_t top_flow_bytes = 0;  // its largest connection (counted from the base), and which
    uint32_t top_flow_id = 0;

    uint64_t poll_rate_bits_per_s = 0;  // delta_bytes over the step of the last timed poll

    WindowRing window;  // enabled when the rule has client_bytes

    bool rate_seeded = false;
    double rate_avg_bits_per_s = 0;
    bool above = false;  // the average is above client_rate since above_since_ms
    uint64_t above_since_ms = 0;

    bool quiet = false;  // heavy and below the release rate since quiet_since_ms
    uint64_t quiet_since_ms = 0;
    uint64_t quiet_max_rate_bits_per_s = 0;
    uint64_t quiet_not_before_ms = 0;  // adoption time: quiet counts from there at the earliest

    void begin_poll() {
        flows = 0;
        delta_bytes = 0;
        top_flow_bytes = 0;
        top_flow_id = 0;
    }
    // Back to "not heavy, nothing measured" (a release or a revoke).
    void reset_hysteresis() {
        above = false;
        quiet = false;
        quiet_max_rate_bits_per_s = 0;
    }
};

}  // namespace flowshaper::detect::internal
