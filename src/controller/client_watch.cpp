#include "flowshaper/controller/client_watch.hpp"

namespace flowshaper::controller {

void ClientWatch::on_poll(uint64_t now_ms, const std::vector<kernel::FlowSample>& dump, bool full,
                          const std::vector<kernel::FlowSample>& ended, const detect::LocalAddresses& local) {
    last_now_ms_ = now_ms;
    if (!watching(now_ms) || !full) {
        if (!watching(now_ms)) fed_ = false;
        return;
    }
    auto samples = to_detect(dump);
    for (const auto& f : ended) {
        samples.push_back(to_detect(f));
        samples.back().alive = false;
    }
    rates_.observe(now_ms, samples, local);
    fed_ = true;
}

std::vector<ClientSnapshot> ClientWatch::clients(uint64_t now_ms) const {
    std::vector<ClientSnapshot> out;
    if (!fed_ || !watching(now_ms)) return out;
    for (const auto& r : rates_.rows()) {
        ClientSnapshot c;
        c.client = r.client;
        for (int i = 0; i < 3; ++i) {
            c.to_bits_per_s[i] = r.to_bits_per_s[i];
            c.from_bits_per_s[i] = r.from_bits_per_s[i];
        }
        c.flows = r.flows;
        c.to_bytes = r.to_bytes;
        c.from_bytes = r.from_bytes;
        out.push_back(std::move(c));
    }
    return out;
}

}  // namespace flowshaper::controller
