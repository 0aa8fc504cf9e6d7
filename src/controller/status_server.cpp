// The status socket's descriptors: the listening socket, its file, connections and their bounds.
// What each request answers is in status_requests.cpp.
#include "flowshaper/controller/status_server.hpp"

#include <spdlog/logger.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>

namespace flowshaper::controller {

struct StatusServer::Connection {
    int fd = -1;
    std::string in;
    struct Pending {
        std::shared_ptr<const std::string> text;
        size_t offset = 0;
    };
    std::deque<Pending> out;
    size_t out_bytes = 0;
    uint64_t last_progress_ms = 0;  // last byte read or written
    bool closing = false;           // no more requests: answer what is queued, then close
    bool peer_closed = false;       // the client ended its side (EOF)
    bool shut = false;              // our side ended (shutdown SHUT_WR) after the last answer
    size_t discard_left = 0;        // while closing: input still read and thrown away
    uint32_t events = EPOLLIN | EPOLLRDHUP;
};

namespace {

Error sys_error(const char* op, const std::string& object, int err, std::string hint = {}) {
    std::string detail = std::strerror(err);
    if (!hint.empty()) detail += " (" + hint + ")";
    return make_error(op, object, err, detail);
}

bool fill_address(const std::string& path, sockaddr_un& addr) {
    std::memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) return false;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return true;
}

// A socket file at `path`: another process answers on it (an error), or it is stale (removed).
Status clear_stale(const std::string& path, const sockaddr_un& addr) {
    struct stat st {};
    if (lstat(path.c_str(), &st) != 0) return {};
    if (!S_ISSOCK(st.st_mode))
        return make_error("open status socket", path, EEXIST,
                          "the path exists and is not a socket; remove it");
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) return sys_error("open status socket", path, errno);
    const bool answered = connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
    const int err = errno;
    close(probe);
    if (answered)
        return make_error("open status socket", path, EADDRINUSE,
                          "another process (a running flowshaper?) answers on it; refusing to take it over");
    if (err != ECONNREFUSED) return sys_error("probe status socket", path, err);
    if (unlink(path.c_str()) != 0 && errno != ENOENT)
        return sys_error("remove stale status socket", path, errno);
    return {};
}

}  // namespace

std::optional<std::string> status_socket_path(const policy::Settings& settings,
                                              const std::string& default_dir) {
    if (settings.status_socket) return settings.status_socket;
    std::error_code ec;
    if (std::filesystem::is_directory(default_dir, ec)) return default_dir + "/flowshaper.sock";
    return std::nullopt;
}

StatusServer::StatusServer(EventLoop& loop, ControlHooks hooks, StatusServerSettings settings,
                           std::shared_ptr<spdlog::logger> log)
    : loop_(loop), hooks_(std::move(hooks)), settings_(std::move(settings)), log_(std::move(log)) {}

StatusServer::~StatusServer() {
    while (!conns_.empty()) close_conn(conns_.begin()->first);
    if (sweep_timer_) loop_.cancel_timer(sweep_timer_);
    if (listen_fd_ >= 0) {
        loop_.remove_fd(listen_fd_);
        close(listen_fd_);
    }
    if (created_file_) unlink(settings_.path.c_str());
}

Status StatusServer::open() {
    const std::string& path = settings_.path;
    sockaddr_un addr;
    if (!fill_address(path, addr))
        return make_error("open status socket", path, ENAMETOOLONG, "the path is longer than 107 bytes");
    if (auto s = clear_stale(path, addr); !s) return s;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return sys_error("open status socket", path, errno);
    // Created 0600 from the start (no window in which others may connect), and chmod again
    // before listen in case the file system ignored the umask.
    const mode_t old_mask = umask(0177);
    const int bound = bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    const int bind_errno = errno;
    umask(old_mask);
    if (bound != 0) {
        close(fd);
        return sys_error("bind status socket", path, bind_errno,
                         bind_errno == ENOENT ? "its directory does not exist" : "");
    }
    created_file_ = true;
    if (chmod(path.c_str(), 0600) != 0 || listen(fd, 128) != 0) {
        const int err = errno;
        close(fd);
        return sys_error("listen on status socket", path, err);
    }
    listen_fd_ = fd;
    if (auto s = loop_.add_fd(fd, EPOLLIN, [this](uint32_t) { on_accept(); }); !s) return s;
    sweep_timer_ = loop_.add_timer(1000, 1000, [this] { sweep(); });
    return {};
}

