// Per-client rows for `top` and the status socket: the detector-side rates (detect::ClientRates)
// joined with what the snapshot says about each client (capped by a rule, inside a static cap).
#pragma once

#include <vector>

#include "flowshaper/controller/snapshot.hpp"
#include "flowshaper/detect/client_rates.hpp"

namespace flowshaper::controller {

// `state`: "capped by rule R" (R's heavy client; "releasing" appended while its marks are
// cleared), "cap C" (inside static cap C), else "". `release_in_ms` from the heavy client's
// release time and `now_unix_ms`.
std::vector<ClientSnapshot> client_snapshots(const std::vector<detect::ClientRate>& rows,
                                             const Snapshot& context, uint64_t now_unix_ms);

}  // namespace flowshaper::controller
