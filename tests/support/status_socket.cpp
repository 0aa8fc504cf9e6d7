#include "status_socket.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace flowshaper::testing {

sockaddr_un unix_address(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) throw std::runtime_error("socket path too long: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return addr;
}

namespace {

// Closes a descriptor when the scope ends.
struct FdGuard {
    int fd;
    ~FdGuard() {
        if (fd >= 0) close(fd);
    }
};

}  // namespace

StatusSocketPath::StatusSocketPath() {
    char tmpl[] = "/tmp/fs-status-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0) throw std::runtime_error("mkstemp: " + std::string(std::strerror(errno)));
    close(fd);
    std::remove(tmpl);
    path_ = std::string(tmpl) + ".sock";
}

StatusSocketPath::~StatusSocketPath() {
    std::remove(path_.c_str());
}

nlohmann::json status_request(const std::string& socket_path, const nlohmann::json& request, int timeout_ms) {
    FdGuard fd{socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    sockaddr_un addr = unix_address(socket_path);
    if (connect(fd.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        throw std::runtime_error("connect " + socket_path + ": " + std::strerror(errno));
    std::string line = request.dump() + "\n";
    if (write(fd.fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
        throw std::runtime_error("write " + socket_path + ": " + std::strerror(errno));
    std::string answer;
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (answer.find('\n') == std::string::npos) {
        auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
        pollfd p{fd.fd, POLLIN, 0};
        if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) != 1)
            throw std::runtime_error("no answer from " + socket_path + " within " +
                                     std::to_string(timeout_ms) + " ms");
        char buf[65536];
        ssize_t n = read(fd.fd, buf, sizeof buf);
        if (n <= 0) throw std::runtime_error("the daemon closed " + socket_path + " without an answer");
        answer.append(buf, static_cast<size_t>(n));
    }
    return nlohmann::json::parse(answer.substr(0, answer.find('\n')));
}

std::optional<nlohmann::json> try_snapshot(const std::string& socket_path) {
    try {
        auto answer = status_request(socket_path, {{"cmd", "status"}});
        if (!answer.value("ok", false)) return std::nullopt;  // "starting": no snapshot yet
        return answer["snapshot"];
    } catch (const std::exception&) {  // not listening yet, or gone
        return std::nullopt;
    }
}

bool wait_for_polls(const std::string& socket_path, uint64_t n, int timeout_ms) {
    std::optional<uint64_t> from;
    return wait_until(
        [&] {
            auto snap = try_snapshot(socket_path);
            if (!snap) return false;
            const uint64_t polls = (*snap)["counters"]["polls"].get<uint64_t>();
            if (!from) from = polls;
            return polls >= *from + n;
        },
        timeout_ms, 50);
}

}  // namespace flowshaper::testing
