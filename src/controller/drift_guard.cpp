#include "flowshaper/controller/drift_guard.hpp"

#include <algorithm>

namespace flowshaper::controller {

uint64_t DriftGuard::on_trigger(uint64_t now) const {
    uint64_t at = now + o_.debounce_ms;
    if (backoff_ms_) at = std::max(at, last_repair_ms_ + backoff_ms_);
    return at;
}

bool DriftGuard::repaired(uint64_t now, size_t changes) {
    while (!recent_.empty() && recent_.front() + o_.burst_window_ms <= now) recent_.pop_front();
    if (changes == 0) {
        if (recent_.empty()) backoff_ms_ = 0;  // a quiet window: back to immediate repairs
        return false;
    }
    last_repair_ms_ = now;
    recent_.push_back(now);
    if (recent_.size() <= o_.burst) {
        if (recent_.size() == 1) backoff_ms_ = 0;
        return false;
    }
    backoff_ms_ = backoff_ms_ ? std::min(backoff_ms_ * 2, o_.max_backoff_ms) : o_.first_backoff_ms;
    return true;
}

}  // namespace flowshaper::controller
