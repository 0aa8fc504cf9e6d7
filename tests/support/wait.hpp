// Waiting in tests: for a condition, never for a fixed time. The deadline is a hang guard sized
// for a slow, loaded or emulated machine (qemu TCG runs 5-20x slower than a laptop), not a pass
// criterion: a quick machine never comes near it. A test that measures how long something took
// reads the figure from time_until and bounds it only when the speed is the test's subject.
#pragma once

#include <functional>
#include <optional>

namespace flowshaper::testing {

// The deadline for things that take milliseconds to a few seconds on a quick machine.
inline constexpr int kWaitMs = 60'000;

// Milliseconds until `done()` held (checked at once, then every `step_ms`), or nullopt when
// `timeout_ms` passed first.
std::optional<double> time_until(const std::function<bool()>& done, int timeout_ms = kWaitMs,
                                 int step_ms = 20);

// time_until without the figure: true when `done()` held in time.
bool wait_until(const std::function<bool()>& done, int timeout_ms = kWaitMs, int step_ms = 20);

}  // namespace flowshaper::testing
