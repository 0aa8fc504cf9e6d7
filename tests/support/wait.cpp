#include "wait.hpp"

#include <chrono>
#include <thread>

namespace flowshaper::testing {

std::optional<double> time_until(const std::function<bool()>& done, int timeout_ms, int step_ms) {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    const auto end = t0 + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        if (done()) return std::chrono::duration<double, std::milli>(clock::now() - t0).count();
        if (clock::now() >= end) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(step_ms));  // the polling step
    }
}

bool wait_until(const std::function<bool()>& done, int timeout_ms, int step_ms) {
    return time_until(done, timeout_ms, step_ms).has_value();
}

}  // namespace flowshaper::testing
