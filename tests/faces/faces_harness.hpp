// A status server on a real EventLoop in the test's own thread, fake ControlHooks, and blocking
// clients for other threads. The loop carries a periodic 20 ms timer; the harness measures the
// loop's own CPU per round and between two ticks, which shows whether serving ever held the loop
// up without depending on how fast the machine is or what else runs on it (wall-clock gaps are
// reported, not checked: on a loaded 2-core machine or an emulated one they measure preemption).
//
// Deadlines here are hang guards (kHangGuardMs), never what a test passes on.
#pragma once

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "faces_support.hpp"
#include "flowshaper/controller/log.hpp"
#include "flowshaper/controller/status_server.hpp"

namespace flowshaper::faces_test {

// How long a faces test waits before it calls a hang a failure: minutes, not what a quick machine
// needs (milliseconds); ASan at -O0 on an emulated machine is ~100x slower than a Release build.
inline constexpr int kHangGuardMs = 180'000;

struct TempDir {
    std::filesystem::path path;
    TempDir() {
        char tmpl[] = "/tmp/flowshaper-faces-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

// A blocking client: -1 fd when connect failed (errno kept in `error`).
struct Client {
    int fd = -1;
    int error = 0;
    std::string in;
    explicit Client(const std::string& path) {
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            error = errno;
            close(fd);
            fd = -1;
        }
    }
    ~Client() {
        if (fd >= 0) close(fd);
    }
    bool send_all(const std::string& data) {
        for (size_t sent = 0; sent < data.size();) {
            ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
            if (n <= 0) return false;
            sent += static_cast<size_t>(n);
        }
        return true;
    }
    // One line (without '\n'), "" on EOF, error or timeout (a hang guard: EOF ends it at once).
    std::string read_line(int timeout_ms = kHangGuardMs) {
        if (fd < 0) return "";
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        for (size_t scanned = 0;;) {  // only what arrived since the last look is searched
            if (auto nl = in.find('\n', scanned); nl != std::string::npos) {
                std::string line = in.substr(0, nl);
                in.erase(0, nl + 1);
                return line;
            }
            scanned = in.size();
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            pollfd p{fd, POLLIN, 0};
            if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) return "";
            char buf[65536];
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n <= 0) return "";
            in.append(buf, static_cast<size_t>(n));
        }
    }
    nlohmann::json ask(const std::string& request) {
        if (!send_all(request + "\n")) return nullptr;
        std::string line = read_line();
        return line.empty() ? nlohmann::json(nullptr) : nlohmann::json::parse(line, nullptr, false);
    }
    // True when the server closed the connection (EOF or reset) within the time.
    bool closed_by_peer(int timeout_ms = kHangGuardMs) {
        for (std::string line; !(line = read_line(timeout_ms)).empty();) {
        }
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 0) <= 0) return false;
        char c;
        return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
    }
};

// The calling thread's CPU time (microseconds): work done, not time spent off the CPU.
inline uint64_t thread_cpu_us() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

// Monotonic milliseconds, as the EventLoop's default clock.
inline uint64_t mono_ms() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
}

// A plain HTTP/1.0 GET to 127.0.0.1:port: the whole response, or "" when the connect failed.
inline std::string http_get(uint16_t port, const std::string& target) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::string out;
    if (connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0) {
        const std::string req = "GET " + target + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        (void)!send(fd, req.data(), req.size(), MSG_NOSIGNAL);
        char buf[65536];
        for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<size_t>(n));
    }
    close(fd);
    return out;
}

