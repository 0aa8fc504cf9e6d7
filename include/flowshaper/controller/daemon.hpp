// The daemon's logic, driven by the event loop (run.cpp) or by tests with fakes and a manual
// clock: notice heavy clients, cap them, mark their connections, release them.
#pragma once

#include <spdlog/logger.h>

#include <map>
#include <memory>
#include <set>
#include <vector>

#include "flowshaper/common/result.hpp"
#include "flowshaper/detect/detector.hpp"
#include "flowshaper/kernel/conntrack_port.hpp"
#include "flowshaper/kernel/link_port.hpp"
#include "flowshaper/kernel/mangle_port.hpp"
#include "flowshaper/kernel/tc_port.hpp"
#include "flowshaper/plan/marks.hpp"
#include "flowshaper/plan/planner.hpp"
#include "flowshaper/policy/policy.hpp"

namespace flowshaper::controller {

struct DaemonPorts {
    kernel::TcPort& tc;
    kernel::ManglePort& mangle;
    kernel::ConntrackPort& conntrack;
    kernel::LinkPort& links;
};

struct DaemonOptions {
    bool force = false;  // replace a root qdisc flowshaper did not create
};

class Daemon {
public:
    Daemon(policy::Policy policy, DaemonPorts ports, std::shared_ptr<spdlog::logger> log,
           DaemonOptions options = {});

    // Makes conntrack usable (accounting, the mangle rules that switch it on), adopts heavy
    // clients that a previous run left in the kernel, and applies the tree. An error leaves
    // nothing of this start behind that stop() would not remove.
    Status start(uint64_t now_ms);
    // One poll cycle: dump, account, decide, act. With the conntrack prefilter (every rule a
    // flow_bytes rule, and a spare bit in mark_mask) the dump holds only the connections the
    // kernel flagged as candidates (over the smallest flow_bytes) and those of heavy clients;
    // the first poll, a poll after lost events and a poll that placed a new heavy client read
    // the whole table.
    Status poll(uint64_t now_ms);
    // New connections of heavy clients get their mark at once; lost events trigger a resync.
    Status on_conntrack_events(uint64_t now_ms);
    // Leaves the host as on_exit says: flush (default) removes every chain, class and mark.
    Status stop();
    // Swaps in a new policy (SIGHUP); heavy clients of rules that still exist stay capped.
    Status reload(policy::Policy policy, uint64_t now_ms);

    uint64_t poll_interval_ms() const { return policy_.settings.poll_interval_ms; }
    std::vector<plan::HeavyClient> heavy() const;

private:
    struct HeavyKey {
        size_t rule = 0;
        net::Address client;
        auto operator<=>(const HeavyKey&) const = default;
    };
    struct HeavyState {
        uint32_t mark = 0;    // the ctmark value its connections get
        bool placed = false;  // its class and filter are in the kernel: its connections may be marked
        // Released, but some of its connections still carry the mark: its class stays (they
        // would fall into the default class with the DSCP still on them) until they are cleared.
        bool releasing = false;
    };
    // What one policy needs beyond the policy itself; built whole before it replaces the old.
    struct Layout {
        bool fw = false;
        std::optional<kernel::MangleSpec::Candidate> prefilter;  // the kernel's candidate flag
        plan::MarkLayout marks;
        std::unique_ptr<detect::Detector> detector;
    };

    Result<Layout> make_layout(const policy::Policy& policy, std::vector<std::string>* notes);
    void use(policy::Policy policy, Layout layout);
    // Applies the tree to the policy's devices that exist; `together`: in one all-or-nothing apply.
    Status reconcile_tc(bool together);
    // Notices policy devices that appeared, went away or were created again (a new index: the
    // kernel dropped their qdiscs) and schedules a reconcile for them.
    void refresh_devices();
    Status ensure_mangle(const policy::Policy& policy, const plan::MarkLayout& marks,
                         const std::optional<kernel::MangleSpec::Candidate>& prefilter);
    void adopt(uint64_t now_ms);
    void act(const std::vector<detect::Decision>& decisions);
    // Clears the marks of released clients; those done lose their class at the next reconcile.
    void finish_releases();
    // Reads the event socket: new connections of heavy clients are marked, ended ones kept for
    // the next poll's accounting (their last counters).
    Status drain_events();
    void mark_flows(const std::vector<kernel::FlowSample>& flows);
    void refresh_local_addresses();
    // Clears `bits` on the connections that carry any of them (only: those of these clients, of
    // their rules), in one dump. `incomplete`: the clients some of whose connections could not be
    // read or cleared.
    size_t clear_marks(const std::set<HeavyKey>* only, uint32_t bits,
                       std::set<HeavyKey>* incomplete = nullptr);
    Result<std::vector<kernel::FlowSample>> dump(bool full);
    std::optional<uint32_t> mark_for(const HeavyKey& key);
    void forget(std::map<HeavyKey, HeavyState>::iterator it);
    std::optional<HeavyKey> heavy_key_of(const kernel::FlowSample& flow) const;

    policy::Policy policy_;
    DaemonPorts ports_;
    std::shared_ptr<spdlog::logger> log_;
    DaemonOptions options_;
    plan::MarkLayout marks_;
    bool fw_ = false;
    std::optional<kernel::MangleSpec::Candidate> prefilter_;
    std::unique_ptr<detect::Detector> detector_;
    std::vector<net::Address> local_list_;
    detect::LocalAddresses local_;
    std::map<HeavyKey, HeavyState> heavy_;
    std::set<uint32_t> free_client_numbers_;
    bool tc_dirty_ = true;
    std::map<std::string, int> device_index_;  // the policy's devices that exist, and their index
    bool first_device_scan_ = true;
    // Connections that ended since the last poll (DESTROY events with their last counters): the
    // bytes they moved after the last dump still count. Bounded; beyond it they are dropped.
    std::vector<kernel::FlowSample> ended_;
    bool resync_ = false;    // events were lost: the next poll reads the whole table
    bool full_dump_ = true;  // the next poll reads the whole table (prefilter or not)
};

// A conntrack sample as the detector takes it (the ctmark and packet counts left out).
detect::FlowSample to_detect(const kernel::FlowSample& flow);
std::vector<detect::FlowSample> to_detect(const std::vector<kernel::FlowSample>& flows);

// `flowshaper run FILE`: the daemon in the foreground until SIGTERM/SIGINT; SIGHUP reloads.
// Returns the process exit status.
int run_daemon(const std::string& policy_path, bool force);

}  // namespace flowshaper::controller
