// The libiptc backend of the mangle port (libip4tc / libip6tc, the legacy xtables API).
//
// Layout, per family, whatever the number of clients:
//   -A POSTROUTING -j FLOWSHAPER                                  (inserted at the top, once)
//   -A FLOWSHAPER -j CONNMARK --restore-mark --nfmask M --ctmask M   (M = mark_mask; this rule
//                                                 also switches conntrack on in the namespace)
//   -A FLOWSHAPER -m connbytes --connbytes N --connbytes-mode bytes --connbytes-dir both
//                 -j CONNMARK --set-xmark B/B       (optional: the candidate flag)
//   -A FLOWSHAPER -m connmark --mark V/R [-m comment --comment C] -j DSCP --set-dscp D
//                                                               (one per [[detect]] rule)
// Nothing else in the table is ever touched: other rules of POSTROUTING and other chains stay
// byte-identical. Every change of a family happens in one atomic commit under the xtables lock.
// Capped-client sets (MangleSpec::capped) are not supported by this backend yet (ENOTSUP).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "flowshaper/kernel/mangle_port.hpp"

namespace flowshaper::kernel {

struct IptcOptions {
    std::string lock_path;  // empty: $XTABLES_LOCKFILE, else /run/xtables.lock (as iptables)
    std::chrono::milliseconds lock_timeout{5000};  // wait this long for another holder
    int max_attempts = 5;                          // commits tried when the kernel says EAGAIN
    // Where conntrack accounting is switched on (opened while in the target namespace).
    std::string conntrack_acct_path = "/proc/sys/net/netfilter/nf_conntrack_acct";
};

// The real port. Works in the network namespace of the calling thread at the time of each call.
// Not thread-safe (libiptc keeps global state): use it from one thread. Its remove_all() removes
// only libiptc's objects; mangle_backend.hpp's ports remove both backends'.
std::unique_ptr<ManglePort> make_iptc_mangle_port(IptcOptions options = {});

// The rules of `spec` as iptables-legacy-save prints them (for humans, `plan`, and docs).
std::vector<std::string> render_save_lines(const MangleSpec& spec);

// Whether the legacy mangle/filter/nat tables of the current namespace hold any rule (a host
// that uses iptables-legacy); an error when the legacy tables cannot be read at all.
Result<bool> legacy_iptables_in_use();

}  // namespace flowshaper::kernel
