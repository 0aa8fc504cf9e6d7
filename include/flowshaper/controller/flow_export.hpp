// Flow records in the running daemon: the second reader of the conntrack feed. Each [[export]]
// target gets a Ledger (its own active_timeout) and an Exporter; every poll's dump and the DESTROY
// events drained after it go through the ledger, the records it closes go to the exporter, whose
// descriptor and timers live on the daemon's loop. While exporting, polls read the whole table
// (the connbytes prefilter would hide the small connections the records must show).
#pragma once

#include <spdlog/logger.h>

#include <functional>
#include <memory>
#include <vector>

#include "flowshaper/controller/daemon.hpp"
#include "flowshaper/controller/event_loop.hpp"
#include "flowshaper/flowrec/exporter.hpp"
#include "flowshaper/flowrec/ledger.hpp"

namespace flowshaper::controller {

class FlowExport : public FlowReader {
public:
    FlowExport(EventLoop& loop, spdlog::logger& log, std::function<uint8_t(uint32_t mark)> dscp_of,
               std::function<uint64_t()> wall_ms = {});
    ~FlowExport() override;
    // Opens every target; an error names the target (a start-up error).
    Status open(const std::vector<policy::Export>& targets, uint64_t poll_interval_ms);
    // A reload: a target named as before keeps its ledger and exporter (no connection counted
    // twice; a change of its other settings waits for a restart, and says so); a target no
    // longer named closes its connections ("forced end"), sends them and goes; a new one opens.
    Status reconfigure(const std::vector<policy::Export>& targets, uint64_t poll_interval_ms);

    bool wants_full_dump() const override { return !targets_.empty(); }
    void on_poll(uint64_t now_ms, const std::vector<kernel::FlowSample>& dump, bool full,
                 const std::vector<kernel::FlowSample>& ended, const detect::LocalAddresses& local) override;
    // Shutdown: counts `last_dump` (a read of the table at the stop, so that the records end
    // with the bytes moved since the last poll), closes every connection ("forced end") and sends
    // what goes out now.
    void finish(const std::vector<kernel::FlowSample>& last_dump = {});
    size_t targets() const { return targets_.size(); }

private:
    struct Target {
        policy::Export config;
        std::unique_ptr<flowrec::Ledger> ledger;
        std::unique_ptr<flowrec::Exporter> exporter;
        int watched_fd = -1;
        uint32_t watched_events = 0;
        std::optional<EventLoop::TimerId> timer;
    };
    Result<std::unique_ptr<Target>> open_target(const policy::Export& target, uint64_t poll_interval_ms);
    void rewatch(Target& t);
    void unwatch(Target& t);
    // Counts `last_dump`, closes every connection of `t` ("forced end"), sends what goes out now.
    void close_all(Target& t, const std::vector<kernel::FlowSample>& last_dump);

    EventLoop& loop_;
    spdlog::logger& log_;
    std::function<uint8_t(uint32_t)> dscp_of_;
    std::function<uint64_t()> wall_ms_;
    std::vector<std::unique_ptr<Target>> targets_;
    std::vector<flowrec::FlowRecord> scratch_;
};

}  // namespace flowshaper::controller
