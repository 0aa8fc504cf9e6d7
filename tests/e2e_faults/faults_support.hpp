// Helpers of the fault suite: a daemon in a namespace pair with every outside face switched on
// (status socket, metrics, audit trail), a stand-in for systemd's notify socket, and waits that
// time how long the kernel takes to be right again, read with tc and iptables-legacy-save.
// Every wait is for a condition (support/wait.hpp); its deadline is a hang guard.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "daemon_fixture.hpp"
#include "status_socket.hpp"
#include "wait.hpp"

namespace flowshaper::testing {

// systemd's side of sd_notify: a datagram socket the daemon's NOTIFY_SOCKET names.
class NotifySocket {
public:
    NotifySocket();
    ~NotifySocket();
    NotifySocket(const NotifySocket&) = delete;
    NotifySocket& operator=(const NotifySocket&) = delete;
    const std::string& path() const { return path_; }
    // The next datagram, or nullopt after `timeout_ms`.
    std::optional<std::string> next(int timeout_ms);
    // Reads datagrams until one contains `needle` (returned) or `timeout_ms` passes; every
    // datagram read on the way is appended to `seen` when given.
    std::optional<std::string> wait_for(const std::string& needle, int timeout_ms,
                                        std::vector<std::string>* seen = nullptr);

private:
    int fd_ = -1;
    std::string path_;
};

// The value of an unlabelled metric in Prometheus text, or nullopt when absent.
std::optional<double> metric_value(const std::string& text, const std::string& name);

// The parts of the server namespace's tc tree that flowshaper owns, as tc prints them (without
// counters): what a repair must bring back exactly.
std::string tc_tree_text(const Netns& ns, const std::string& dev = "veth-s");

// A daemon on the server side of a VethPair with status socket, metrics on 127.0.0.1:9469 and
// an audit trail; the policy is a [settings] table with those three plus `settings` (TOML lines
// such as `firewall = "iptables"`), then `body`.
class FaultRig {
public:
    static constexpr int kMetricsPort = 9469;
    FaultRig(const std::string& tag, const std::string& settings, const std::string& body);
    ~FaultRig();

    VethPair net;
    std::string socket_path, audit_path;
    std::unique_ptr<TempPolicy> policy;
    std::unique_ptr<Daemon> daemon;

    // Starts (again) a daemon on the policy; waits for "ready" in its log and for status to say
    // veth-s is in sync.
    void start(const std::vector<std::pair<std::string, std::string>>& env = {});
    void write_policy(const std::string& settings, const std::string& body) const;
    nlohmann::json snapshot() const;  // {"cmd":"status"}'s snapshot
    // Waits until status answers with `dev` in sync: the daemon idle after its last change.
    void wait_in_sync(const std::string& dev = "veth-s") const;
    // Waits until the daemon has finished `n` more polls: what a check that something did not
    // happen gives it the chance to happen in, the same amount of work on any machine.
    void wait_for_polls(uint64_t n) const;
    uint64_t counter(const std::string& name) const { return snapshot()["counters"][name].get<uint64_t>(); }
    std::string device_state(const std::string& dev = "veth-s") const;
    // The classid of the class status names `name` ("class bulk", "cap customer 10.200.0.7").
    std::string classid_of(const std::string& name) const;
    std::string metrics() const;  // GET /metrics from inside the namespace (curl)
    size_t audit_count(const std::string& action) const;
    std::string audit_text() const;
};

// Drift repairs as the daemon's three faces count them.
struct RepairsSeen {
    uint64_t status = 0;  // the snapshot's counters.drift_repairs
    double metric = 0;    // flowshaper_drift_repairs_total
    size_t audit = 0;     // "repair" lines in the audit trail
};
RepairsSeen repairs_seen(const FaultRig& rig);

// Runs `damage` (a command in the server namespace), then polls `read` (an independent tool's
// view of what flowshaper owns) until it is what it was before the damage. Checks that this took
// less than `limit_ms` (the product's promise: one poll interval, or 1 s when events announce
// the damage) plus what this machine needs for the daemon's work and the checker's own readings,
// both measured in the same run; that nothing is duplicated or missing (kernel_counts) and that
// exactly one repair shows in status, metrics and the audit trail, the device in sync. Returns
// the time.
double expect_repaired(FaultRig& rig, const std::string& damage, const std::function<std::string()>& read,
                       double limit_ms);

// The [settings] lines a fault case adds to FaultRig's: its poll interval and mangle backend.
std::string fault_settings(const std::string& poll_interval, const std::string& firewall);

// The policy text shared by the fault tests: two static classes (no filters on "bulk"), a
// static cap for 10.200.0.7 (u32 filters) on veth-s.
std::string fault_policy_body(const std::string& cap_rate = "5mbit",
                              const std::string& bulk_rate = "100mbit");

}  // namespace flowshaper::testing