struct Harness {
    TempDir dir;
    uint64_t waited_ms = 0;  // time inside epoll_wait (the rest of a round is the loop's own work)
    controller::EventLoop loop{{}, [this](int epfd, epoll_event* ev, int max, int timeout) {
                                   const uint64_t t0 = mono_ms();
                                   int n = epoll_wait(epfd, ev, max, timeout);
                                   waited_ms += mono_ms() - t0;
                                   return n;
                               }};
    // Measured over the rounds run_until ran since the harness started or reset_measures():
    uint64_t worst_busy_ms = 0;      // the longest round's own work (wall clock: preemption inflates it)
    uint64_t worst_cpu_us = 0;       // the longest round's CPU time (what preemption does not inflate)
    uint64_t cpu_us = 0;             // the loop's CPU time in all rounds
    uint64_t worst_tick_cpu_us = 0;  // the most loop CPU spent between two ticks of the timer
    std::shared_ptr<const controller::Snapshot> snap;
    int reloads = 0;
    uint64_t watched_ms = 0;
    controller::ReloadOutcome next_reload{true, {}, ""};
    std::unique_ptr<controller::StatusServer> server;
    std::string path;
    uint64_t last_tick_ms = 0, worst_gap_ms = 0;
    size_t peak_heap = 0, base_heap = 0;

    explicit Harness(controller::StatusServerSettings settings = {}, size_t heavy_clients = 2)
        : snap(std::make_shared<const controller::Snapshot>(sample_snapshot(heavy_clients))) {
        path = (dir.path / "flowshaper.sock").string();
        settings.path = path;
        controller::ControlHooks hooks;
        hooks.snapshot = [this] { return snap; };
        hooks.reload = [this] {
            ++reloads;
            return next_reload;
        };
        hooks.watch_clients = [this](uint64_t ms) { watched_ms = ms; };
        auto lines = std::make_shared<std::vector<std::string>>();
        server = std::make_unique<controller::StatusServer>(loop, hooks, settings,
                                                            controller::make_memory_logger(lines));
        auto opened = server->open();
        INFO((opened.ok() ? "" : opened.error().text()));
        REQUIRE(opened.ok());
        base_heap = peak_heap = mallinfo2().uordblks;
        last_tick_ms = loop.now_ms();
        loop.add_timer(20, 20, [this] {
            const uint64_t now = loop.now_ms();
            worst_gap_ms = std::max(worst_gap_ms, now - last_tick_ms);
            last_tick_ms = now;
            const uint64_t cpu_now = cpu_us + (thread_cpu_us() - round_cpu0_);
            worst_tick_cpu_us = std::max(worst_tick_cpu_us, cpu_now - last_tick_cpu_);
            last_tick_cpu_ = cpu_now;
            peak_heap = std::max(peak_heap, mallinfo2().uordblks);
        });
    }
    // Runs the loop until `done()` or the timeout (a hang guard); false on timeout.
    bool run_until(const std::function<bool()>& done, int timeout_ms = kHangGuardMs) {
        const uint64_t end = loop.now_ms() + static_cast<uint64_t>(timeout_ms);
        while (!done()) {
            if (loop.now_ms() > end) return false;
            const uint64_t t0 = mono_ms(), w0 = waited_ms;
            round_cpu0_ = thread_cpu_us();
            (void)loop.run_once(10);
            const uint64_t round_cpu = thread_cpu_us() - round_cpu0_;
            cpu_us += round_cpu;
            worst_cpu_us = std::max(worst_cpu_us, round_cpu);
            worst_busy_ms = std::max(worst_busy_ms, mono_ms() - t0 - (waited_ms - w0));
        }
        return true;
    }
    // Starts the measures above afresh (the timer's next gap counts from now).
    void reset_measures() {
        worst_busy_ms = worst_cpu_us = cpu_us = worst_tick_cpu_us = worst_gap_ms = 0;
        last_tick_cpu_ = 0;
        last_tick_ms = loop.now_ms();
    }
    // The timer ran whenever it was due, whatever serving did: between two ticks the loop spent at
    // most one period (20 ms) of CPU in rounds that ended before the deadline, plus the round that
    // crossed it and the rest of the round before (1 ms for the measuring itself). True of a loop
    // that runs due timers every round, however slow the machine; a loop that starved its timers
    // while descriptors were ready would spend all of its serving between two ticks.
    bool timer_kept_up() const { return worst_tick_cpu_us <= 20'000 + 2 * worst_cpu_us + 1'000; }

private:
    uint64_t round_cpu0_ = 0;     // the thread's CPU time when the current round began
    uint64_t last_tick_cpu_ = 0;  // the loop's CPU (cpu_us + the current round's) at the last tick
};

}  // namespace flowshaper::faces_test
