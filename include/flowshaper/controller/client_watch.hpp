// `top`'s per-client figures inside the daemon: a FlowReader that, while someone watches (the
// status socket's "clients" request), makes the polls read the whole table and feeds them to
// detect::ClientRates. Nobody watching: it costs nothing and the polls keep their prefilter.
#pragma once

#include <atomic>

#include "flowshaper/controller/daemon.hpp"
#include "flowshaper/detect/client_rates.hpp"

namespace flowshaper::controller {

class ClientWatch : public FlowReader {
public:
    // Someone watches until now_ms + for_ms.
    // Thread-safe (the status socket's thread calls it).
    void watch(uint64_t now_ms, uint64_t for_ms) {
        uint64_t until = now_ms + for_ms;
        uint64_t seen = until_ms_.load();
        while (seen < until && !until_ms_.compare_exchange_weak(seen, until)) {
        }
    }
    bool watching(uint64_t now_ms) const { return now_ms < until_ms_.load(); }

    bool wants_full_dump() const override { return until_ms_.load() > last_now_ms_; }
    void on_poll(uint64_t now_ms, const std::vector<kernel::FlowSample>& dump, bool full,
                 const std::vector<kernel::FlowSample>& ended, const detect::LocalAddresses& local) override;
    std::vector<ClientSnapshot> clients(uint64_t now_ms) const override;

private:
    detect::ClientRates rates_;
    std::atomic<uint64_t> until_ms_{0};
    uint64_t last_now_ms_ = 0;
    bool fed_ = false;
};

}  // namespace flowshaper::controller
