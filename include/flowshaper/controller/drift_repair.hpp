// Drift repair in the running daemon: puts flowshaper's objects back when someone else deletes
// them. Triggers: rtnetlink TC/LINK events (a qdisc, class or filter deleted, a link re-created),
// the mangle backend's change descriptor (nftables events), a changed legacy mangle fingerprint
// (checked after every poll: IPT_SO_GET_INFO, no copy of the rules), a full check every 30 s, and
// a full check after lost events. Each trigger schedules one Daemon::repair() (read, diff, apply)
// on the loop; DriftGuard spaces repairs out against a tool that keeps deleting.
#pragma once

#include <spdlog/logger.h>

#include <optional>
#include <string>

#include "flowshaper/controller/daemon.hpp"
#include "flowshaper/controller/drift_guard.hpp"
#include "flowshaper/controller/event_loop.hpp"
#include "flowshaper/kernel/kernel_watch.hpp"
#include "flowshaper/kernel/mangle_port.hpp"

namespace flowshaper::controller {

class DriftRepair {
public:
    DriftRepair(EventLoop& loop, Daemon& daemon, kernel::ManglePort& mangle, spdlog::logger& log,
                DriftOptions options = {});
    // Subscribes to the events (after the daemon's start). `rcvbuf`: see RtnlWatch::open.
    Status open(int rcvbuf = 1 << 20);
    // After each poll: the cheap mangle check and the periodic full check.
    void after_poll();
    // The repair itself ran (for tests and the loop): why, and how many changes it took.
    void run_repair();

private:
    void schedule(const std::string& why);
    std::optional<uint64_t> mangle_fingerprint() const;

    EventLoop& loop_;
    Daemon& daemon_;
    kernel::ManglePort& mangle_;
    spdlog::logger& log_;
    DriftGuard guard_;
    std::optional<kernel::RtnlWatch> rtnl_;
    std::optional<uint64_t> fingerprint_;
    std::optional<EventLoop::TimerId> pending_;
    std::string why_;
};

}  // namespace flowshaper::controller
