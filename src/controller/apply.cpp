#include "flowshaper/controller/apply.hpp"

#include <algorithm>
#include <cerrno>
#include <map>
#include <set>

#include "flowshaper/plan/diff.hpp"

namespace flowshaper::controller {

namespace {

struct Snapshot {
    std::string device;
    size_t interface = 0;  // its index in policy.interfaces (and in the plan)
    tc::ObservedDevice observed;
    bool ours() const { return observed.root_info.owner == tc::RootInfo::Owner::Ours; }
};

Error refuse_foreign(const std::string& device, const tc::RootInfo& root) {
    return make_error("apply", device, EEXIST,
                      "the root qdisc is " + root.kind + " " + tc::format_handle(root.handle) +
                          ", which flowshaper did not create; it is left as it is. Remove it "
                          "(tc qdisc del dev " +
                          device + " root) or run 'flowshaper apply --force' to replace it");
}

Result<std::vector<Snapshot>> read_devices(const policy::Policy& policy, kernel::TcPort& port, bool force,
                                           const std::optional<std::vector<std::string>>& only = {}) {
    std::vector<Snapshot> out;
    for (size_t i = 0; i < policy.interfaces.size(); ++i) {
        const auto& iface = policy.interfaces[i];
        if (only && std::find(only->begin(), only->end(), iface.device) == only->end()) continue;
        auto observed = port.read(iface.device);
        if (!observed) {
            auto e = observed.error();
            if (e.code == ENODEV) e.detail = "no such device (policy " + policy.file + ")";
            return e;
        }
        if (observed->root_info.owner == tc::RootInfo::Owner::Foreign && !force)
            return refuse_foreign(iface.device, observed->root_info);
        out.push_back({iface.device, i, std::move(*observed)});
    }
    return out;
}

// The heavy clients whose classes the devices have now (for an apply that is not the daemon's).
std::vector<plan::HeavyClient> heavy_in(const policy::Policy& policy, const std::vector<Snapshot>& snaps) {
    std::vector<plan::HeavyClient> out;
    for (const auto& s : snaps)
        if (s.ours())
            for (const auto& h : plan::heavy_clients_in(policy, s.observed.state)) out.push_back(h);
    return out;
}

// The observed state as the planner should see it: client filters the kernel lost (someone
// deleted them) but this process applied, whose class is still there, count as present, so that
// their client keeps that class.
tc::DeviceState with_remembered(const tc::DeviceState& observed, const tc::DeviceState* remembered) {
    if (!remembered) return observed;
    tc::DeviceState out = observed;
    std::set<tc::Handle> classes;
    for (const auto& c : observed.classes) classes.insert(c.classid);
    for (const auto& f : remembered->u32) {
        if (f.role != tc::U32Filter::Role::Match || !classes.count(f.classid)) continue;
        bool present = std::any_of(observed.u32.begin(), observed.u32.end(), [&](const tc::U32Filter& o) {
            return o.prio == f.prio && o.handle == f.handle;
        });
        if (!present) out.u32.push_back(f);
    }
    for (const auto& f : remembered->fw) {
        if (!classes.count(f.classid)) continue;
        bool present = std::any_of(observed.fw.begin(), observed.fw.end(), [&](const tc::FwFilter& o) {
            return o.prio == f.prio && o.handle == f.handle;
        });
        if (!present) out.fw.push_back(f);
    }
    return out;
}

Result<std::vector<plan::DevicePlan>> plan_from(
    const policy::Policy& policy, kernel::TcPort& port, const std::vector<Snapshot>& snaps,
    const std::vector<plan::HeavyClient>& heavy, std::vector<std::string>* notes,
    const std::map<std::string, tc::DeviceState>* remembered = nullptr) {
    auto resolved = plan::resolve(policy.settings, port.features());
    if (!resolved) return resolved.error();
    if (notes) *notes = resolved->notes;
    plan::PlanInput in;
    in.policy = &policy;
    in.heavy = heavy;
    in.resolved = *resolved;
    for (const auto& s : snaps) {
        if (!s.ours()) continue;
        const tc::DeviceState* memo = nullptr;
        if (remembered)
            if (auto it = remembered->find(s.device); it != remembered->end()) memo = &it->second;
        in.observed[s.device] = with_remembered(s.observed.state, memo);
    }
    return plan::make_plan(in);
}

// Brings one device back to `before` as far as the kernel lets us.
Status roll_back(kernel::TcPort& port, const Snapshot& before, bool created_root) {
    if (created_root) return port.remove_root(before.device);
    auto now = port.read(before.device);
    if (!now) return now.error();
    for (const auto& c : plan::diff(before.observed.state, now->state))
        if (auto st = port.apply(before.device, c); !st) return st;
    return {};
}

}  // namespace

Result<std::vector<plan::DevicePlan>> plan_policy(const policy::Policy& policy, kernel::TcPort& port,
                                                  const std::vector<plan::HeavyClient>& heavy,
                                                  std::vector<std::string>* notes) {
    auto snaps = read_devices(policy, port, true);
    if (!snaps) return snaps.error();
    return plan_from(policy, port, *snaps, heavy, notes);
}

Result<ApplyReport> apply_policy(const policy::Policy& policy, kernel::TcPort& port,
                                 const ApplyOptions& options) {
    auto snaps = read_devices(policy, port, options.force, options.devices);
    if (!snaps) return snaps.error();
    ApplyReport report;
    auto heavy = options.heavy ? *options.heavy : heavy_in(policy, *snaps);
    auto plans = plan_from(policy, port, *snaps, heavy, &report.notes, options.remembered);
    if (!plans) return plans.error();
    for (const auto& snap : *snaps) report.desired[snap.device] = (*plans)[snap.interface].desired;

    for (size_t i = 0; i < snaps->size(); ++i) {
        const auto& snap = (*snaps)[i];
        DeviceOutcome out;
        out.device = snap.device;
        out.created_root = !snap.ours();
        const tc::DeviceState empty{};
        out.changes = plan::diff((*plans)[snap.interface].desired, snap.ours() ? snap.observed.state : empty);
        report.devices.push_back(std::move(out));
    }
    if (options.dry_run) return report;

    for (size_t i = 0; i < report.devices.size(); ++i) {
        auto& dev = report.devices[i];
        for (const auto& change : dev.changes) {
            auto st = port.apply(dev.device, change);
            if (st) {
                ++report.changes_sent;
                continue;
            }
            // Undo this device and the ones before it, newest first.
            std::string undo = "rolled back";
            for (size_t j = i + 1; j-- > 0;) {
                if (auto rb = roll_back(port, (*snaps)[j], report.devices[j].created_root); !rb)
                    undo = "rollback of " + (*snaps)[j].device + " failed too (" + rb.error().text() +
                           "); the next apply converges";
            }
            auto e = st.error();
            e.detail += "; " + undo;
            return e;
        }
    }
    return report;
}

Result<FlushReport> flush(kernel::TcPort& port, kernel::LinkPort& links,
                          const std::vector<std::string>& devices) {
    std::vector<std::string> names = devices;
    if (names.empty()) {
        auto all = links.devices();
        if (!all) return all.error();
        names = *all;
    }
    FlushReport report;
    for (const auto& name : names) {
        auto observed = port.read(name);
        if (!observed) {
            if (observed.error().code == ENODEV) continue;  // not here (or went away meanwhile)
            return observed.error();
        }
        if (observed->root_info.owner != tc::RootInfo::Owner::Ours) continue;
        if (auto st = port.remove_root(name); !st) return st.error();
        report.devices.push_back(name);
    }
    return report;
}

Result<FlushReport> flush_all(kernel::TcPort& port, kernel::LinkPort& links, kernel::ManglePort& mangle,
                              kernel::ConntrackPort& conntrack, const std::vector<std::string>& devices) {
    auto report = flush(port, links, devices);
    if (!report) return report;
    uint32_t mask = 0;
    for (auto family : {net::Family::V4, net::Family::V6}) {
        auto spec = mangle.read_any(family);
        if (spec && *spec) mask |= (*spec)->owned_bits();
        if (spec && *spec) report->mangle_removed = true;
        if (auto st = mangle.remove_all(family); !st) return st.error();
    }
    if (mask == 0) return report;
    std::vector<kernel::FlowSample> marked;
    auto st = conntrack.dump({}, [&](const kernel::FlowSample& f) {
        if (f.mark & mask) marked.push_back(f);
    });
    if (!st) return st.error();
    for (const auto& f : marked) {
        auto w = conntrack.set_mark(f, 0, mask);
        if (w)
            ++report->marks_cleared;
        else if (w.error().code != ENOENT)
            return w.error();
    }
    return report;
}

}  // namespace flowshaper::controller
