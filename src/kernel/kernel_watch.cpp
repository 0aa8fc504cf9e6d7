#include "flowshaper/kernel/kernel_watch.hpp"

#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace flowshaper::kernel {

Result<RtnlWatch> RtnlWatch::open(int rcvbuf) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
    if (fd < 0) return make_error("open rtnetlink event socket", "", errno, std::strerror(errno));
    RtnlWatch watch(fd);
    if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) != 0)
        return make_error("size rtnetlink event socket", "", errno, std::strerror(errno));
    sockaddr_nl addr{};
    addr.nl_family = AF_NETLINK;
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        return make_error("bind rtnetlink event socket", "", errno, std::strerror(errno));
    for (int group : {RTNLGRP_TC, RTNLGRP_LINK})
        if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) != 0)
            return make_error("join rtnetlink group", std::to_string(group), errno, std::strerror(errno));
    return watch;
}

RtnlWatch::RtnlWatch(RtnlWatch&& other) noexcept : fd_(other.fd_) {
    other.fd_ = -1;
}

RtnlWatch& RtnlWatch::operator=(RtnlWatch&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) close(fd_);
        fd_ = other.fd_;
        other.fd_ = -1;
    }
    return *this;
}

RtnlWatch::~RtnlWatch() {
    if (fd_ >= 0) close(fd_);
}

RtnlChanges RtnlWatch::drain() {
    RtnlChanges out;
    alignas(nlmsghdr) char buf[16384];
    for (;;) {
        ssize_t n = recv(fd_, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == ENOBUFS) {
                out.lost = true;
                continue;
            }
            break;  // EAGAIN: nothing more
        }
        for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n));
             h = NLMSG_NEXT(h, n)) {
            switch (h->nlmsg_type) {
                case RTM_NEWQDISC:
                case RTM_DELQDISC:
                case RTM_NEWTCLASS:
                case RTM_DELTCLASS:
                case RTM_NEWTFILTER:
                case RTM_DELTFILTER:
                    out.tc = true;
                    if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(tcmsg)))
                        out.ifindexes.insert(static_cast<const tcmsg*>(NLMSG_DATA(h))->tcm_ifindex);
                    break;
                case RTM_NEWLINK:
                case RTM_DELLINK:
                    out.link = true;
                    if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(ifinfomsg)))
                        out.ifindexes.insert(static_cast<const ifinfomsg*>(NLMSG_DATA(h))->ifi_index);
                    break;
                default:
                    break;
            }
        }
    }
    return out;
}

std::optional<uint64_t> legacy_mangle_fingerprint(net::Family family) {
    bool v4 = family == net::Family::V4;
    int fd = socket(v4 ? AF_INET : AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0) return std::nullopt;
    // ipt_getinfo and ip6t_getinfo have the same layout.
    ipt_getinfo info{};
    std::strncpy(info.name, "mangle", sizeof info.name - 1);
    socklen_t len = sizeof info;
    int rc =
        getsockopt(fd, v4 ? IPPROTO_IP : IPPROTO_IPV6, v4 ? IPT_SO_GET_INFO : IP6T_SO_GET_INFO, &info, &len);
    close(fd);
    if (rc != 0) return std::nullopt;
    return (static_cast<uint64_t>(info.size) << 32) ^ info.num_entries;
}

}  // namespace flowshaper::kernel
