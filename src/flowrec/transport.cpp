// Sockets and files for the exporter (see transport.hpp).
#include "transport.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace flowshaper::flowrec::detail {
namespace {

struct AddrinfoFree {
    void operator()(addrinfo* ai) const { freeaddrinfo(ai); }
};

Error errno_error(const char* operation, const std::string& object, int err) {
    return make_error(operation, object, err, std::strerror(err));
}

const sockaddr* as_sockaddr(const std::vector<uint8_t>& peer) {
    return reinterpret_cast<const sockaddr*>(peer.data());
}

int family_of(const std::vector<uint8_t>& peer) {
    sa_family_t family;
    std::memcpy(&family, peer.data(), sizeof family);
    return family;
}

}  // namespace

Result<std::vector<uint8_t>> resolve(const policy::Export& target) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = target.transport == policy::ExportTransport::Tcp ? SOCK_STREAM : SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(target.port);
    int rc = getaddrinfo(target.host.c_str(), port.c_str(), &hints, &found);
    std::unique_ptr<addrinfo, AddrinfoFree> list(found);
    if (rc != 0 || !found)
        return make_error("resolve export target", target.target, 0,
                          rc == EAI_SYSTEM ? std::strerror(errno) : gai_strerror(rc));
    const auto* begin = reinterpret_cast<const uint8_t*>(found->ai_addr);
    return std::vector<uint8_t>(begin, begin + found->ai_addrlen);
}

Result<int> open_udp(const std::vector<uint8_t>& peer, const std::string& object) {
    int fd = socket(family_of(peer), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno_error("open UDP socket", object, errno);
    if (connect(fd, as_sockaddr(peer), static_cast<socklen_t>(peer.size())) < 0) {
        int err = errno;
        close(fd);
        return errno_error("connect UDP socket", object, err);
    }
    return fd;
}

Result<int> open_tcp(const std::vector<uint8_t>& peer, const std::string& object, bool& connected) {
    int fd = socket(family_of(peer), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno_error("open TCP socket", object, errno);
    int rc = connect(fd, as_sockaddr(peer), static_cast<socklen_t>(peer.size()));
    if (rc < 0 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        return errno_error("connect", object, err);
    }
    connected = rc == 0;
    return fd;
}

Result<int> open_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) return errno_error("open export file", path, errno);
    return fd;
}

size_t udp_payload_budget(int fd, const std::vector<uint8_t>& peer) {
    const bool v4 = family_of(peer) == AF_INET;
    int mtu = 0;
    socklen_t len = sizeof mtu;
    int rc = v4 ? getsockopt(fd, IPPROTO_IP, IP_MTU, &mtu, &len)
                : getsockopt(fd, IPPROTO_IPV6, IPV6_MTU, &mtu, &len);
    if (rc < 0 || mtu <= 0) mtu = 1500;
    const size_t headers = (v4 ? 20 : 40) + 8;
    return static_cast<size_t>(mtu) > headers ? static_cast<size_t>(mtu) - headers : 0;
}

int take_socket_error(int fd) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return errno;
    return err;
}

}  // namespace flowshaper::flowrec::detail
