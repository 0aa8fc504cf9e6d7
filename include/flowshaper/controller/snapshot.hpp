// A read-only picture of the daemon, taken after each poll (and after a reload or a repair).
// The status socket, `top`, the metrics endpoint and the audit trail read snapshots and the
// event stream; none of them reaches into the Daemon. A snapshot is a value: copying it, keeping
// it while the daemon moves on, and serialising it never touch the daemon's state.
//
// Times: `*_unix_ms` are wall-clock milliseconds since the epoch (for humans and collectors);
// durations are milliseconds or microseconds as named.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "flowshaper/common/net.hpp"

namespace flowshaper::controller {

enum class TreeState {
    InSync,     // the last reconcile left the device as the policy says
    Repairing,  // a difference was found (drift, a failed change): the next reconcile repairs it
    Missing,    // the device does not exist (its tree is applied when it appears)
};
const char* to_string(TreeState state);

struct ClassSnapshot {
    std::string device;
    std::string classid;  // "1:10"
    std::string name;     // policy class name, "client <addr>", "heavy <addr> (<rule>)", "root"
    enum class Kind { Root, Policy, Cap, Heavy } kind = Kind::Policy;
    std::string owner;  // the cap or rule name for Cap/Heavy classes, else empty
    uint64_t rate_bits_per_s = 0, ceil_bits_per_s = 0;           // configured
    uint64_t bytes = 0, packets = 0, drops = 0, overlimits = 0;  // kernel counters
    uint64_t current_bits_per_s = 0;                             // measured between two polls
};

struct DeviceSnapshot {
    std::string name;
    int ifindex = 0;
    TreeState state = TreeState::Missing;
    std::string detail;  // why it is repairing or missing
    std::vector<ClassSnapshot> classes;
};

struct HeavySnapshot {
    net::Address client;
    std::string rule;
    std::string device;
    std::string measure;                   // "flow_bytes", "client_bytes", "client_rate" (what made it heavy)
    uint64_t measured = 0, threshold = 0;  // bytes or bits/s, as `measure` says
    std::string reason;                    // the log line's reason
    uint64_t since_unix_ms = 0;            // capped since
    std::optional<uint64_t> quiet_since_unix_ms;  // quiet (below the release rate) since
    std::optional<uint64_t> release_at_unix_ms;   // when it will be released if it stays quiet
    std::string classid;                          // "" until its class is in the kernel
    uint64_t current_bits_per_s = 0;              // toward the client, last poll
    bool releasing = false;                       // released; its marks are being cleared
};

struct CapSnapshot {
    std::string name, device;
    std::vector<std::string> clients;
    uint64_t rate_bits_per_s = 0, ceil_bits_per_s = 0;
};

// Per-client traffic as `top` shows it: every client seen in conntrack.
struct ClientSnapshot {
    net::Address client;
    uint64_t to_bits_per_s[3] = {0, 0, 0};    // toward the client over 2 s, 10 s, 40 s
    uint64_t from_bits_per_s[3] = {0, 0, 0};  // from the client, same periods
    uint64_t flows = 0;                       // its live connections
    uint64_t to_bytes = 0, from_bytes = 0;    // totals of its live connections
    std::string state;                        // "", "capped by rule R", "cap C"
    std::optional<uint64_t> release_in_ms;
};

struct PollSnapshot {
    uint64_t at_unix_ms = 0;
    bool full = true;  // read the whole table (else: the prefilter's candidates)
    uint64_t duration_us = 0;
    uint64_t entries = 0;      // conntrack entries read
    uint64_t events_lost = 0;  // times events were lost (since start)
};

struct ErrorSnapshot {
    uint64_t at_unix_ms = 0;
    std::string text;
};

// Monotonic counters since the daemon started (the metrics' _total series).
struct Counters {
    uint64_t polls = 0;
    uint64_t conntrack_entries_read = 0;
    uint64_t events_lost = 0;
    uint64_t caps_applied = 0;
    uint64_t caps_released = 0;
    uint64_t kernel_changes = 0;
    uint64_t errors = 0;
    uint64_t drift_repairs = 0;
    uint64_t reloads = 0;
    uint64_t reload_failures = 0;
    uint64_t last_reload_success_unix_ms = 0;
    // Poll duration histogram (seconds buckets as the metrics export them), cumulative counts.
    static constexpr double kPollBuckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
    uint64_t poll_bucket_counts[sizeof kPollBuckets / sizeof kPollBuckets[0]] = {};
    uint64_t poll_count = 0;
    double poll_seconds_sum = 0;
    void observe_poll(double seconds);
    // Bytes and packets through client classes, summed per rule and per cap, kept monotonic when
    // a client's class is removed (its last counters are added to the sum).
    std::map<std::string, uint64_t> rule_bytes, rule_packets, rule_drops;
    std::map<std::string, uint64_t> cap_bytes, cap_packets, cap_drops;
};

struct Snapshot {
    uint64_t taken_unix_ms = 0;
    uint64_t started_unix_ms = 0;
    std::string policy_path;
    std::string policy_checksum;  // "crc32:<8 hex digits>" of the policy file
    uint64_t policy_loaded_unix_ms = 0;
    std::string classifier;  // "u32" | "fw"
    std::string firewall;    // mangle backend and why it was chosen
    uint64_t poll_interval_ms = 0;
    std::vector<DeviceSnapshot> devices;
    std::vector<HeavySnapshot> heavy;
    std::vector<CapSnapshot> caps;
    std::map<std::string, size_t> heavy_per_rule;  // every rule, also those with none
    std::vector<ClientSnapshot> clients;           // filled while someone watches (`top`)
    bool clients_complete = true;                  // false: the polls read only the prefilter's candidates
    PollSnapshot last_poll;
    std::vector<ErrorSnapshot> last_errors;  // newest last, at most 20
    Counters counters;
};

using SnapshotPtr = std::shared_ptr<const Snapshot>;

// One thing the audit trail records: a cap applied or lifted, a drift repaired, a reload.
struct AuditEvent {
    uint64_t at_unix_ms = 0;
    std::string action;  // "cap", "release", "repair", "reload", "reload-failed"
    std::string client;  // empty for repair/reload
    std::string rule;
    std::string device;
    std::string measure;
    uint64_t measured = 0, threshold = 0;
    std::string detail;
};

}  // namespace flowshaper::controller
