// What the daemon's outside faces and flow export add to a poll cycle: controller::Daemon::poll()
// with the real ports over 100,000 conntrack entries (50,000 IPv4 + 50,000 IPv6, 1% carrying the
// prefilter's candidate flag, as bench_conntrack_poll fills them), timed in two twin namespaces
// (same veth, addresses and entries) with a daemon each, polled alternately (x, y, y, x, ...) so
// that the machine's drift hits both alike; medians.
//   (a) snapshots off vs snapshots on with a StatusServer and a MetricsServer on a second
//       EventLoop thread that reads only the published snapshot, queried all along by two
//       client threads ({"cmd":"status"} and GET /metrics, one every --gap-ms each), and what
//       publish() itself takes (the poll's time after the daemon's own measure of it);
//   (b) the same policy without vs with an [[export]] (UDP to a local sink in the namespace),
//       and the export daemon's memory per tracked connection (heap and RSS, before and after
//       its ledger holds every connection).
// Each twice: a whole-table policy (a client_bytes rule: every poll reads all entries) and a
// prefilter policy (a flow_bytes rule: polls read the flagged entries only, unless exporting;
// twice as many polls in (a), which are short). The synthetic entries move no bytes, so they give no
// records (bench_flowrec has the encoder's cost): (b) holds the ledger's work, not the encoding.
//
// Run as root: build/bench/bench_daemon_poll [--entries N] [--polls N] [--gap-ms MS]
// Creates "fst-bench-dp-<pid>-x" and "-y" and deletes them at the end.
#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "conntrack_inject.hpp"
#include "flowshaper/controller/daemon.hpp"
#include "flowshaper/controller/flow_export.hpp"
#include "flowshaper/controller/log.hpp"
#include "flowshaper/controller/metrics_server.hpp"
#include "flowshaper/controller/status_server.hpp"
#include "flowshaper/kernel/real_ports.hpp"
#include "flowshaper/policy/loader.hpp"

using namespace flowshaper;
using namespace flowshaper::controller;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
    uint32_t entries = 100'000;
    int polls = 21;        // timed polls per daemon and scenario
    int gap_ms = 10;       // between two requests of one query thread
    int spacing_ms = 100;  // between two polls
};

uint64_t mono_ms() {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count());
}

void run_or_throw(const std::string& cmd) {
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("failed: " + cmd);
}

// A namespace with a veth pair (fs0 holds 192.0.2.1/24 and fd00:2::1/64, the destinations of
// the entries: this host's end) and the synthetic entries. enter() moves the calling thread in.
class BenchNs {
public:
    BenchNs(const std::string& name, uint32_t entries) : name_(name) {
        run_or_throw("ip netns add " + name_);
        try {
            setup(entries);
        } catch (...) {
            if (fd_ >= 0) close(fd_);
            (void)!std::system(("ip netns del " + name_).c_str());
            throw;
        }
    }
    ~BenchNs() {
        if (fd_ >= 0) close(fd_);
        if (std::system(("ip netns del " + name_).c_str()) != 0)
            std::fprintf(stderr, "ip netns del failed\n");
    }
    BenchNs(const BenchNs&) = delete;
    BenchNs& operator=(const BenchNs&) = delete;
    void enter() const {
        if (setns(fd_, CLONE_NEWNET) != 0) throw std::runtime_error("cannot enter " + name_);
    }
    const std::string& name() const { return name_; }

private:
    void setup(uint32_t entries) {
        const std::string ip = "ip -n " + name_ + " ";
        run_or_throw(ip + "link set lo up && " + ip + "link add fs0 type veth peer name fs1 && " + ip +
                     "link set fs0 up && " + ip + "link set fs1 up && " + ip +
                     "addr add 192.0.2.1/24 dev fs0 && " + ip + "-6 addr add fd00:2::1/64 dev fs0 nodad");
        // The benchmark's own loopback traffic (queries, the export's datagrams) stays out of
        // conntrack: both namespaces hold the same entries.
        run_or_throw(
            "ip netns exec " + name_ +
            " nft 'table inet fstbench { chain pre { type filter hook prerouting priority raw; iif lo "
            "notrack; }; chain out { type filter hook output priority raw; oif lo notrack; }; }'");
        fd_ = open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0) throw std::runtime_error("cannot open namespace " + name_);
        enter();
        fill(entries);
    }
    void fill(uint32_t entries) {
        constexpr uint32_t kCandidateBit = 0x00800000;  // the highest bit of the default mark_mask
        const uint32_t v6 = entries / 2, flagged4 = (entries - v6) / 100, flagged6 = v6 / 100;
        auto a = [](const char* text) { return *net::Address::parse(text); };
        for (const auto& spec : {
                 kernel::SyntheticFlows{entries - v6 - flagged4, a("10.0.0.1"), a("192.0.2.1"), 993, 3600, 0},
                 kernel::SyntheticFlows{flagged4, a("10.128.0.1"), a("192.0.2.1"), 993, 3600, kCandidateBit},
                 kernel::SyntheticFlows{v6 - flagged6, a("fd00:1::1"), a("fd00:2::1"), 993, 3600, 0},
                 kernel::SyntheticFlows{flagged6, a("fd00:1:8000::1"), a("fd00:2::1"), 993, 3600,
                                        kCandidateBit},
             })
            if (auto st = kernel::insert_synthetic_flows(spec); !st)
                throw std::runtime_error(st.error().text());
    }
    std::string name_;
    int fd_ = -1;
};

