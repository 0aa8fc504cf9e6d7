// The nftables backend of the mangle port: libnftables in-process (no exec of nft), text in,
// JSON out. It owns `table inet flowshaper` and nothing else:
//
//   table inet flowshaper {
//     set capped4_<i> { type ipv4_addr; }   set capped6_<i> { type ipv6_addr; }   (per rule, with capped)
//     chain postrouting { type filter hook postrouting priority mangle; policy accept;
//                         meta nfproto vmap { ipv4 : jump v4, ipv6 : jump v6 } }
//     chain v4_restore {                    (chain v6_restore alike)
//       meta mark set meta mark & ~M                        (the masked restore that keeps other
//       ct mark & b == b meta mark set meta mark | b         bits: clear, then one rule per bit b of M)
//     }
//     chain v4 {                            (chain v6 alike, with ip6)
//       ip daddr @capped4_<i> [tcp sport { P }] ct mark set ct mark & ~R | V    (per rule, with capped)
//       meta mark & ~M == 0 meta mark set ct mark & M       (restore when no other fwmark bit is set:
//       meta mark & ~M != 0 jump v4_restore                  one rule; else the restore chain)
//       ct bytes >= N ct mark set ct mark | B               (optional: the candidate flag)
//       ct mark & R == V ip dscp set D comment "C"          (one per [[detect]] rule)
//     }
//   }
//
// Every change replaces the whole table in one transaction ("table", "delete table", the new
// table, in one buffer): a rejected batch leaves every table as it was. Set members are carried
// over into the new table. Other tables (iptables-nft's, firewalld's, anyone's) are never read
// for writing nor touched.
#pragma once

#include <memory>
#include <string>

#include "flowshaper/kernel/mangle_port.hpp"

namespace flowshaper::kernel {

struct NftOptions {
    // Where conntrack accounting is switched on (nft does not do it by itself).
    std::string conntrack_acct_path = "/proc/sys/net/netfilter/nf_conntrack_acct";
    // Listen to NFNLGRP_NFTABLES for change_fd() (opened in the namespace current at creation).
    bool events = true;
    // Load the modules its objects need (backend_modules) through libkmod before the first write.
    bool load_modules = true;
};

// The real nftables port. Works in the network namespace of the calling thread at the time of
// each call (the event socket: at creation); it keeps one libnftables context per namespace. Errors when
// libnftables cannot be initialised. Its remove_all() removes only nftables' objects; mangle_backend.hpp's
// ports remove both.
Result<std::unique_ptr<ManglePort>> make_nft_mangle_port(NftOptions options = {});

// The table for the given per-family specs (either may be absent), as `nft -f` takes it, with
// the given members in the sets. Used by the port, by `plan`, and by tests.
std::string render_nft_table(const std::optional<MangleSpec>& v4, const std::optional<MangleSpec>& v6,
                             const std::vector<CappedClient>& members = {});

}  // namespace flowshaper::kernel
