#include "nft_events.hpp"

#include <arpa/inet.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <utility>

namespace flowshaper::kernel::nft {

Result<EventSocket> EventSocket::open() {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_NETFILTER);
    if (fd < 0) return make_error("open", "nf_tables event socket", errno, std::strerror(errno));
    EventSocket sock(fd);
    sockaddr_nl addr{};
    addr.nl_family = AF_NETLINK;
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        return make_error("bind", "nf_tables event socket", errno, std::strerror(errno));
    int group = NFNLGRP_NFTABLES;
    if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) != 0)
        return make_error("join", "NFNLGRP_NFTABLES", errno, std::strerror(errno));
    return sock;
}

EventSocket::EventSocket(EventSocket&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
EventSocket& EventSocket::operator=(EventSocket&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
}
EventSocket::~EventSocket() {
    if (fd_ >= 0) close(fd_);
}

namespace {

// The committing process of a NEWGEN message, 0 when it names none.
uint32_t gen_pid(const nlmsghdr* h) {
    const size_t header = NLMSG_LENGTH(sizeof(nfgenmsg));
    if (h->nlmsg_len < header) return 0;
    const auto* at = reinterpret_cast<const uint8_t*>(h) + NLMSG_ALIGN(header);
    const auto* end = reinterpret_cast<const uint8_t*>(h) + h->nlmsg_len;
    while (end - at >= static_cast<ptrdiff_t>(sizeof(nlattr))) {
        nlattr a;
        std::memcpy(&a, at, sizeof a);
        if (a.nla_len < sizeof a || a.nla_len > end - at) break;
        if ((a.nla_type & NLA_TYPE_MASK) == NFTA_GEN_PROC_PID && a.nla_len >= sizeof a + 4) {
            uint32_t pid;
            std::memcpy(&pid, at + NLA_HDRLEN, 4);
            return ntohl(pid);
        }
        at += NLA_ALIGN(a.nla_len);
    }
    return 0;
}

}  // namespace

bool EventSocket::drain() {
    bool foreign = false;
    alignas(nlmsghdr) char buf[16384];
    const uint32_t self = static_cast<uint32_t>(getpid());
    for (;;) {
        ssize_t n = recv(fd_, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == ENOBUFS) foreign = true;  // lost events: assume the worst
            if (errno == EINTR || errno == ENOBUFS) continue;
            return foreign;  // EAGAIN: drained
        }
        int len = static_cast<int>(n);
        for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
            if (h->nlmsg_type != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)) continue;
            if (gen_pid(h) != self) foreign = true;
        }
    }
}

}  // namespace flowshaper::kernel::nft