// The policies: a static cap of 64 clients (a class each: the tree has classes whose counters a
// snapshot reads) and one rule; whole-table (client_bytes) or prefilter (flow_bytes).
std::string policy_text(bool prefilter, bool with_export) {
    std::string t =
        "[settings]\npoll_interval = \"1s\"\non_exit = \"keep\"\n\n"
        "[[interface]]\ndevice = \"fs0\"\nrate = \"1gbit\"\n\n"
        "[[cap]]\nname = \"static\"\ndevice = \"fs0\"\nrate = \"5mbit\"\nclients = [";
    for (int i = 1; i <= 64; ++i)
        t += (i > 1 ? ", \"198.51.100." : "\"198.51.100.") + std::to_string(i) + "\"";
    t += "]\n\n"
         "[[detect]]\nname = \"mailbox\"\ndevice = \"fs0\"\nprotocol = \"tcp\"\nlocal_ports = [993]\n";
    t += prefilter ? "flow_bytes = \"500MB\"\n" : "client_bytes = \"10GB\"\nwindow = \"1m\"\n";
    t += "limit = { rate = \"2mbit\" }\n";
    if (with_export) t += "\n[[export]]\ntarget = \"udp://127.0.0.1:4739\"\n";
    return t;
}

policy::Policy load(const std::string& text) {
    auto r = policy::load_string(text, "bench.toml");
    if (!r.policy) throw std::runtime_error("bench policy: " + r.diagnostics.front().format());
    return std::move(*r.policy);
}

// A poll's wall time and this thread's CPU time in it (user and system: the kernel's walk and
// netlink work run in the thread's own system calls), which the machine's other load hardly
// changes.
struct Times {
    double wall_ms = 0, cpu_ms = 0;
};

double thread_cpu_ms() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// One daemon with its real ports, opened, started and polled inside its namespace.
struct Instance {
    const BenchNs& ns;
    kernel::RealPorts ports;
    std::unique_ptr<Daemon> daemon;
    std::mutex box_mutex;
    SnapshotPtr box;  // the last published snapshot, for the faces' thread
    bool snapshots = false;
    std::vector<double> publish_ms;  // per poll: the time after the daemon's own measure (publish())

