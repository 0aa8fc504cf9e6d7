// The metrics endpoint: libmicrohttpd in external-epoll mode inside the daemon's EventLoop (no
// thread of its own). GET /metrics answers render_metrics() of the last snapshot (rendered once
// per snapshot); other paths get 404. The listening socket is made here so that an address in
// use is a clear start-up error.
#pragma once

#include <memory>
#include <string>

#include "flowshaper/common/result.hpp"
#include "flowshaper/controller/control.hpp"
#include "flowshaper/controller/event_loop.hpp"
#include "flowshaper/policy/policy.hpp"

struct MHD_Daemon;
namespace spdlog {
class logger;
}

namespace flowshaper::controller {

struct MetricsServerSettings {
    policy::Settings::Listen listen;
    unsigned max_connections = 64;
    unsigned connection_timeout_s = 10;
};

class MetricsServer {
public:
    MetricsServer(EventLoop& loop, ControlHooks hooks, MetricsServerSettings settings,
                  std::shared_ptr<spdlog::logger> log);
    ~MetricsServer();
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;

    Status open();
    uint16_t port() const { return port_; }  // the bound port (useful with port 0 in tests)
    std::string address() const;             // "127.0.0.1:9469", "[::1]:9469"

    // Internal: libmicrohttpd's request callback lands here.
    const std::string* metrics_text();

private:
    void run();  // MHD_run, then the next timeout as a loop timer

    EventLoop& loop_;
    ControlHooks hooks_;
    MetricsServerSettings settings_;
    std::shared_ptr<spdlog::logger> log_;
    int listen_fd_ = -1;
    uint16_t port_ = 0;
    MHD_Daemon* mhd_ = nullptr;
    int epoll_fd_ = -1;
    EventLoop::TimerId timer_ = 0;
    SnapshotPtr cached_for_;
    std::string cached_text_;
};

}  // namespace flowshaper::controller
