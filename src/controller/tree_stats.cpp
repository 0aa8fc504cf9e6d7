#include "flowshaper/controller/tree_stats.hpp"

#include <spdlog/fmt/fmt.h>

namespace flowshaper::controller {

namespace {

std::string handle_text(tc::Handle h) {
    return fmt::format("{:x}:{:x}", h >> 16, h & 0xffff);
}

}  // namespace

void TreeStats::set_plans(const std::vector<plan::DevicePlan>& plans, const policy::Policy& policy) {
    std::map<std::string, std::map<tc::Handle, Label>> labels;
    for (size_t i = 0; i < plans.size() && i < policy.interfaces.size(); ++i) {
        auto& out = labels[policy.interfaces[i].device];
        for (const auto& c : plans[i].desired.classes) {
            Label l;
            l.name = c.label;
            if (c.classid == tc::kRootClass) {
                l.kind = ClassSnapshot::Kind::Root;
            } else if (auto o = plans[i].owners.find(c.classid); o != plans[i].owners.end()) {
                l.kind = o->second.kind == plan::ClassOwner::Kind::Heavy ? ClassSnapshot::Kind::Heavy
                                                                         : ClassSnapshot::Kind::Cap;
                l.owner = o->second.name;
                l.client = o->second.client;
            }
            out[c.classid] = l;
        }
    }
    labels_ = std::move(labels);
}

void TreeStats::retire(const Seen& seen) {
    const auto& s = seen.snap;
    if (s.kind == ClassSnapshot::Kind::Heavy) {
        retired_rule_bytes_[s.owner] += s.bytes;
        retired_rule_packets_[s.owner] += s.packets;
        retired_rule_drops_[s.owner] += s.drops;
    } else if (s.kind == ClassSnapshot::Kind::Cap) {
        retired_cap_bytes_[s.owner] += s.bytes;
        retired_cap_packets_[s.owner] += s.packets;
        retired_cap_drops_[s.owner] += s.drops;
    }
}

Status TreeStats::read(kernel::TcPort& tc, const std::string& device, uint64_t now_ms) {
    auto dev = tc.read(device);
    if (!dev) return dev.error();
    auto& seen = seen_[device];
    const auto& labels = labels_[device];
    std::map<tc::Handle, Seen> next;
    std::map<tc::Handle, const tc::HtbClass*> config;
    for (const auto& c : dev->state.classes) config[c.classid] = &c;
    for (const auto& s : dev->stats) {
        Seen n;
        n.at_ms = now_ms;
        auto& snap = n.snap;
        snap.device = device;
        snap.classid = handle_text(s.classid);
        if (auto l = labels.find(s.classid); l != labels.end()) {
            snap.name = l->second.name;
            snap.kind = l->second.kind;
            snap.owner = l->second.owner;
        } else {
            snap.name = "class " + snap.classid;
        }
        if (auto c = config.find(s.classid); c != config.end()) {
            snap.rate_bits_per_s = c->second->rate_bytes_per_s * 8;
            snap.ceil_bits_per_s = c->second->ceil_bytes_per_s * 8;
        }
        snap.bytes = s.bytes;
        snap.packets = s.packets;
        snap.drops = s.drops;
        snap.overlimits = s.overlimits;
        if (auto p = seen.find(s.classid); p != seen.end()) {
            if (now_ms > p->second.at_ms && s.bytes >= p->second.snap.bytes)
                snap.current_bits_per_s =
                    (s.bytes - p->second.snap.bytes) * 8000 / (now_ms - p->second.at_ms);
            // The same classid serving another client now: the old one's counters are final.
            if (p->second.snap.owner != snap.owner || s.bytes < p->second.snap.bytes) retire(p->second);
        }
        next[s.classid] = std::move(n);
    }
    for (const auto& [id, old] : seen)
        if (!next.count(id)) retire(old);
    seen = std::move(next);
    return {};
}

void TreeStats::forget(const std::string& device) {
    if (auto it = seen_.find(device); it != seen_.end()) {
        for (const auto& [id, old] : it->second) retire(old);
        seen_.erase(it);
    }
}

std::vector<ClassSnapshot> TreeStats::classes(const std::string& device) const {
    std::vector<ClassSnapshot> out;
    if (auto it = seen_.find(device); it != seen_.end())
        for (const auto& [id, s] : it->second) out.push_back(s.snap);
    return out;
}

std::string TreeStats::heavy_class(const std::string& device, const std::string& rule,
                                   const net::Address& client) const {
    if (auto it = labels_.find(device); it != labels_.end())
        for (const auto& [id, l] : it->second)
            if (l.kind == ClassSnapshot::Kind::Heavy && l.owner == rule && l.client == client)
                return handle_text(id);
    return "";
}

void TreeStats::fill(Counters& counters) const {
    counters.rule_bytes = retired_rule_bytes_;
    counters.rule_packets = retired_rule_packets_;
    counters.rule_drops = retired_rule_drops_;
    counters.cap_bytes = retired_cap_bytes_;
    counters.cap_packets = retired_cap_packets_;
    counters.cap_drops = retired_cap_drops_;
    for (const auto& [device, classes] : seen_)
        for (const auto& [id, s] : classes) {
            if (s.snap.kind == ClassSnapshot::Kind::Heavy) {
                counters.rule_bytes[s.snap.owner] += s.snap.bytes;
                counters.rule_packets[s.snap.owner] += s.snap.packets;
                counters.rule_drops[s.snap.owner] += s.snap.drops;
            } else if (s.snap.kind == ClassSnapshot::Kind::Cap) {
                counters.cap_bytes[s.snap.owner] += s.snap.bytes;
                counters.cap_packets[s.snap.owner] += s.snap.packets;
                counters.cap_drops[s.snap.owner] += s.snap.drops;
            }
        }
}

}  // namespace flowshaper::controller