    Instance(const BenchNs& n, const std::string& policy, bool with_snapshots,
             std::shared_ptr<spdlog::logger> log)
        : ns(n) {
        ns.enter();
        auto p = kernel::open_real_ports({});
        if (!p) throw std::runtime_error(p.error().text());
        ports = std::move(*p);
        DaemonOptions o;
        o.snapshots = snapshots = with_snapshots;
        o.on_snapshot = [this](SnapshotPtr s) {
            std::lock_guard lock(box_mutex);
            box = std::move(s);
        };
        daemon = std::make_unique<Daemon>(
            load(policy), DaemonPorts{*ports.tc, *ports.mangle, *ports.conntrack, *ports.links},
            std::move(log), o);
        if (auto st = daemon->start(mono_ms()); !st) throw std::runtime_error("start: " + st.error().text());
    }
    ~Instance() {
        ns.enter();
        (void)daemon->stop();
    }
    // One poll, timed (ms); `after` runs inside the timing (the export's loop work).
    Times poll(const std::function<void()>& after = {}) {
        ns.enter();
        const double cpu0 = thread_cpu_ms();
        const auto t0 = Clock::now();
        if (auto st = daemon->poll(mono_ms()); !st)
            std::fprintf(stderr, "poll: %s\n", st.error().text().c_str());
        if (auto snap = daemon->snapshot(); snap && snapshots) {  // the poll measures itself up to publish()
            const double whole = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
            publish_ms.push_back(whole - static_cast<double>(snap->last_poll.duration_us) / 1000.0);
        }
        if (after) after();
        return {std::chrono::duration<double, std::milli>(Clock::now() - t0).count(), thread_cpu_ms() - cpu0};
    }
    ControlHooks hooks() {
        ControlHooks h;
        h.snapshot = [this] {
            std::lock_guard lock(box_mutex);
            return box;
        };
        h.reload = [] {
            ReloadOutcome o;
            o.error = "not in the benchmark";
            return o;
        };
        h.watch_clients = [](uint64_t) {};  // `top` watching changes the poll itself: not measured here
        return h;
    }
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

// Polls x and y alternately (x y, y x, ...) after two untimed polls each; their median times.
std::pair<Times, Times> alternate(Instance& x, Instance& y, int polls, int spacing_ms,
                                  const std::function<void()>& y_after = {}) {
    for (int i = 0; i < 2; ++i) {
        x.poll();
        y.poll(y_after);
    }
    std::vector<Times> tx, ty;
    y.publish_ms.clear();
    for (int i = 0; i < polls; ++i) {
        if (i % 2 == 0) {
            tx.push_back(x.poll());
            ty.push_back(y.poll(y_after));
        } else {
            ty.push_back(y.poll(y_after));
            tx.push_back(x.poll());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(spacing_ms));
    }
    auto medians = [](const std::vector<Times>& v) {
        std::vector<double> wall, cpu;
        for (const auto& t : v) wall.push_back(t.wall_ms), cpu.push_back(t.cpu_ms);
        return Times{median(wall), median(cpu)};
    };
    return {medians(tx), medians(ty)};
}

// Requests the faces answer, in a loop until `stop`: status on the socket, or GET /metrics.
void query_loop(const BenchNs& ns, const std::string& socket_path, uint16_t metrics_port, int gap_ms,
                const std::atomic<bool>& stop, std::atomic<uint64_t>& answered) {
    ns.enter();  // the metrics listener is on the namespace's loopback
    while (!stop) {
        const bool metrics = metrics_port != 0;
        int fd = socket(metrics ? AF_INET : AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        timeval tv{5, 0};  // a request the faces never answer ends the wait, not the benchmark
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        sockaddr_storage ss{};
        socklen_t len = 0;
        if (metrics) {
            auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
            sin->sin_family = AF_INET;
            sin->sin_port = htons(metrics_port);
            sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            len = sizeof *sin;
        } else {
            auto* sun = reinterpret_cast<sockaddr_un*>(&ss);
            sun->sun_family = AF_UNIX;
            std::snprintf(sun->sun_path, sizeof sun->sun_path, "%s", socket_path.c_str());
            len = sizeof *sun;
        }
        if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0) {
            const std::string req = metrics ? "GET /metrics HTTP/1.0\r\n\r\n" : "{\"cmd\":\"status\"}\n";
            (void)!send(fd, req.data(), req.size(), MSG_NOSIGNAL);
            char buf[1 << 16];
            ssize_t n = 0, total = 0;
            bool line = false;
            while (!line && (n = recv(fd, buf, sizeof buf, 0)) > 0) {
                total += n;
                line = !metrics && std::find(buf, buf + n, '\n') != buf + n;
            }
            if (total > 0) ++answered;
        }
        close(fd);
        std::this_thread::sleep_for(std::chrono::milliseconds(gap_ms));
    }
}

void print_pair(const char* x_label, const Times& x, const char* y_label, const Times& y, const char* goal) {
    std::printf("  poll, wall   %-28s %8.1f ms | %-40s %8.1f ms | ratio %.3f (%s)\n", x_label, x.wall_ms,
                y_label, y.wall_ms, x.wall_ms > 0 ? y.wall_ms / x.wall_ms : 0.0, goal);
    std::printf("  poll, CPU    %-28s %8.1f ms | %-40s %8.1f ms | ratio %.3f\n", x_label, x.cpu_ms, y_label,
                y.cpu_ms, x.cpu_ms > 0 ? y.cpu_ms / x.cpu_ms : 0.0);
}

// (a): snapshots off (x) vs snapshots on with both faces served and queried (y).
void faces_scenario(const Args& a, const BenchNs& nx, const BenchNs& ny, bool prefilter,
                    const std::shared_ptr<spdlog::logger>& log) {
    Instance x(nx, policy_text(prefilter, false), false, log);
    Instance y(ny, policy_text(prefilter, false), true, log);
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("fst-bench-dp-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    EventLoop faces_loop;
    StatusServerSettings ss;
    ss.path = (dir / "status.sock").string();
    StatusServer status(faces_loop, y.hooks(), ss, log);
    ny.enter();
    MetricsServer metrics(faces_loop, y.hooks(), {{*net::Address::parse("127.0.0.1"), 0}}, log);
    if (auto st = status.open(); !st) throw std::runtime_error(st.error().text());
    if (auto st = metrics.open(); !st) throw std::runtime_error(st.error().text());
    std::atomic<bool> stop{false}, stop_faces{false};
    std::atomic<uint64_t> answered_status{0}, answered_metrics{0};
    std::thread faces([&] {
        while (!stop_faces) (void)faces_loop.run_once(50);
    });
    std::thread q1([&] { query_loop(ny, ss.path, 0, a.gap_ms, stop, answered_status); });
    std::thread q2([&] { query_loop(ny, "", metrics.port(), a.gap_ms, stop, answered_metrics); });
    const auto [tx, ty] = alternate(x, y, prefilter ? 2 * a.polls : a.polls, a.spacing_ms);
    stop = true;  // the clients first: a request under way still gets its answer
    q1.join();
    q2.join();
    stop_faces = true;
    faces.join();
    std::filesystem::remove_all(dir);
    const auto snap = y.daemon->snapshot();
    std::printf("(a) %s policy, %llu entries a poll (snapshot: %zu classes on fs0)\n",
                prefilter ? "prefilter" : "whole-table",
                static_cast<unsigned long long>(snap ? snap->last_poll.entries : 0),
                snap && !snap->devices.empty() ? snap->devices[0].classes.size() : size_t{0});
    print_pair("snapshots off", tx, "snapshots on, status+metrics served", ty, "goal <= 1.05");
    std::printf("  of which publishing the snapshot (after the poll's own measure): %.2f ms\n",
                median(y.publish_ms));
    std::printf("  answered meanwhile: %llu status requests, %llu GET /metrics\n",
                static_cast<unsigned long long>(answered_status.load()),
                static_cast<unsigned long long>(answered_metrics.load()));
}

// The control: the same daemon (snapshots off) in both namespaces; how far from 1 a ratio of this
// bench strays when nothing differs (the machine's noise, the namespaces' own differences).
void control_scenario(const Args& a, const BenchNs& nx, const BenchNs& ny,
                      const std::shared_ptr<spdlog::logger>& log) {
    Instance x(nx, policy_text(false, false), false, log);
    Instance y(ny, policy_text(false, false), false, log);
    const auto [tx, ty] = alternate(x, y, a.polls, a.spacing_ms);
    std::printf("(control) whole-table policy, the same daemon in both namespaces\n");
    print_pair("snapshots off", tx, "snapshots off", ty, "1 but for noise");
}

struct Memory {
    size_t heap = 0, rss = 0;
};

Memory memory_now() {
    malloc_trim(0);
    Memory m;
    m.heap = mallinfo2().uordblks;
    long pages = 0, resident = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        std::fclose(f);
    }
    m.rss = static_cast<size_t>(resident) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return m;
}

// A UDP collector that only counts what arrives (a thread in the namespace).
class Sink {
public:
    explicit Sink(const BenchNs& ns) {
        ns.enter();
        fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_in sin{};
        sin.sin_family = AF_INET;
        sin.sin_port = htons(4739);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        timeval tv{0, 100'000};
        setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (bind(fd_, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0)
            throw std::runtime_error("sink bind");
        thread_ = std::thread([this] {
            char buf[65536];
            while (!stop_)
                if (recv(fd_, buf, sizeof buf, 0) > 0) ++datagrams_;
        });
    }
    ~Sink() {
        stop_ = true;
        thread_.join();
        close(fd_);
    }
    uint64_t datagrams() const { return datagrams_; }

private:
    int fd_ = -1;
    std::atomic<bool> stop_{false};
    std::atomic<uint64_t> datagrams_{0};
    std::thread thread_;
};

// (b): the same policy without (x) and with (y) an [[export]]; y's memory per connection.
void export_scenario(const Args& a, const BenchNs& nx, const BenchNs& ny, bool prefilter,
                     const std::shared_ptr<spdlog::logger>& log) {
    Sink sink(ny);
    Instance x(nx, policy_text(prefilter, false), false, log);
    Instance y(ny, policy_text(prefilter, true), false, log);
    EventLoop loop;
    FlowExport flows(loop, *log, [&y](uint32_t mark) { return y.daemon->dscp_of(mark); });
    ny.enter();
    if (auto st = flows.open(y.daemon->policy().exports, y.daemon->poll_interval_ms()); !st)
        throw std::runtime_error(st.error().text());
    for (int i = 0; i < 2; ++i) {  // the detector's state, before the ledger's
        x.poll();
        y.poll();
    }
    const Memory before = memory_now();
    y.daemon->add_reader(&flows);
    auto loop_work = [&loop] { (void)loop.run_once(0); };
    for (int i = 0; i < 2; ++i) y.poll(loop_work);
    const Memory after = memory_now();
    const auto [tx, ty] = alternate(x, y, a.polls, a.spacing_ms, loop_work);
    std::printf("(b) %s policy\n", prefilter ? "prefilter" : "whole-table");
    print_pair(prefilter ? "no export (prefilter)" : "no export", tx,
               prefilter ? "[[export]] (whole table)" : "[[export]]", ty, "goal <= 1.3");
    const double n = a.entries;
    if (!prefilter)  // (with the prefilter, the first whole-table polls also grow the detector's state)
        std::printf(
            "  export daemon memory per tracked connection: heap %+.0f B, RSS %+.0f B (%u connections)\n",
            (static_cast<double>(after.heap) - static_cast<double>(before.heap)) / n,
            (static_cast<double>(after.rss) - static_cast<double>(before.rss)) / n, a.entries);
    std::printf("  sink received %llu datagrams\n", static_cast<unsigned long long>(sink.datagrams()));
}

Args parse(int argc, char** argv) {
    Args a;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        const int v = std::atoi(argv[i + 1]);
        if (k == "--entries")
            a.entries = static_cast<uint32_t>(v);
        else if (k == "--polls")
            a.polls = v;
        else if (k == "--gap-ms")
            a.gap_ms = v;
        else if (k == "--spacing-ms")
            a.spacing_ms = v;
    }
    return a;
}

}  // namespace

int main(int argc, char** argv) {
    const Args a = parse(argc, argv);
    try {
        auto log = make_stderr_logger(false);
        log->set_level(spdlog::level::warn);
        const std::string base = "fst-bench-dp-" + std::to_string(getpid());
        BenchNs x(base + "-x", a.entries), y(base + "-y", a.entries);
        std::printf(
            "daemon poll cost: %u conntrack entries in each of %s and %s, %d timed polls each, medians\n",
            a.entries, x.name().c_str(), y.name().c_str(), a.polls);
        control_scenario(a, x, y, log);
        for (bool prefilter : {false, true}) faces_scenario(a, x, y, prefilter, log);
        for (bool prefilter : {false, true}) export_scenario(a, x, y, prefilter, log);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_daemon_poll: %s\n", e.what());
        return 1;
    }
    return 0;
}
