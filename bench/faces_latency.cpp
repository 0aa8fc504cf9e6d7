// Status socket and /metrics latency, p50 and p99, served from a real EventLoop in this process
// while the loop also runs a simulated daemon poll (busy for --poll-ms every --interval-ms) and a
// fresh snapshot after each poll (so every answer after a poll renders again).
// Clients on other threads ask at random moments. Baseline: {"cmd":"ping"} (no snapshot work).
//
//   build/bench/bench_faces_latency [--clients N] [--heavy N] [--poll-ms MS] [--requests N]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "flowshaper/controller/log.hpp"
#include "flowshaper/controller/metrics_server.hpp"
#include "flowshaper/controller/status_server.hpp"

using namespace flowshaper;
using namespace flowshaper::controller;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
    size_t clients = 10'000;  // rows in Snapshot::clients (top is watching)
    size_t heavy = 200;
    uint64_t poll_ms = 0;  // loop busy per poll (a poll of 100,000 connections: ~100 ms)
    uint64_t interval_ms = 1000;
    int requests = 400;  // per kind
};

SnapshotPtr make_snapshot(const Args& a, uint64_t generation) {
    auto s = std::make_shared<Snapshot>();
    s->taken_unix_ms = 1'760'000'000'000 + generation * a.interval_ms;
    s->policy_path = "/etc/flowshaper/mail.toml";
    DeviceSnapshot d{"eth0", 2, TreeState::InSync, "", {}};
    for (int i = 0; i < 4; ++i)
        d.classes.push_back({"eth0", "f5:" + std::to_string(i + 1), "class " + std::to_string(i),
                             ClassSnapshot::Kind::Policy, "", 1'000'000, 2'000'000, generation * 1000,
                             generation, 0, 0, 0});
    for (size_t i = 0; i < a.heavy; ++i) {
        HeavySnapshot h;
        h.client = net::Address::from_v4(0x0a000000u + static_cast<uint32_t>(i));
        h.rule = "imap";
        h.device = "eth0";
        h.measure = "flow_bytes";
        h.measured = 600'000'000 + generation;
        h.threshold = 500'000'000;
        h.classid = "f5:" + std::to_string(0x100 + i);
        s->heavy.push_back(h);
        d.classes.push_back({"eth0", h.classid, "heavy", ClassSnapshot::Kind::Heavy, "imap", 2'000'000,
                             4'000'000, generation, 1, 0, 0, 1'900'000});
    }
    for (size_t i = 0; i < a.clients; ++i) {
        ClientSnapshot c;
        c.client = net::Address::from_v4(0x0b000000u + static_cast<uint32_t>(i));
        c.to_bits_per_s[0] = i * 1000 + generation;
        c.flows = 2;
        s->clients.push_back(c);
    }
    s->devices.push_back(std::move(d));
    s->heavy_per_rule = {{"imap", a.heavy}};
    s->counters.rule_bytes = {{"imap", generation * 12345}};
    return s;
}

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Round trips of one status-socket request, each on a new connection, at random moments.
std::vector<double> socket_latencies(const std::string& path, const char* request, int n) {
    std::vector<double> out;
    std::mt19937 rng(42);
    for (int i = 0; i < n; ++i) {
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20'000));
        const auto t0 = Clock::now();
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
        if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) std::abort();
        std::string line = std::string(request) + "\n", in;
        (void)!send(fd, line.data(), line.size(), MSG_NOSIGNAL);
        char buf[1 << 16];
        while (in.find('\n') == std::string::npos) {
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r <= 0) std::abort();
            in.append(buf, static_cast<size_t>(r));
        }
        close(fd);
        out.push_back(ms_since(t0));
    }
    return out;
}

std::vector<double> metrics_latencies(uint16_t port, int n) {
    std::vector<double> out;
    std::mt19937 rng(7);
    for (int i = 0; i < n; ++i) {
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20'000));
        const auto t0 = Clock::now();
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in sin{};
        sin.sin_family = AF_INET;
        sin.sin_port = htons(port);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) std::abort();
        const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
        (void)!send(fd, req, sizeof req - 1, MSG_NOSIGNAL);
        char buf[1 << 16];
        while (recv(fd, buf, sizeof buf, 0) > 0) {
        }
        close(fd);
        out.push_back(ms_since(t0));
    }
    return out;
}

void report(const char* what, std::vector<double> v) {
    std::sort(v.begin(), v.end());
    auto at = [&](double q) {
        return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
    };
    std::printf("  %-34s p50 %7.2f ms   p99 %7.2f ms   max %7.2f ms   (%zu requests)\n", what, at(0.5),
                at(0.99), v.back(), v.size());
}

Args parse(int argc, char** argv) {
    Args a;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        const uint64_t v = std::stoull(argv[i + 1]);
        if (k == "--clients")
            a.clients = v;
        else if (k == "--heavy")
            a.heavy = v;
        else if (k == "--poll-ms")
            a.poll_ms = v;
        else if (k == "--interval-ms")
            a.interval_ms = v;
        else if (k == "--requests")
            a.requests = static_cast<int>(v);
    }
    return a;
}

}  // namespace

int main(int argc, char** argv) {
    const Args a = parse(argc, argv);
    char tmpl[] = "/tmp/flowshaper-bench-XXXXXX";
    const std::filesystem::path dir = mkdtemp(tmpl);
    EventLoop loop;
    uint64_t generation = 0;
    SnapshotPtr snap = make_snapshot(a, generation);
    ControlHooks hooks;
    hooks.snapshot = [&] { return snap; };
    auto log = make_memory_logger(std::make_shared<std::vector<std::string>>());
    StatusServerSettings ss;
    ss.path = (dir / "s.sock").string();
    StatusServer status(loop, hooks, ss, log);
    MetricsServer metrics(loop, hooks, {{*net::Address::parse("127.0.0.1"), 0}}, log);
    if (auto s = status.open(); !s) return std::fprintf(stderr, "%s\n", s.error().text().c_str()), 1;
    if (auto s = metrics.open(); !s) return std::fprintf(stderr, "%s\n", s.error().text().c_str()), 1;
    loop.add_timer(a.interval_ms, a.interval_ms, [&] {  // the simulated poll, then a new snapshot
        const auto until = Clock::now() + std::chrono::milliseconds(a.poll_ms);
        while (Clock::now() < until) {
        }
        snap = make_snapshot(a, ++generation);
    });
    std::printf("faces latency: %zu client rows, %zu heavy clients, loop busy %llu ms every %llu ms\n",
                a.clients, a.heavy, static_cast<unsigned long long>(a.poll_ms),
                static_cast<unsigned long long>(a.interval_ms));
    std::vector<double> ping, status_l, clients_l, metrics_l;
    std::atomic<int> done{0};
    std::vector<std::thread> threads;
    threads.emplace_back([&] { ping = socket_latencies(ss.path, R"({"cmd":"ping"})", a.requests), ++done; });
    threads.emplace_back(
        [&] { status_l = socket_latencies(ss.path, R"({"cmd":"status"})", a.requests), ++done; });
    threads.emplace_back(
        [&] { clients_l = socket_latencies(ss.path, R"({"cmd":"clients"})", a.requests), ++done; });
    threads.emplace_back([&] { metrics_l = metrics_latencies(metrics.port(), a.requests), ++done; });
    while (done < 4) (void)loop.run_once(50);
    for (auto& t : threads) t.join();
    report("ping (baseline, no snapshot work)", ping);
    report("status", status_l);
    report("clients (top)", clients_l);
    report("GET /metrics", metrics_l);
    std::filesystem::remove_all(dir);
    return 0;
}
