// Internal to the kernel module: reading ctnetlink replies on a netlink socket, and turning an
// errno from libnetfilter_conntrack / libnfnetlink (-1 with errno) or from the kernel's
// NLMSG_ERROR into an Error. Kept apart from conntrack_nfct.cpp so that tests can feed it
// crafted replies over a socketpair.
#pragma once

#include <linux/netlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "flowshaper/common/result.hpp"

namespace flowshaper::kernel::detail {

// An Error for an errno of the conntrack port: strerror, plus "needs CAP_NET_ADMIN" for EPERM and
// EACCES (ctnetlink refuses every request without it). errno 0 — a library call that failed
// without setting errno — becomes EIO, never a failure that reads "Success".
inline Error conntrack_error(const char* operation, const std::string& object, int err) {
    if (err <= 0)
        return make_error(operation, object, EIO, "failed without an errno (libnetfilter_conntrack)");
    std::string detail = std::strerror(err);
    if (err == EPERM || err == EACCES) detail += " (needs CAP_NET_ADMIN)";
    return make_error(operation, object, err, std::move(detail));
}

// One read; returns the byte count, 0 for "nothing waiting" (non-blocking), or a negative errno.
inline ssize_t read_netlink_once(int fd, std::vector<uint8_t>& buf, int flags) {
    for (;;) {
        iovec iov{buf.data(), buf.size()};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        ssize_t n = recvmsg(fd, &msg, flags);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
        if (msg.msg_flags & MSG_TRUNC) return -EMSGSIZE;
        return n;
    }
}

// The errno an NLMSG_ERROR carries: 0 for an ACK; EBADMSG when the message is too short to hold
// one (never mistaken for an ACK).
inline int netlink_error_of(const nlmsghdr* nlh) {
    if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return EBADMSG;
    return -static_cast<const nlmsgerr*>(NLMSG_DATA(nlh))->error;
}

// Reads replies until the request is answered: NLMSG_DONE ends a dump, an NLMSG_ERROR with
// error 0 is an ACK, any other NLMSG_ERROR is the request's failure. Every other message on the
// way goes to `on_message`.
template <typename OnMessage>
Status read_netlink_replies(int fd, std::vector<uint8_t>& buf, const char* operation,
                            const std::string& object, OnMessage&& on_message) {
    for (;;) {
        ssize_t n = read_netlink_once(fd, buf, 0);
        if (n < 0) return conntrack_error(operation, object, static_cast<int>(-n));
        if (n == 0) return conntrack_error(operation, object, ECONNRESET);
        size_t left = static_cast<size_t>(n);
        for (auto* nlh = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(nlh, left);
             nlh = NLMSG_NEXT(nlh, left)) {
            if (nlh->nlmsg_type == NLMSG_DONE) return {};
            if (nlh->nlmsg_type == NLMSG_ERROR) {
                int err = netlink_error_of(nlh);
                if (err == 0) return {};
                return conntrack_error(operation, object, err);
            }
            on_message(nlh);
        }
    }
}

}  // namespace flowshaper::kernel::detail