void StatusServer::on_accept() {
    for (int round = 0; round < 64; ++round) {
        int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log_->warn("status socket: accept: {}", std::strerror(errno));
            return;
        }
        if (conns_.size() >= settings_.max_clients) {
            static const char kBusy[] = "{\"ok\":false,\"error\":\"too many status clients, try again\"}\n";
            (void)!send(fd, kBusy, sizeof kBusy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            close(fd);
            ++dropped_;
            continue;
        }
        auto conn = std::make_unique<Connection>();
        conn->fd = fd;
        conn->last_progress_ms = loop_.now_ms();
        if (!loop_.add_fd(fd, EPOLLIN | EPOLLRDHUP, [this, fd](uint32_t ev) { on_event(fd, ev); })) {
            close(fd);
            continue;
        }
        conns_.emplace(fd, std::move(conn));
    }
}

void StatusServer::on_event(int fd, uint32_t events) {
    auto it = conns_.find(fd);
    if (it == conns_.end()) return;
    Connection& c = *it->second;
    if (events & EPOLLERR) return close_conn(fd);
    if (events & EPOLLOUT) flush(c);
    if (conns_.count(fd) && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))) read_from(c);
}

void StatusServer::read_from(Connection& c) {
    const int fd = c.fd;
    char buf[16 * 1024];
    for (int round = 0; round < 16; ++round) {  // at most 256 KiB per wake-up: fair to the others
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) {  // end of requests (or an error): answer what was asked, then close
            c.closing = c.peer_closed = true;
            return flush(c);
        }
        c.last_progress_ms = loop_.now_ms();
        if (c.closing) {  // the rest of a refused request: read so the answer arrives, not a reset
            if (static_cast<size_t>(n) >= c.discard_left) return close_conn(fd);
            c.discard_left -= static_cast<size_t>(n);
            continue;
        }
        c.in.append(buf, static_cast<size_t>(n));
        size_t start = 0, nl;
        while ((nl = c.in.find('\n', start)) != std::string::npos) {
            handle_line(c, c.in.substr(start, nl - start));
            if (!conns_.count(fd)) return;  // dropped while queueing
            start = nl + 1;
        }
        c.in.erase(0, start);
        if (c.in.size() > settings_.max_request_bytes) {
            std::string().swap(c.in);
            ++dropped_;
            c.closing = true;
            c.discard_left = 4 * settings_.max_output_bytes;
            return queue(c, std::make_shared<const std::string>(
                                "{\"ok\":false,\"error\":\"request line longer than " +
                                std::to_string(settings_.max_request_bytes) + " bytes; closing\"}\n"));
        }
    }
}

void StatusServer::handle_line(Connection& c, const std::string& line) {
    queue(c, answer(line));
}

void StatusServer::queue(Connection& c, std::shared_ptr<const std::string> text) {
    if (c.out_bytes + text->size() > settings_.max_output_bytes) {
        log_->debug("status socket: a client does not read its answers; dropped");
        ++dropped_;
        return close_conn(c.fd);
    }
    c.out_bytes += text->size();
    c.out.push_back({std::move(text), 0});
    flush(c);
}

void StatusServer::flush(Connection& c) {
    size_t budget = 64 * 1024;  // per wake-up: a big answer to many clients interleaves with timers
    while (!c.out.empty() && budget > 0) {
        auto& p = c.out.front();
        const size_t chunk = std::min(budget, p.text->size() - p.offset);
        ssize_t n = send(c.fd, p.text->data() + p.offset, chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        if (n < 0) return close_conn(c.fd);
        c.last_progress_ms = loop_.now_ms();
        p.offset += static_cast<size_t>(n);
        budget -= static_cast<size_t>(n);
        c.out_bytes -= static_cast<size_t>(n);
        if (p.offset == p.text->size()) c.out.pop_front();
    }
    if (c.out.empty() && c.closing) {
        if (c.peer_closed) return close_conn(c.fd);
        if (!c.shut) shutdown(c.fd, SHUT_WR);  // the client reads our answer, then EOF
        c.shut = true;
    }
    const uint32_t events = (c.peer_closed ? 0u : EPOLLIN | EPOLLRDHUP) | (c.out.empty() ? 0u : EPOLLOUT);
    if (events != c.events) {
        c.events = events;
        (void)loop_.modify_fd(c.fd, events);
    }
}

void StatusServer::close_conn(int fd) {
    auto it = conns_.find(fd);
    if (it == conns_.end()) return;
    loop_.remove_fd(fd);
    close(fd);
    conns_.erase(it);
}

void StatusServer::sweep() {
    const uint64_t now = loop_.now_ms();
    std::vector<int> expired;
    for (const auto& [fd, c] : conns_) {
        const uint64_t quiet = now - std::min(now, c->last_progress_ms);
        if (((!c->out.empty() || c->closing) && quiet >= settings_.write_timeout_ms) ||
            quiet >= settings_.idle_timeout_ms)
            expired.push_back(fd);
    }
    for (int fd : expired) {
        if (!conns_[fd]->out.empty()) ++dropped_;
        close_conn(fd);
    }
}

}  // namespace flowshaper::controller
