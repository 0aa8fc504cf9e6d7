// The daemon's logic, driven by the event loop (run.cpp) or by tests with fakes and a manual
// clock: notice heavy clients, cap them, mark their connections, release them. It composes units
// that are tested on their own: the Detector decides, the HeavySet keeps who is capped, the
// FlowMarker writes ctmarks, the DeviceWatch follows the devices, TreeStats reads the classes'
// counters. After every poll, start, reload and repair it publishes a Snapshot; nothing outside
// reads its state any other way.
#pragma once

#include <spdlog/logger.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "flowshaper/common/result.hpp"
#include "flowshaper/controller/device_watch.hpp"
#include "flowshaper/controller/flow_marker.hpp"
#include "flowshaper/controller/heavy_set.hpp"
#include "flowshaper/controller/snapshot.hpp"
#include "flowshaper/controller/tree_stats.hpp"
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

// A second reader of the conntrack feed (flow export, `top`'s per-client rates): it sees every
// poll's dump and the connections that ended since the previous one.
class FlowReader {
public:
    virtual ~FlowReader() = default;
    // Polls must read the whole table (not only the prefilter's candidates) while this is true.
    virtual bool wants_full_dump() const = 0;
    // `local`: this host's addresses (the client of a connection is its other end).
    virtual void on_poll(uint64_t now_ms, const std::vector<kernel::FlowSample>& dump, bool full,
                         const std::vector<kernel::FlowSample>& ended,
                         const detect::LocalAddresses& local) = 0;
    // Rows for Snapshot::clients (empty when this reader has none).
    virtual std::vector<ClientSnapshot> clients(uint64_t) const { return {}; }
};

struct DaemonOptions {
    bool force = false;                 // replace a root qdisc flowshaper did not create
    std::function<uint64_t()> wall_ms;  // wall clock for snapshots and the audit trail (default: system)
    std::function<void(const AuditEvent&)> audit;  // every cap, release and reload
    std::string firewall;                          // the mangle backend in use and why (for the snapshot)
    std::function<void(SnapshotPtr)> on_snapshot;  // every published snapshot (to another thread)
    // Publish a snapshot after each poll. Off when nothing reads them (no status socket, no
    // metrics, not under systemd): a poll then skips reading the classes' counters.
    bool snapshots = true;
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
    // the first poll, a poll after lost events, a poll that placed a new heavy client and every
    // poll while a FlowReader wants it read the whole table.
    Status poll(uint64_t now_ms);
    // New connections of heavy clients get their mark at once; lost events trigger a resync.
    Status on_conntrack_events(uint64_t now_ms);
    // Leaves the host as on_exit says: flush (default) removes every chain, class and mark.
    Status stop();
    // Swaps in a new policy (SIGHUP, `flowshaper reload`). Heavy clients of rules that still
    // exist (by name) stay capped with their marks — also with the fw classifier, whose
    // per-client numbers are kept so that no new client inherits a connection's stale mark;
    // clients of rules that are gone are released and their marks cleared. An unusable policy
    // keeps the running one.
    Status reload(policy::Policy policy, uint64_t now_ms);
    // Someone changed flowshaper's objects behind its back (an rtnetlink event, a mangle check):
    // read, diff and repair now. Returns the number of kernel changes it took.
    Result<size_t> repair(const std::string& why, uint64_t now_ms);
    // A reload that never reached reload(): the file has errors. Counted, audited, published.
    void reload_rejected(const std::string& why, uint64_t now_ms);

    void add_reader(FlowReader* reader) { readers_.push_back(reader); }
    // Where the policy came from, for the snapshot.
    void set_policy_source(std::string path, std::string checksum, uint64_t loaded_unix_ms);

    uint64_t poll_interval_ms() const { return policy_.settings.poll_interval_ms; }
    const policy::Policy& policy() const { return policy_; }
    std::vector<plan::HeavyClient> heavy() const { return heavy_.clients(); }
    // The DSCP flowshaper's mangle rules set on a connection with this ctmark (0: none).
    uint8_t dscp_of(uint32_t mark) const;
    // The picture after the last poll, start, reload or repair.
    SnapshotPtr snapshot() const { return snapshot_; }

private:
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
    // `tried` (optional): the families whose ensure() was called, the failed one included.
    Status ensure_mangle(const policy::Policy& policy, const plan::MarkLayout& marks,
                         const std::optional<kernel::MangleSpec::Candidate>& prefilter,
                         std::vector<net::Family>* tried = nullptr);
    void adopt(uint64_t now_ms);
    // The kernel sets of capped clients (nft sets or ipsets): every placed client in, the rest out.
    void sync_capped();
    void prune_capped();
    void act(const std::vector<detect::Decision>& decisions, uint64_t now_ms);
    // Clears the marks of released clients; those done lose their class at the next reconcile.
    void finish_releases();
    // Reads the event socket: new connections of heavy clients are marked, ended ones kept for
    // the next poll's accounting (their last counters).
    Status drain_events();
    void refresh_local_addresses();
    Result<std::vector<kernel::FlowSample>> dump(bool full);
    MarkContext mark_context() const { return {policy_.detects, local_, marks_, heavy_}; }
    void record_error(const std::string& text);
    void audit(AuditEvent event);
    void publish(uint64_t now_ms);
    uint64_t wall_now() const;

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
    HeavySet heavy_;
    FlowMarker marker_;
    DeviceWatch devices_;
    TreeStats tree_;
    std::vector<FlowReader*> readers_;
    bool tc_dirty_ = true;
    bool sets_ = false;         // the mangle backend keeps kernel sets of capped clients
    bool labels_dirty_ = true;  // the plan's class names need refreshing (heavy set or policy changed)
    std::map<std::string, std::string> device_error_;  // why a device is not in sync
    // What the last successful apply left on each device: a client filter someone deleted comes
    // back pointing at the class the client had (ApplyOptions::remembered).
    std::map<std::string, tc::DeviceState> applied_;
    // Connections that ended since the last poll (DESTROY events with their last counters): the
    // bytes they moved after the last dump still count. Bounded; beyond it they are dropped.
    std::vector<kernel::FlowSample> ended_;
    bool resync_ = false;    // events were lost: the next poll reads the whole table
    bool full_dump_ = true;  // the next poll reads the whole table (prefilter or not)

    // For the snapshot.
    SnapshotPtr snapshot_;
    Counters counters_;
    PollSnapshot last_poll_;
    std::deque<ErrorSnapshot> errors_;
    uint64_t started_unix_ms_ = 0;
    std::string policy_path_, policy_checksum_;
    uint64_t policy_loaded_unix_ms_ = 0;
};

// A conntrack sample as the detector takes it (the ctmark and packet counts left out).
detect::FlowSample to_detect(const kernel::FlowSample& flow);
std::vector<detect::FlowSample> to_detect(const std::vector<kernel::FlowSample>& flows);

// `flowshaper run FILE`: the daemon in the foreground until SIGTERM/SIGINT; SIGHUP reloads.
// Returns the process exit status.
int run_daemon(const std::string& policy_path, bool force);

}  // namespace flowshaper::controller
