#include "client_state.hpp"

#include <algorithm>

namespace flowshaper::detect::internal {

void WindowRing::configure(uint64_t window_ms) {
    slot_ms_ = std::max<uint64_t>(1, (window_ms + kSlots - 1) / kSlots);
    slots_.assign(kSlots, 0);
    head_ = 0;
    sum_ = 0;
}

void WindowRing::advance(uint64_t now_ms) {
    if (slots_.empty()) return;
    uint64_t slot = now_ms / slot_ms_;
    if (slot <= head_) return;
    if (sum_ != 0) {
        uint64_t steps = std::min<uint64_t>(slot - head_, kSlots);
        for (uint64_t i = 1; i <= steps; ++i) {
            uint64_t& s = slots_[(head_ + i) % kSlots];
            sum_ -= s;
            s = 0;
        }
    }
    head_ = slot;
}

void WindowRing::add(uint64_t now_ms, uint64_t bytes) {
    if (slots_.empty() || bytes == 0) return;
    advance(now_ms);
    slots_[head_ % kSlots] += bytes;
    sum_ += bytes;
}

void WindowRing::clear() {
    std::fill(slots_.begin(), slots_.end(), 0);
    sum_ = 0;
}

}  // namespace flowshaper::detect::internal
