// What the running daemon offers its outside faces (the status socket, the metrics endpoint):
// the last snapshot, a reload run inside the loop, and a request to fill per-client figures for a
// while (`top` is watching). The faces hold these hooks; they never see the Daemon itself.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "flowshaper/controller/snapshot.hpp"

namespace flowshaper::controller {

struct ReloadOutcome {
    bool ok = false;
    std::vector<std::string> diagnostics;  // "file:line:col: error: ..." of an invalid policy
    std::string error;                     // a kernel error of a valid policy's apply
};

struct ControlHooks {
    std::function<SnapshotPtr()> snapshot;
    std::function<ReloadOutcome()> reload;
    // `top` is watching: the next polls (for `for_ms`) fill Snapshot::clients.
    std::function<void(uint64_t for_ms)> watch_clients;
};

}  // namespace flowshaper::controller
