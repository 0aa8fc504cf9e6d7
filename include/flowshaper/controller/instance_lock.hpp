// One flowshaper daemon per network namespace: the mangle chain (or nftables table) and the
// conntrack marks are per namespace, so two daemons there would undo each other's work. The lock
// is an abstract Unix socket, whose names live in the network namespace: the kernel releases it
// when the process ends (also after SIGKILL), so no stale lock file can outlive a crash.
#pragma once

#include <sys/types.h>

#include "flowshaper/common/result.hpp"

namespace flowshaper::controller {

class InstanceLock {
public:
    // Takes the lock; the error names the other daemon's pid when one holds it.
    static Result<InstanceLock> acquire();
    InstanceLock(InstanceLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
    InstanceLock& operator=(InstanceLock&&) = delete;
    InstanceLock(const InstanceLock&) = delete;
    ~InstanceLock();

private:
    explicit InstanceLock(int fd) : fd_(fd) {}
    int fd_ = -1;
};

}  // namespace flowshaper::controller
