// When to repair flowshaper's objects after someone else changed them. Pure: the caller passes
// the time. Triggers (rtnetlink events, a changed mangle fingerprint, nftables events, lost
// events) ask for a repair after a short debounce; a full check runs every full_check_ms anyway.
// A tool that keeps deleting is not fought in a tight loop: when more than `burst` repairs that
// changed something fall within `burst_window_ms`, each further repair waits twice as long as
// the previous one (up to max_backoff_ms), until a window passes without one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>

namespace flowshaper::controller {

struct DriftOptions {
    uint64_t debounce_ms = 20;
    uint64_t full_check_ms = 30'000;
    size_t burst = 5;
    uint64_t burst_window_ms = 10'000;
    uint64_t first_backoff_ms = 1'000;
    uint64_t max_backoff_ms = 60'000;
};

class DriftGuard {
public:
    using Options = DriftOptions;
    explicit DriftGuard(Options options = {}) : o_(options) {}

    // A trigger at `now`: the time the repair should run.
    uint64_t on_trigger(uint64_t now) const;
    // A repair ran at `now` and took `changes` kernel changes. Returns true when this repair
    // started (or doubled) a back-off: the caller says so at error level.
    bool repaired(uint64_t now, size_t changes);
    bool full_check_due(uint64_t now) const { return now >= last_full_ms_ + o_.full_check_ms; }
    void full_checked(uint64_t now) { last_full_ms_ = now; }
    uint64_t backoff_ms() const { return backoff_ms_; }

private:
    Options o_;
    std::deque<uint64_t> recent_;  // times of repairs that changed something, within the window
    uint64_t backoff_ms_ = 0;
    uint64_t last_repair_ms_ = 0;
    uint64_t last_full_ms_ = 0;
};

}  // namespace flowshaper::controller
