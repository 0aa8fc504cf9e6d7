// Triggers for drift repair: someone else may have changed flowshaper's objects.
//   RtnlWatch: rtnetlink RTNLGRP_TC and RTNLGRP_LINK messages (a qdisc, class or filter deleted,
//     a link gone or created). Replacing a root qdisc announces only the root's deletion, so
//     these are a trigger for the normal read-diff-apply, never the truth.
//   legacy_mangle_fingerprint: the legacy mangle table's size and entry count (IPT_SO_GET_INFO,
//     no copy of the rules): a cheap per-poll check whether anything there changed.
#pragma once

#include <cstdint>
#include <optional>
#include <set>

#include "flowshaper/common/net.hpp"
#include "flowshaper/common/result.hpp"

namespace flowshaper::kernel {

struct RtnlChanges {
    bool tc = false;          // a qdisc, class or filter was added, changed or deleted
    bool link = false;        // a link appeared, went away or changed
    bool lost = false;        // the socket overflowed (ENOBUFS): assume anything changed
    std::set<int> ifindexes;  // where (when known)
    bool any() const { return tc || link || lost; }
};

class RtnlWatch {
public:
    // Subscribes to RTNLGRP_TC and RTNLGRP_LINK in the current network namespace. `rcvbuf`:
    // receive buffer in bytes (0: the kernel default; tests make it tiny to provoke loss).
    static Result<RtnlWatch> open(int rcvbuf = 1 << 20);
    RtnlWatch(RtnlWatch&& other) noexcept;
    RtnlWatch& operator=(RtnlWatch&& other) noexcept;
    RtnlWatch(const RtnlWatch&) = delete;
    RtnlWatch& operator=(const RtnlWatch&) = delete;
    ~RtnlWatch();

    int fd() const { return fd_; }
    // Reads everything waiting, without blocking.
    RtnlChanges drain();

private:
    explicit RtnlWatch(int fd) : fd_(fd) {}
    int fd_ = -1;
};

// (size in bytes, number of entries) of the legacy mangle table of `family`, folded into one
// number; nullopt when the table cannot be read (no legacy iptables, no permission).
std::optional<uint64_t> legacy_mangle_fingerprint(net::Family family);

}  // namespace flowshaper::kernel
