// In-memory mangle port for logic tests. It runs the same convergence and retry code as the
// libiptc port against an in-memory table with libiptc's rules (EAGAIN when the table changed
// since it was read, ENOTEMPTY/EMLINK when deleting a chain that holds or receives rules), and
// keeps capped-client sets in memory as the libiptc port keeps its ipsets: named by ipset_name(),
// created before the capped-client rules that refer to them by index, destroyed (with their
// members) when no rule refers to them any more or by remove_all().
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "flowshaper/kernel/mangle_port.hpp"

namespace flowshaper::kernel {

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
    // The next set operation fails with `err` (0: stop failing) and changes nothing.
    void fail_set_operations(int err);
    // Set operations that changed a set (adds of new members, removals of present ones, flushes).
    uint64_t set_changes() const;

    std::string backend() const override { return "fake"; }
    Status ensure(net::Family family, const MangleSpec& spec) override;
    Status remove_all(net::Family family) override;
    Result<std::optional<MangleSpec>> read(net::Family family) override;
    Status add_capped(const CappedClient& member) override;
    Status remove_capped(const CappedClient& member) override;
    Result<std::vector<CappedClient>> read_capped() override;
    Status flush_capped() override;
    Result<bool> ensure_conntrack_accounting() override;
    uint64_t commits() const override;
    bool has_kernel_sets() const override { return kernel_sets_; }
    // Tests: the fake claims kernel sets (as nftables has them).
    void set_kernel_sets(bool on) { kernel_sets_ = on; }

private:
    bool kernel_sets_ = false;
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace flowshaper::kernel
