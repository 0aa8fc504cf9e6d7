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
// With capped-client sets (MangleSpec::capped), first in the chain, per [[detect]] rule i:
//   -A FLOWSHAPER [-p tcp|udp] -m set --match-set flowshaper-r<i>-v4 dst
//                 [-m multiport --sports P,...] [-m multiport --dports P,...]
//                 -j CONNMARK --set-xmark V/R   (V/R: rule i's ctmark; one rule per port side and
//                 per 15 ports; no port list: one rule)
// with the ipset (hash:ip, family inet / inet6, through libipset) flowshaper-r<i>-v4 / -v6 created
// before the rule that refers to it and destroyed after it (remove_all destroys every set named
// flowshaper-r<N>-v4/-v6 of the family, and no other). No --ctstate: for a server rule the first
// packet toward the client is the SYN-ACK, which is not NEW; every packet to a member matches,
// which also marks the member's connections that began before it was capped.
// Nothing else in the table is ever touched: other rules of POSTROUTING and other chains stay
// byte-identical. Every change of a family happens in one atomic commit under the xtables lock.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "flowshaper/kernel/mangle_port.hpp"

namespace flowshaper::kernel {

struct IptcOptions {
    std::string lock_path;  // empty: $XTABLES_LOCKFILE, else /run/xtables.lock (as iptables)
    std::chrono::milliseconds lock_timeout{5000};  // wait this long for another holder
    int max_attempts = 5;                          // commits tried when the kernel says EAGAIN
    // Where conntrack accounting is switched on (opened while in the target namespace).
    std::string conntrack_acct_path = "/proc/sys/net/netfilter/nf_conntrack_acct";
    // Load the modules its objects need (backend_modules) through libkmod before the first write.
    bool load_modules = true;
};

// The real port. Works in the network namespace of the calling thread at the time of each call.
// Not thread-safe (libiptc keeps global state): use it from one thread. Its remove_all() removes
// only libiptc's objects; mangle_backend.hpp's ports remove both backends'.
std::unique_ptr<ManglePort> make_iptc_mangle_port(IptcOptions options = {});

// The rules of `spec` as iptables-legacy-save prints them (for humans, `plan`, and docs).
std::vector<std::string> render_save_lines(const MangleSpec& spec, net::Family family = net::Family::V4);

// The ipset of capped clients of [[detect]] rule `rule` (0-based): "flowshaper-r<rule>-v4" / "-v6".
std::string ipset_name(net::Family family, size_t rule);
// The rule and family of one of flowshaper's set names; nullopt for any other name.
std::optional<std::pair<size_t, net::Family>> parse_ipset_name(const std::string& name);

// Whether the legacy mangle/filter/nat tables of the current namespace hold any rule (a host
// that uses iptables-legacy); an error when the legacy tables cannot be read at all.
Result<bool> legacy_iptables_in_use();

}  // namespace flowshaper::kernel
