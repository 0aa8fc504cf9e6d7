// Daemon::reload: a new policy swapped in without losing the heavy clients of rules that stay.
#include <spdlog/fmt/fmt.h>

#include "flowshaper/controller/daemon.hpp"
#include "flowshaper/kernel/tc_port.hpp"

namespace flowshaper::controller {

void Daemon::reload_rejected(const std::string& why, uint64_t now_ms) {
    ++counters_.reload_failures;
    audit(AuditEvent{0, "reload-failed", "", "", "", "", 0, 0, why});
    publish(now_ms);
}

Status Daemon::reload(policy::Policy policy, uint64_t now_ms) {
    auto fail = [&](const Error& e) {
        ++counters_.reload_failures;
        audit(AuditEvent{0, "reload-failed", "", "", "", "", 0, 0, e.text()});
        publish(now_ms);
        return Status(e);
    };
    // Everything the new policy needs is built first; the running one stays on any error.
    std::vector<std::string> notes;
    auto layout = make_layout(policy, &notes);
    if (!layout) return fail(layout.error());
    if (auto st = ensure_mangle(policy, layout->marks, layout->prefilter); !st) {
        if (auto back = ensure_mangle(policy_, marks_, prefilter_); !back)
            record_error("reload: putting the running policy's mangle rules back failed: " +
                         back.error().text() + " (the next repair retries)");
        return fail(st.error());
    }
    bool marks_changed = layout->marks.mask() != marks_.mask() ||
                         layout->marks.rule_mask() != marks_.rule_mask() ||
                         layout->marks.candidate_bit() != marks_.candidate_bit() || layout->fw != fw_ ||
                         policy.detects.size() != policy_.detects.size();
    for (size_t i = 0; !marks_changed && i < policy.detects.size(); ++i)
        marks_changed = policy.detects[i].name != policy_.detects[i].name;

    // Old rule index -> new one, by name: a rule that stays keeps its heavy clients.
    std::vector<std::optional<size_t>> rule_map(policy_.detects.size());
    std::set<HeavyKey> gone;
    for (size_t i = 0; i < policy_.detects.size(); ++i)
        for (size_t j = 0; j < policy.detects.size(); ++j)
            if (policy_.detects[i].name == policy.detects[j].name) rule_map[i] = j;
    for (const auto& [key, entry] : heavy_.entries())
        if (!rule_map[key.rule]) gone.insert(key);

    // Marks that would name another rule (or client) under the new layout are cleared, using the
    // old rules to find them; heavy clients that stay are marked again by the next poll.
    if (marks_changed) {
        size_t n = marker_.clear(mark_context(), nullptr, marks_.mask());
        log_->info("reload: the mark layout changed, cleared {} connection marks", n);
    } else if (!gone.empty()) {
        std::set<HeavyKey> incomplete;
        size_t n = marker_.clear(mark_context(), &gone, marks_.restore_mask(), &incomplete);
        log_->info("reload: {} heavy clients of removed rules released, {} connection marks cleared",
                   gone.size(), n);
        if (!incomplete.empty())
            record_error(
                fmt::format("reload: {} released clients keep some connection marks (the kernel refused "
                            "to clear them); 'flowshaper flush' clears them",
                            incomplete.size()));
    }
    for (const auto& key : gone)
        audit(AuditEvent{0, "release", key.client.str(), policy_.detects[key.rule].name,
                         policy_.detects[key.rule].device, "", 0, 0,
                         "its rule is not in the reloaded policy"});
    for (const auto& old : policy_.interfaces)
        if (!policy.find_interface(old.device)) {
            tree_.forget(old.device);
            if (auto st = ports_.tc.remove_root(old.device); !st && st.error().code != ENODEV)
                record_error("reload: removing the tree of " + old.device + ": " + st.error().text());
            else
                log_->info("reload: {} is no longer in the policy: removed its tree", old.device);
        }
    // Set members are per rule index, which the new policy may change: refill them.
    if (sets_)
        if (auto st = ports_.mangle.flush_capped(); !st)
            log_->warn("reload: emptying the kernel sets of capped clients: {}", st.error().text());
    heavy_.reload(layout->marks, layout->fw, rule_map);
    use(std::move(policy), std::move(*layout));
    for (const auto& [key, entry] : heavy_.entries()) detector_->adopt(key.rule, key.client, now_ms);
    for (const auto& note : notes) log_->info("reload: {}", note);
    devices_.restart();  // warn about the new policy's missing devices, as at start
    devices_.refresh(policy_);
    // No adopt() here: the heavy set carried over is the truth; classes of released clients still
    // in the kernel go with this reconcile.
    auto st = reconcile_tc(false);  // what fails is retried at the next poll
    ++counters_.reloads;
    counters_.last_reload_success_unix_ms = wall_now();
    audit(AuditEvent{
        0, "reload", "", "", "", "", 0, 0,
        fmt::format("{} devices, {} caps, {} detect rules, {} heavy clients kept", policy_.interfaces.size(),
                    policy_.caps.size(), policy_.detects.size(), heavy_.size())});
    log_->info("reload: {} devices, {} caps, {} detect rules, {} heavy clients kept",
               policy_.interfaces.size(), policy_.caps.size(), policy_.detects.size(), heavy_.size());
    publish(now_ms);
    return st;
}

}  // namespace flowshaper::controller
