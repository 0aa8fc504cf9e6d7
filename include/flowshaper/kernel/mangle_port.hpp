// The port through which flowshaper keeps its rules in the mangle table (IPv4 and IPv6).
// Real implementation: make_iptc_mangle_port() (libip4tc / libip6tc, the legacy xtables API).
// Fake: FakeManglePort (in memory, same convergence logic, error injection).
//
// Layout, per family, whatever the number of clients:
//   -A POSTROUTING -j FLOWSHAPER                                  (inserted at the top, once)
//   -A FLOWSHAPER -j CONNMARK --restore-mark --nfmask M --ctmask M   (M = mark_mask; this rule
//                                                 also switches conntrack on in the namespace)
//   -A FLOWSHAPER -m connbytes --connbytes N --connbytes-mode bytes --connbytes-dir both
//                 -j CONNMARK --set-xmark B/B       (optional: the candidate flag, see below)
//   -A FLOWSHAPER -m connmark --mark V/R [-m comment --comment C] -j DSCP --set-dscp D
//                                                               (one per [[detect]] rule)
// Nothing else in the table is ever touched: other rules of POSTROUTING and other chains stay
// byte-identical. Every change of a family happens in one atomic commit under the xtables lock.
//
// The same port also switches on conntrack byte accounting (net.netfilter.nf_conntrack_acct) in
// the calling thread's network namespace: it is the other half of "make conntrack usable here".
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "flowshaper/common/net.hpp"
#include "flowshaper/common/result.hpp"

namespace flowshaper::kernel {

inline constexpr const char* kMangleChain = "FLOWSHAPER";  // the chain flowshaper owns
inline constexpr const char* kMangleHook = "POSTROUTING";  // the built-in chain that jumps to it

// What flowshaper wants in the mangle table of one family.
struct MangleSpec {
    uint32_t mark_mask = 0;  // ctmark/fwmark bits flowshaper owns (restored into the fwmark)

    // Connections whose ctmark & ctmark_mask == ctmark_value leave with DSCP `dscp`.
    struct DscpRule {
        uint32_t ctmark_value = 0;
        uint32_t ctmark_mask = 0;
        uint8_t dscp = 0;     // 0..63
        std::string comment;  // shown by iptables-save (-m comment); empty: no comment match
        bool operator==(const DscpRule&) const = default;
    };
    std::vector<DscpRule> dscp_rules;  // one per [[detect]] rule, in this order

    // The kernel-side prefilter: a connection that has moved at least `min_bytes` (both
    // directions together) gets ctmark bit `bit` from the next packet that leaves, so that a
    // dump filtered on that bit carries only the connections that can be heavy. `bit` lies
    // outside mark_mask (it is never restored into the fwmark) and outside every DSCP rule.
    struct Candidate {
        uint64_t min_bytes = 0;
        uint32_t bit = 0;
        bool operator==(const Candidate&) const = default;
    };
    std::optional<Candidate> candidate;

    // Every ctmark bit these rules write or restore.
    uint32_t owned_bits() const { return mark_mask | (candidate ? candidate->bit : 0); }

    bool operator==(const MangleSpec&) const = default;
};

// Checks what the kernel would accept and what could ever match: mark_mask != 0, dscp <= 63,
// comment < 256 bytes without NUL, ctmark_mask within mark_mask, ctmark_value within ctmark_mask,
// a candidate bit that is one bit outside mark_mask, with min_bytes > 0.
Status validate(const MangleSpec& spec);

// The rules of `spec` as iptables-legacy-save prints them (for humans, `plan`, and docs).
std::vector<std::string> render_save_lines(const MangleSpec& spec);

class ManglePort {
public:
    virtual ~ManglePort() = default;

    // Converges flowshaper's chain, its rules and the jump to `spec` in one atomic commit.
    // Idempotent: when the table already matches, nothing is committed. Keeps unchanged rules
    // (and their counters); replaces changed ones; finds the chain and the jump again after a
    // restart (no duplicates). Retries when another program changed the table meanwhile.
    virtual Status ensure(net::Family family, const MangleSpec& spec) = 0;

    // Removes the jump and the chain (and nothing else). Succeeds when there is nothing of ours.
    virtual Status remove_all(net::Family family) = 0;

    // What flowshaper has in the table now: nullopt when its chain does not exist; an error when
    // the chain holds a rule flowshaper did not write (ensure() would replace it).
    virtual Result<std::optional<MangleSpec>> read(net::Family family) = 0;

    // Switches conntrack byte accounting on in the current network namespace (for connections
    // created from now on). Returns whether it was already on.
    virtual Result<bool> ensure_conntrack_accounting() = 0;

    // Number of successful commits since construction (for tests and stats).
    virtual uint64_t commits() const = 0;
};

struct IptcOptions {
    std::string lock_path;  // empty: $XTABLES_LOCKFILE, else /run/xtables.lock (as iptables)
    std::chrono::milliseconds lock_timeout{5000};  // wait this long for another holder
    int max_attempts = 5;                          // commits tried when the kernel says EAGAIN
    // Where conntrack accounting is switched on (opened while in the target namespace).
    std::string conntrack_acct_path = "/proc/sys/net/netfilter/nf_conntrack_acct";
};

// The real port. Works in the network namespace of the calling thread at the time of each call.
// Not thread-safe (libiptc keeps global state): use it from one thread.
std::unique_ptr<ManglePort> make_iptc_mangle_port(IptcOptions options = {});

// In-memory port for logic tests. It runs the same convergence and retry code as the real port
// against an in-memory table with libiptc's rules (EAGAIN when the table changed since it was
// read, ENOTEMPTY/EMLINK when deleting a chain that holds or receives rules).
class FakeManglePort final : public ManglePort {
public:
    FakeManglePort();
    ~FakeManglePort() override;
    FakeManglePort(const FakeManglePort&) = delete;
    FakeManglePort& operator=(const FakeManglePort&) = delete;

    // The next `count` commits fail with `err`. They change nothing unless `applied`: then the
    // table is replaced first, as when libiptc's second step (restoring counters) fails.
    void fail_next_commits(int err, int count = 1, bool applied = false);
    // Just before the next commit, another program appends "-A POSTROUTING -j ACCEPT" to the
    // table: that commit then fails with EAGAIN like the kernel's.
    void change_before_next_commit(net::Family family);
    // Appends an unconditional rule to `chain` (created if missing), as another program would.
    // `target` is a verdict (ACCEPT, RETURN, ...) or a chain name.
    void add_foreign_rule(net::Family family, const std::string& chain = kMangleHook,
                          const std::string& target = "ACCEPT");
    // The table in iptables-save syntax: ":CHAIN -" for user chains, then "-A CHAIN ..." lines.
    std::vector<std::string> lines(net::Family family) const;
    // Commits tried, including failed ones.
    uint64_t commit_attempts() const;

    // Until a commit (a rule that needs conntrack) or this, the accounting sysctl does not exist
    // (ENOENT), as on a host where nf_conntrack is not loaded yet.
    void set_conntrack_loaded(bool loaded);
    void set_conntrack_accounting(bool on);
    bool conntrack_accounting() const;
    void fail_conntrack_accounting(int err);  // 0: stop failing

    Status ensure(net::Family family, const MangleSpec& spec) override;
    Status remove_all(net::Family family) override;
    Result<std::optional<MangleSpec>> read(net::Family family) override;
    Result<bool> ensure_conntrack_accounting() override;
    uint64_t commits() const override;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace flowshaper::kernel
