// The conntrack port's reply reader and its errno handling, fed crafted netlink replies over a
// socketpair: an error the kernel (or libnetfilter_conntrack) reports keeps its errno and says
// what to do; a malformed error message is never taken for an ACK.
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <vector>

#include "conntrack_replies.hpp"

using flowshaper::Status;
using flowshaper::kernel::detail::conntrack_error;
using flowshaper::kernel::detail::read_netlink_replies;

namespace {

struct SocketPair {
    int fd[2] = {-1, -1};
    SocketPair() { REQUIRE(socketpair(AF_UNIX, SOCK_DGRAM, 0, fd) == 0); }
    ~SocketPair() {
        close(fd[0]);
        close(fd[1]);
    }
};

// One datagram holding the given netlink messages.
struct Datagram {
    std::vector<uint8_t> bytes;

    Datagram& message(uint16_t type, const void* payload, size_t length, uint32_t declared_len = 0) {
        size_t at = bytes.size();
        bytes.resize(at + NLMSG_SPACE(length));
        auto* nlh = reinterpret_cast<nlmsghdr*>(bytes.data() + at);
        nlh->nlmsg_len = declared_len ? declared_len : static_cast<uint32_t>(NLMSG_LENGTH(length));
        nlh->nlmsg_type = type;
        if (length) std::memcpy(NLMSG_DATA(nlh), payload, length);
        return *this;
    }
    Datagram& error(int negative_errno) {
        nlmsgerr e{};
        e.error = negative_errno;
        return message(NLMSG_ERROR, &e, sizeof e);
    }
    void send_to(int fd) const { REQUIRE(send(fd, bytes.data(), bytes.size(), 0) == ssize_t(bytes.size())); }
};

// What read_netlink_replies makes of `reply`; `seen` counts the other messages it handed on.
Status read(const Datagram& reply, int* seen = nullptr) {
    SocketPair pair;
    reply.send_to(pair.fd[1]);
    std::vector<uint8_t> buf(64 * 1024);
    int count = 0;
    Status st = read_netlink_replies(pair.fd[0], buf, "set ctmark", "6 10.0.0.2:80 -> 10.0.0.1:4000",
                                     [&](const nlmsghdr*) { ++count; });
    if (seen) *seen = count;
    return st;
}

}  // namespace

TEST_CASE("an ACK ends the request, and the messages before it are handed on") {
    uint32_t payload = 7;
    int seen = 0;
    Status st = read(Datagram{}.message(0x100, &payload, sizeof payload).error(0), &seen);
    CHECK(st.ok());
    CHECK(seen == 1);
    CHECK(read(Datagram{}.message(NLMSG_DONE, &payload, sizeof payload)).ok());
}

TEST_CASE("the kernel's EPERM keeps its errno and says CAP_NET_ADMIN is needed") {
    Status st = read(Datagram{}.error(-EPERM));
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == EPERM);
    CHECK(st.error().text() == std::string("set ctmark 6 10.0.0.2:80 -> 10.0.0.1:4000: ") +
                                   std::strerror(EPERM) + " (needs CAP_NET_ADMIN)");
    Status gone = read(Datagram{}.error(-ENOENT));
    REQUIRE_FALSE(gone.ok());
    CHECK(gone.error().code == ENOENT);
    CHECK(gone.error().text().find("CAP_NET_ADMIN") == std::string::npos);
}

TEST_CASE("an error message too short to carry an errno is a failure, not an ACK") {
    uint16_t half = 0;
    Status st = read(Datagram{}.message(NLMSG_ERROR, &half, sizeof half));
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == EBADMSG);
}

TEST_CASE("a library failure without an errno reads as EIO, never as success") {
    auto e = conntrack_error("open conntrack netlink socket", "dump", 0);
    CHECK(e.code == EIO);
    CHECK(e.text().find("Success") == std::string::npos);
    CHECK(conntrack_error("dump conntrack", "table", EACCES).text().find("needs CAP_NET_ADMIN") !=
          std::string::npos);
}
