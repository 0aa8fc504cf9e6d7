#include "flowshaper/controller/status_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace flowshaper::controller {

namespace {

int64_t mono_ms() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

constexpr size_t kMaxAnswerBytes = 256 * 1024 * 1024;

}  // namespace

StatusClient::~StatusClient() {
    if (fd_ >= 0) close(fd_);
}

bool no_daemon(const Error& error) {
    return error.operation == "connect to status socket" &&
           (error.code == ENOENT || error.code == ECONNREFUSED);
}

Status StatusClient::connect(const std::string& path) {
    path_ = path;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path)
        return make_error("connect to status socket", path, ENAMETOOLONG, "the path is too long");
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return make_error("connect to status socket", path, errno, std::strerror(errno));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        const int err = errno;
        close(fd);
        std::string detail = std::strerror(err);
        if (err == ENOENT || err == ECONNREFUSED)
            detail += " (is flowshaper run running, with this status_socket?)";
        else if (err == EACCES)
            detail += " (the socket is mode 0600: run as the daemon's user, root)";
        return make_error("connect to status socket", path, err, detail);
    }
    fd_ = fd;
    return {};
}

Result<nlohmann::json> StatusClient::request(const nlohmann::json& request, int timeout_ms) {
    if (fd_ < 0) return make_error("ask the daemon", path_, ENOTCONN, "not connected");
    const std::string line = request.dump() + "\n";
    for (size_t sent = 0; sent < line.size();) {
        ssize_t n = send(fd_, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return make_error("send to status socket", path_, errno, std::strerror(errno));
        sent += static_cast<size_t>(n);
    }
    const int64_t deadline = mono_ms() + timeout_ms;
    size_t nl;
    while ((nl = in_.find('\n')) == std::string::npos) {
        const int64_t left = deadline - mono_ms();
        pollfd p{fd_, POLLIN, 0};
        int r = left > 0 ? poll(&p, 1, static_cast<int>(left)) : 0;
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) return make_error("wait for the daemon", path_, ETIMEDOUT, "no answer in time");
        char buf[64 * 1024];
        ssize_t n = recv(fd_, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return make_error("read from status socket", path_, errno, std::strerror(errno));
        if (n == 0)
            return make_error("read from status socket", path_, ECONNRESET,
                              "the daemon closed the connection");
        in_.append(buf, static_cast<size_t>(n));
        if (in_.size() > kMaxAnswerBytes)
            return make_error("read from status socket", path_, EMSGSIZE, "answer too long");
    }
    auto answer =
        nlohmann::json::parse(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(nl), nullptr, false);
    in_.erase(0, nl + 1);
    if (answer.is_discarded() || !answer.is_object())
        return make_error("read from status socket", path_, EPROTO, "the answer is not a JSON object");
    return answer;
}

}  // namespace flowshaper::controller
