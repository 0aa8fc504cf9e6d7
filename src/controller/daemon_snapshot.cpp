// Daemon::publish: the read-only picture the status socket, `top`, the metrics and systemd's
// STATUS= line read. Built from the units' state after each poll, start, reload and repair.
#include "flowshaper/controller/apply.hpp"
#include "flowshaper/controller/daemon.hpp"

namespace flowshaper::controller {

namespace {

std::string prefix_text(const net::Prefix& p) {
    return p.str();
}

}  // namespace

void Daemon::publish(uint64_t now_ms) {
    if (!options_.snapshots) return;
    auto snap = std::make_shared<Snapshot>();
    uint64_t wall = wall_now();
    snap->taken_unix_ms = wall;
    snap->started_unix_ms = started_unix_ms_;
    snap->policy_path = policy_path_.empty() ? policy_.file : policy_path_;
    snap->policy_checksum = policy_checksum_;
    snap->policy_loaded_unix_ms = policy_loaded_unix_ms_;
    snap->classifier = fw_ ? "fw" : "u32";
    snap->firewall = options_.firewall;
    snap->poll_interval_ms = policy_.settings.poll_interval_ms;

    // Class names and owners come from the plan; re-planned only when the heavy set or the
    // policy changed (not every poll).
    if (labels_dirty_) {
        auto plans = plan_policy(policy_, ports_.tc, heavy(), nullptr);
        if (plans) tree_.set_plans(*plans, policy_);
        labels_dirty_ = false;
    }
    for (const auto& iface : policy_.interfaces) {
        DeviceSnapshot d;
        d.name = iface.device;
        d.ifindex = devices_.ifindex(iface.device);
        if (!devices_.present(iface.device)) {
            d.state = TreeState::Missing;
            d.detail = "the device does not exist";
        } else if (auto e = device_error_.find(iface.device); e != device_error_.end()) {
            d.state = TreeState::Repairing;
            d.detail = e->second;
        } else {
            d.state = tc_dirty_ ? TreeState::Repairing : TreeState::InSync;
            if (auto st = tree_.read(ports_.tc, iface.device, now_ms); !st) d.detail = st.error().text();
            d.classes = tree_.classes(iface.device);
        }
        snap->devices.push_back(std::move(d));
    }
    for (const auto& r : policy_.detects) snap->heavy_per_rule[r.name] = 0;
    for (const auto& [key, e] : heavy_.entries()) {
        const auto& rule = policy_.detects[key.rule];
        ++snap->heavy_per_rule[rule.name];
        HeavySnapshot h;
        h.client = key.client;
        h.rule = rule.name;
        h.device = rule.device;
        h.measure = e.why.measure;
        h.measured = e.why.measured;
        h.threshold = e.why.threshold;
        h.reason = e.why.reason;
        h.since_unix_ms = wall - std::min(wall, now_ms - std::min(now_ms, e.why.since_ms));
        h.releasing = e.releasing;
        if (auto v = detector_->view(key.rule, key.client)) {
            h.current_bits_per_s = v->poll_rate_bits_per_s;
            if (v->quiet_for_ms) {
                h.quiet_since_unix_ms = wall - std::min(wall, *v->quiet_for_ms);
                h.release_at_unix_ms = *h.quiet_since_unix_ms + v->release_after_ms;
            }
        }
        // The class the plan gave this client, once the kernel has it.
        const std::string planned = tree_.heavy_class(rule.device, rule.name, key.client);
        for (const auto& d : snap->devices)
            if (d.name == rule.device)
                for (const auto& c : d.classes)
                    if (c.classid == planned) h.classid = planned;
        snap->heavy.push_back(std::move(h));
    }
    for (const auto& cap : policy_.caps) {
        CapSnapshot c;
        c.name = cap.name;
        c.device = cap.device;
        for (const auto& p : cap.clients) c.clients.push_back(prefix_text(p));
        c.rate_bits_per_s = cap.rate_bits_per_s;
        c.ceil_bits_per_s = cap.ceil_bits_per_s;
        snap->caps.push_back(std::move(c));
    }
    for (auto* r : readers_) {
        auto rows = r->clients(now_ms);
        snap->clients.insert(snap->clients.end(), rows.begin(), rows.end());
    }
    for (auto& row : snap->clients)
        for (const auto& h : snap->heavy)
            if (h.client == row.client) {
                row.state = "capped by rule " + h.rule;
                if (h.release_at_unix_ms && *h.release_at_unix_ms > wall)
                    row.release_in_ms = *h.release_at_unix_ms - wall;
            }
    snap->clients_complete = last_poll_.full;
    snap->last_poll = last_poll_;
    snap->last_errors.assign(errors_.begin(), errors_.end());
    snap->counters = counters_;
    tree_.fill(snap->counters);
    snapshot_ = std::move(snap);
    if (options_.on_snapshot) options_.on_snapshot(snapshot_);
}

}  // namespace flowshaper::controller
