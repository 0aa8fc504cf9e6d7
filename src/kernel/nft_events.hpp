// A netlink socket subscribed to NFNLGRP_NFTABLES: readable when any nf_tables transaction
// commits in the namespace it was opened in. Used as a trigger to re-ensure, never as truth.
#pragma once

#include "flowshaper/common/result.hpp"

namespace flowshaper::kernel::nft {

class EventSocket {
public:
    // Opens the socket in the calling thread's network namespace.
    static Result<EventSocket> open();
    EventSocket(EventSocket&& o) noexcept;
    EventSocket& operator=(EventSocket&& o) noexcept;
    EventSocket(const EventSocket&) = delete;
    EventSocket& operator=(const EventSocket&) = delete;
    ~EventSocket();

    int fd() const { return fd_; }
    // Reads every pending message; true when a transaction was committed by another process
    // (the NEWGEN message names the committing pid) or when events were lost (ENOBUFS).
    bool drain();

private:
    explicit EventSocket(int fd) : fd_(fd) {}
    int fd_ = -1;
};

}  // namespace flowshaper::kernel::nft
