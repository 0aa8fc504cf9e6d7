// The port through which flowshaper keeps its rules in the firewall's mangle stage (IPv4 and
// IPv6), and the kernel sets of capped clients. The rules are planned in plan::MangleSpec
// (plan/mangle_spec.hpp); this port writes them, reads them back and removes them.
//
// Backends, each in its own header, interchangeable behind this interface:
//   libiptc   (mangle_iptc_port.hpp): chain FLOWSHAPER in the legacy mangle tables;
//   nftables  (mangle_nft_port.hpp):  table inet flowshaper through libnftables;
//   fake      (mangle_fake_port.hpp): in memory, libiptc's convergence logic, error injection.
// mangle_backend.hpp picks one (settings.firewall, or a probe for "auto").
//
// Whatever the backend: nothing outside flowshaper's own objects is ever touched, every change
// of a family's rules is one atomic transaction, ensure() sends nothing when the kernel already
// holds the spec, and remove_all() removes flowshaper's objects of EVERY backend (so switching
// backends between runs leaves nothing behind).
//
// The port also switches on conntrack byte accounting (net.netfilter.nf_conntrack_acct) in the
// calling thread's network namespace: the other half of "make conntrack usable here".
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "flowshaper/common/net.hpp"
#include "flowshaper/common/result.hpp"
#include "flowshaper/plan/mangle_spec.hpp"

namespace flowshaper::kernel {

using MangleSpec = plan::MangleSpec;
using plan::validate;

inline constexpr const char* kMangleChain = "FLOWSHAPER";  // libiptc: the chain flowshaper owns
inline constexpr const char* kMangleHook = "POSTROUTING";  // libiptc: the built-in chain that jumps to it
inline constexpr const char* kNftTable = "flowshaper";     // nftables: table inet flowshaper

// A capped client of a [[detect]] rule: while it is in the kernel set, every new connection to
// it on the rule's ports gets the rule's ctmark from its first packet (MangleSpec::capped).
struct CappedClient {
    size_t rule = 0;  // index of the [[detect]] rule (of MangleSpec::dscp_rules)
    net::Address client;
    bool operator==(const CappedClient&) const = default;
};

class ManglePort {
public:
    virtual ~ManglePort() = default;

    // "nftables", "iptables" (libiptc) or "fake": for logs, status and plan.
    virtual std::string backend() const = 0;

    // Converges flowshaper's rules for `family` to `spec` in one atomic transaction. Idempotent:
    // when the kernel already matches, nothing is sent. Finds its objects again after a restart
    // (no duplicates). With spec.capped, the kernel sets exist afterwards and keep their members.
    virtual Status ensure(net::Family family, const MangleSpec& spec) = 0;

    // Removes flowshaper's rules, chains, tables and sets of `family`, of every backend, and
    // nothing else. Succeeds when there is nothing of ours.
    virtual Status remove_all(net::Family family) = 0;

    // What flowshaper has for `family` now (this backend): nullopt when it has nothing there; an
    // error when its chain holds a rule flowshaper did not write (ensure() would replace it).
    virtual Result<std::optional<MangleSpec>> read(net::Family family) = 0;

    // The kernel sets of capped clients (needs a spec with `capped` ensured first: the set of
    // rule i exists only then). Adding a member that is there, or removing one that is not, is
    // not an error. An address of the wrong family for a set is refused (EAFNOSUPPORT).
    virtual Status add_capped(const CappedClient& member) = 0;
    virtual Status remove_capped(const CappedClient& member) = 0;
    // Every member of every set of ours (both families): adoption after a restart.
    virtual Result<std::vector<CappedClient>> read_capped() = 0;
    // Empties every set of ours (the sets and their rules stay).
    virtual Status flush_capped() = 0;

    // Switches conntrack byte accounting on in the current network namespace (for connections
    // created from now on). Returns whether it was already on.
    virtual Result<bool> ensure_conntrack_accounting() = 0;

    // A descriptor that becomes readable when someone else may have changed or removed
    // flowshaper's objects (nftables: NFNLGRP_NFTABLES events), -1 when the backend cannot tell
    // (libiptc: legacy iptables announces nothing; poll read() instead). After it is readable,
    // call drain_changes() and then ensure() again: events are a trigger, never the truth.
    virtual int change_fd() { return -1; }
    // Reads what is pending on change_fd(); true when it was not only flowshaper's own writes.
    virtual bool drain_changes() { return false; }

    // Number of successful commits since construction (for tests and stats).
    virtual uint64_t commits() const = 0;
    // Whether this backend keeps kernel sets of capped clients (add_capped() and friends work
    // and MangleSpec::capped may be set): then the kernel marks a capped client's new
    // connections from their first packet.
    virtual bool has_kernel_sets() const { return false; }
    // Like read(), but of any backend flowshaper may have written (the other one first when this
    // one has nothing): `flush` learns flowshaper's mark bits from whichever rules are there.
    virtual Result<std::optional<MangleSpec>> read_any(net::Family family) { return read(family); }
};

}  // namespace flowshaper::kernel
