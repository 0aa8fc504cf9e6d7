#include "flowshaper/controller/metrics_server.hpp"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <spdlog/logger.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "flowshaper/controller/metrics.hpp"

namespace flowshaper::controller {

namespace {

MHD_Result reply(MHD_Connection* connection, unsigned status, const std::string& body, const char* type) {
    MHD_Response* response =
        MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
    if (!response) return MHD_NO;
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_Result ret = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return ret;
}

MHD_Result on_request(void* cls, MHD_Connection* connection, const char* url, const char* method,
                      const char* /*version*/, const char* /*upload*/, size_t* upload_size,
                      void** /*state*/) {
    auto* server = static_cast<MetricsServer*>(cls);
    if (*upload_size != 0) {
        *upload_size = 0;  // a body is not expected: ignore it
        return MHD_YES;
    }
    if (std::strcmp(method, "GET") != 0 && std::strcmp(method, "HEAD") != 0)
        return reply(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n", "text/plain");
    if (std::strcmp(url, "/metrics") != 0)
        return reply(connection, MHD_HTTP_NOT_FOUND, "flowshaper: metrics are at /metrics\n", "text/plain");
    const std::string* text = server->metrics_text();
    if (!text) return reply(connection, MHD_HTTP_SERVICE_UNAVAILABLE, "no snapshot yet\n", "text/plain");
    return reply(connection, MHD_HTTP_OK, *text, kMetricsContentType);
}

// A bound, listening TCP socket, or the error saying why not.
Result<int> listen_on(const policy::Settings::Listen& listen, const std::string& shown) {
    sockaddr_storage ss{};
    socklen_t len;
    const bool v4 = listen.address.family == net::Family::V4;
    if (v4) {
        auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
        sin->sin_family = AF_INET;
        sin->sin_port = htons(listen.port);
        std::memcpy(&sin->sin_addr, listen.address.bytes.data(), 4);
        len = sizeof *sin;
    } else {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(listen.port);
        std::memcpy(&sin6->sin6_addr, listen.address.bytes.data(), 16);
        len = sizeof *sin6;
    }
    int fd = socket(v4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return make_error("open metrics listener", shown, errno, std::strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, 64) != 0) {
        const int err = errno;
        close(fd);
        std::string hint = err == EADDRINUSE      ? " (another process listens there: change metrics_listen)"
                           : err == EADDRNOTAVAIL ? " (no interface has this address)"
                                                  : "";
        return make_error("listen for metrics on", shown, err, std::strerror(err) + hint);
    }
    return fd;
}

}  // namespace

MetricsServer::MetricsServer(EventLoop& loop, ControlHooks hooks, MetricsServerSettings settings,
                             std::shared_ptr<spdlog::logger> log)
    : loop_(loop), hooks_(std::move(hooks)), settings_(settings), log_(std::move(log)) {}

MetricsServer::~MetricsServer() {
    if (timer_) loop_.cancel_timer(timer_);
    if (epoll_fd_ >= 0) loop_.remove_fd(epoll_fd_);
    if (mhd_)
        MHD_stop_daemon(mhd_);  // closes the listening socket it was given
    else if (listen_fd_ >= 0)
        close(listen_fd_);
}

std::string MetricsServer::address() const {
    const auto& l = settings_.listen;
    // Appended piece by piece: "[" + str would trip GCC 12's -Wrestrict false positive (bug 105651).
    std::string out;
    if (l.address.family == net::Family::V6) out += '[';
    out += l.address.str();
    if (l.address.family == net::Family::V6) out += ']';
    out += ':';
    out += std::to_string(port_ ? port_ : l.port);
    return out;
}

Status MetricsServer::open() {
    auto fd = listen_on(settings_.listen, address());
    if (!fd) return fd.error();
    listen_fd_ = *fd;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0)
        port_ = ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                              : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    const unsigned flags = MHD_USE_EPOLL | MHD_USE_SUPPRESS_DATE_NO_CLOCK |
                           (settings_.listen.address.family == net::Family::V6 ? MHD_USE_IPv6 : 0);
    mhd_ = MHD_start_daemon(flags, 0, nullptr, nullptr, &on_request, this, MHD_OPTION_LISTEN_SOCKET,
                            listen_fd_, MHD_OPTION_CONNECTION_LIMIT, settings_.max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, settings_.connection_timeout_s, MHD_OPTION_END);
    if (!mhd_) return make_error("start metrics server", address(), 0, "libmicrohttpd refused to start");
    const MHD_DaemonInfo* info = MHD_get_daemon_info(mhd_, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info || info->epoll_fd < 0)
        return make_error("start metrics server", address(), 0, "no epoll descriptor");
    epoll_fd_ = info->epoll_fd;
    if (auto s = loop_.add_fd(epoll_fd_, EPOLLIN, [this](uint32_t) { run(); }); !s) return s;
    return {};
}

void MetricsServer::run() {
    MHD_run(mhd_);
    MHD_UNSIGNED_LONG_LONG timeout_ms = 0;
    if (MHD_get_timeout(mhd_, &timeout_ms) != MHD_YES) return;
    // One pending timer at a time: the earliest deadline MHD asked for.
    if (timer_) loop_.cancel_timer(timer_);
    timer_ = loop_.add_timer(timeout_ms, 0, [this] {
        timer_ = 0;
        run();
    });
}

const std::string* MetricsServer::metrics_text() {
    SnapshotPtr snap = hooks_.snapshot ? hooks_.snapshot() : nullptr;
    if (!snap) return nullptr;
    if (snap != cached_for_) {
        cached_text_ = render_metrics(*snap);
        cached_for_ = std::move(snap);
    }
    return &cached_text_;
}

}  // namespace flowshaper::controller
