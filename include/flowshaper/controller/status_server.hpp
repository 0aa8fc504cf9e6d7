// The status socket (`status_socket` in [settings]): a Unix stream socket, mode 0600, served from
// the daemon's event loop. Protocol: JSON lines. Each request is one line, each answer one line:
//   {"cmd":"ping"}     -> {"ok":true,"pong":true,"version":"..."}
//   {"cmd":"status"}   -> {"ok":true,"snapshot":{...}}   (snapshot_json.hpp; "clients" empty)
//   {"cmd":"clients"}  -> {"ok":true,"taken_unix_ms":...,"complete":...,"clients":[...]}
//                         and asks the daemon to fill per-client figures ("watch_ms", default 10 s)
//   {"cmd":"reload"}   -> {"ok":true} or {"ok":false,"diagnostics":[...],"error":"..."}
//   anything else      -> {"ok":false,"error":"..."}
// Answers come from the last snapshot: the socket never waits for the kernel (a reload runs the
// daemon's reload, inside the loop, as SIGHUP does).
//
// Bounds: at most `max_clients` connections (one more is accepted, told so and closed); a request
// line longer than `max_request_bytes` gets an error and the connection is closed; a connection
// whose unread answers pass `max_output_bytes`, or that has not taken any of them for
// `write_timeout_ms`, is dropped; one idle for `idle_timeout_ms` is closed. Identical answers
// (the same snapshot) share one buffer, so memory stays bounded whatever the clients do.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

#include "flowshaper/common/result.hpp"
#include "flowshaper/controller/control.hpp"
#include "flowshaper/controller/event_loop.hpp"
#include "flowshaper/policy/policy.hpp"

namespace spdlog {
class logger;
}

namespace flowshaper::controller {

inline constexpr const char* kDefaultStatusSocket = "/run/flowshaper/flowshaper.sock";

// The socket the daemon serves: the key's value; without the key kDefaultStatusSocket when its
// directory (`default_dir`) exists, else none.
std::optional<std::string> status_socket_path(const policy::Settings& settings,
                                              const std::string& default_dir = "/run/flowshaper");

struct StatusServerSettings {
    std::string path;
    size_t max_clients = 64;
    size_t max_request_bytes = 64 * 1024;
    size_t max_output_bytes = 16 * 1024 * 1024;
    uint64_t write_timeout_ms = 5000;
    uint64_t idle_timeout_ms = 60'000;
    uint64_t default_watch_ms = 10'000;
};

class StatusServer {
public:
    StatusServer(EventLoop& loop, ControlHooks hooks, StatusServerSettings settings,
                 std::shared_ptr<spdlog::logger> log);
    ~StatusServer();  // closes every connection and removes the socket file it created
    StatusServer(const StatusServer&) = delete;
    StatusServer& operator=(const StatusServer&) = delete;

    // Binds and listens. A socket file nobody answers on is replaced; one a live process answers
    // on (another daemon) is an error, and so is a path that is not a socket.
    Status open();
    size_t connections() const { return conns_.size(); }
    uint64_t dropped() const { return dropped_; }  // connections dropped for a bound or timeout

    struct Connection;

private:
    void on_accept();
    void on_event(int fd, uint32_t events);
    void read_from(Connection& c);
    void handle_line(Connection& c, const std::string& line);
    void queue(Connection& c, std::shared_ptr<const std::string> answer);
    void flush(Connection& c);
    void close_conn(int fd);
    void sweep();
    std::shared_ptr<const std::string> answer(const std::string& line);
    std::shared_ptr<const std::string> status_answer();
    std::shared_ptr<const std::string> clients_answer(const nlohmann::json& request);

    EventLoop& loop_;
    ControlHooks hooks_;
    StatusServerSettings settings_;
    std::shared_ptr<spdlog::logger> log_;
    int listen_fd_ = -1;
    bool created_file_ = false;
    EventLoop::TimerId sweep_timer_ = 0;
    std::map<int, std::unique_ptr<Connection>> conns_;
    uint64_t dropped_ = 0;
    // Answers rendered once per snapshot (shared by every connection that asks).
    SnapshotPtr status_for_, clients_for_;
    std::shared_ptr<const std::string> cached_status_, cached_clients_;
};

}  // namespace flowshaper::controller
