// Daemon::adopt: after a restart (SIGKILL, a crash, on_exit = "keep"), the heavy clients whose
// classes a previous run left in the kernel are taken over as they are: no class, filter or mark
// is made twice, and no cap is lifted meanwhile.
//   u32: a class's match node names the client's address and its rule's DSCP.
//   fw:  a class's fw filter carries only a mark; the connections carrying that per-client mark
//        name the client (conntrack). Marks no fw filter of ours leads to are cleared.
#include <set>

#include "flowshaper/controller/daemon.hpp"

namespace flowshaper::controller {

void Daemon::adopt(uint64_t now_ms) {
    auto take = [&](const HeavyKey& key, std::optional<uint32_t> fw_mark) {
        if (heavy_.contains(key)) return;
        heavy_.adopt(key, HeavyWhy{"adopted", 0, 0, "its class was in the kernel at start", now_ms}, fw_mark);
        if (!heavy_.contains(key)) return;  // a mark this layout cannot give it
        detector_->adopt(key.rule, key.client, now_ms);
        labels_dirty_ = true;
        log_->info("adopted heavy client {} (rule {}) from the kernel", key.client.str(),
                   policy_.detects[key.rule].name);
    };
    std::map<std::string, std::set<uint32_t>> fw_marks;  // device -> the marks its fw filters match
    for (const auto& iface : policy_.interfaces) {
        auto dev = ports_.tc.read(iface.device);
        if (!dev || dev->root_info.owner != tc::RootInfo::Owner::Ours) continue;
        if (!fw_) {
            for (const auto& h : plan::heavy_clients_in(policy_, dev->state))
                take({h.rule_index, h.client}, {});
            continue;
        }
        for (const auto& f : dev->state.fw) fw_marks[iface.device].insert(f.handle);
    }
    if (!fw_) return;
    std::set<HeavyKey> stale;  // marked, but no fw filter of ours leads anywhere with that mark
    for (const auto& [key, mark] : marker_.marked_clients(mark_context())) {
        const auto& marks = fw_marks[policy_.detects[key.rule].device];
        if (marks.count(mark)) take(key, mark);
        if (!heavy_.contains(key)) stale.insert(key);
    }
    if (!stale.empty())
        if (size_t n = marker_.clear(mark_context(), &stale, marks_.restore_mask()))
            log_->info("fw: cleared {} connection marks of a previous run that no class of ours matches", n);
}

}  // namespace flowshaper::controller
