// Runs `flowshaper run` in the server namespace of a VethPair, with helpers to watch it.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "netns.hpp"
#include "tc_text.hpp"
#include "wait.hpp"

namespace flowshaper::testing {

class TempPolicy {
public:
    explicit TempPolicy(const std::string& text);
    ~TempPolicy();
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// The daemon as a child process; stopped with SIGTERM (or killed) in the destructor.
class Daemon {
public:
    // `env`: variables set for the daemon only (NOTIFY_SOCKET, WATCHDOG_USEC, ...).
    Daemon(const Netns& ns, const std::string& policy_path,
           const std::vector<std::pair<std::string, std::string>>& env = {});
    ~Daemon();
    // Sends a signal and waits for the exit (SIGKILL after kWaitMs, a hang guard); returns the exit
    // status (128+sig when killed).
    int stop(int sig);
    // Waits until the log contains `needle` (true) or `timeout_ms` passes (false).
    bool wait_for_log(const std::string& needle, int timeout_ms = kWaitMs) const;
    std::string log() const;
    pid_t pid() const { return pid_; }

private:
    pid_t pid_ = -1;
    std::string log_path_;
};

nlohmann::json tc_json(const Netns& ns, const std::string& what);
uint64_t class_bytes(const Netns& ns, const std::string& dev, const std::string& classid);
// Classes of flowshaper's tree on `dev` whose u32 filter matches `needle` in `tc filter show`.
std::string flowid_of(const Netns& ns, const std::string& dev, const std::string& needle);
// The class a heavy client's packets land in, from tc and conntrack alone: its u32 node (whose
// text holds `u32_needle`), else (classifier fw) the fw filter whose handle/mask matches the
// ctmark that conntrack -L shows on the client's connections. Empty when neither is there.
std::string heavy_class_of(const Netns& ns, const std::string& dev, const std::string& client,
                           const std::string& u32_needle);
// `conntrack -L` lines of the namespace that contain every one of `parts`.
std::vector<std::string> conntrack_lines(const Netns& ns, const std::vector<std::string>& parts);
std::string mangle_save(const Netns& ns, bool v6);
// The mangle backend a daemon case runs on, for the policy's `firewall`: a GENERATE over
// "iptables" and "nftables", so the calling case runs once on each.
std::string each_firewall();
// flowshaper's mangle objects as the backend's own tool lists them: iptables-legacy-save of both
// families ("iptables"), or `nft list table inet flowshaper` ("nftables"; empty when absent).
std::string mangle_objects(const Netns& ns, const std::string& firewall);
// The namespace's whole firewall without flowshaper's objects, as the independent tools list it:
// `nft -j list ruleset` without table inet flowshaper, the legacy mangle tables without the
// FLOWSHAPER chain and its jump, `ipset save` without the flowshaper-* sets.
std::string others_firewall(const Netns& ns);

// Everything flowshaper may have created on `dev`, counted with tc, iptables-legacy-save, nft -j
// and ipset: qdiscs, classes, filters under the root qdisc and under every class (each u32 node,
// hash table and link), the legacy mangle rules of both families, the rules of table inet
// flowshaper, and the members of flowshaper's kernel sets (nft sets and ipsets).
struct KernelCounts {
    size_t qdiscs = 0, classes = 0, filters = 0, rules4 = 0, rules6 = 0, nft_rules = 0, set_members = 0;
    bool operator==(const KernelCounts&) const = default;
};
std::ostream& operator<<(std::ostream& os, const KernelCounts& c);
KernelCounts kernel_counts(const Netns& ns, const std::string& dev = "veth-s");
size_t count_lines(const std::string& text, const std::string& needle);

}  // namespace flowshaper::testing
