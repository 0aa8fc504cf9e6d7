// The Prometheus endpoint (`metrics_listen` in [settings]): /metrics in the text exposition
// format 0.0.4, rendered from the last snapshot. Names carry the `flowshaper_` prefix and base
// units (bytes, seconds); counters end in `_total`. No label grows with the number of clients:
// classes of the policy are series of their own, client classes are summed per rule and per cap.
#pragma once

#include <string>

#include "flowshaper/controller/snapshot.hpp"

namespace flowshaper::controller {

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Pure: the same snapshot gives the same text.
std::string render_metrics(const Snapshot& snapshot);

}  // namespace flowshaper::controller
