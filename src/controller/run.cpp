// `flowshaper run`: the daemon's process. One EventLoop over the poll timer, the conntrack event
// socket, the signals and whatever outside faces the policy switches on; the Daemon does the work.
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

#include "flowshaper/controller/audit_log.hpp"
#include "flowshaper/controller/client_watch.hpp"
#include "flowshaper/controller/control.hpp"
#include "flowshaper/controller/daemon.hpp"
#include "flowshaper/controller/drift_repair.hpp"
#include "flowshaper/controller/event_loop.hpp"
#include "flowshaper/controller/flow_export.hpp"
#include "flowshaper/controller/instance_lock.hpp"
#include "flowshaper/controller/log.hpp"
#include "flowshaper/controller/metrics_server.hpp"
#include "flowshaper/controller/service_notify.hpp"
#include "flowshaper/controller/status_server.hpp"
#include "flowshaper/controller/task_queue.hpp"
#include "flowshaper/kernel/mangle_backend.hpp"
#include "flowshaper/kernel/real_ports.hpp"
#include "flowshaper/policy/loader.hpp"

namespace flowshaper::controller {

namespace {

uint64_t wall_ms() {
    using namespace std::chrono;
    return static_cast<uint64_t>(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) close(fd_);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }

private:
    int fd_;
};

// The policy file's checksum (CRC-32 of its bytes), so that `status` tells which version runs.
std::string file_checksum(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    std::string bytes = text.str();
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size()));
    char out[16];
    std::snprintf(out, sizeof out, "crc32:%08lx", crc);
    return out;
}

std::string status_line(const Daemon& daemon) {
    auto snap = daemon.snapshot();
    if (!snap) return "starting";
    size_t in_sync = 0;
    for (const auto& d : snap->devices) in_sync += d.state == TreeState::InSync;
    return std::to_string(snap->heavy.size()) + " heavy clients, " + std::to_string(in_sync) + "/" +
           std::to_string(snap->devices.size()) + " devices in sync, last poll " +
           std::to_string(snap->last_poll.entries) + " connections in " +
           std::to_string(snap->last_poll.duration_us / 1000) + " ms";
}

// Exact flow start and end times for the records (connections created from now on).
void export_timestamps(spdlog::logger& log) {
    auto ts = kernel::enable_conntrack_timestamps();
    if (!ts)
        log.warn("export: conntrack timestamps: {}; records use the poll times", ts.error().text());
    else if (!*ts)
        log.info(
            "export: switched conntrack timestamps on (net.netfilter.nf_conntrack_timestamp=1) for exact "
            "flow start and end times; it stays on after exit");
}

// The last snapshot, handed from the daemon's thread to the faces' thread.
class SnapshotBox {
public:
    void set(SnapshotPtr s) {
        std::lock_guard lock(mutex_);
        snap_ = std::move(s);
    }
    SnapshotPtr get() const {
        std::lock_guard lock(mutex_);
        return snap_;
    }

private:
    mutable std::mutex mutex_;
    SnapshotPtr snap_;
};

// Everything the process owns besides the ports: the daemon's loop, the faces' loop and thread
// (the status socket and the metrics answer from the last snapshot while the daemon's thread is
// busy with a long poll, a big apply or a wait for the xtables lock), systemd's channel.
struct Process {
    std::string path;
    spdlog::logger& log;
    Daemon& daemon;
    EventLoop loop;
    ServiceNotify notify;
    EventLoop::TimerId poll_timer = 0;
    ClientWatch clients{};  // {}: -Wmissing-field-initializers on Process p{...} below
    std::unique_ptr<AuditLog> audit{};
    std::unique_ptr<DriftRepair> drift{};
    std::unique_ptr<StatusServer> status{};
    std::unique_ptr<MetricsServer> metrics{};
    std::unique_ptr<FlowExport> flows{};
    EventLoop faces_loop{};
    TaskQueue daemon_tasks{loop};       // work for the daemon's thread (a reload asked on the socket)
    TaskQueue faces_tasks{faces_loop};  // work for the faces' thread (stop)
    SnapshotBox box{};
    std::thread faces_thread{};

    uint64_t now() const { return loop.now_ms(); }

    // Called on the faces' thread: they read the box and post work; never the Daemon itself.
    ControlHooks hooks() {
        ControlHooks h;
        h.snapshot = [this] { return box.get(); };
        h.reload = [this] {
            auto done = std::make_shared<std::promise<ReloadOutcome>>();
            auto answer = done->get_future();
            bool posted = daemon_tasks.post([this, done](bool run) {
                ReloadOutcome stopping;
                stopping.error = "the daemon is stopping";
                done->set_value(run ? reload() : stopping);
            });
            if (!posted || answer.wait_for(std::chrono::seconds(120)) != std::future_status::ready) {
                ReloadOutcome out;
                out.error = posted ? "the daemon did not answer within 120 s" : "the daemon is stopping";
                return out;
            }
            return answer.get();
        };
        h.watch_clients = [this](uint64_t for_ms) { clients.watch(loop.now_ms(), for_ms); };
        return h;
    }

    Status start_faces() {
        if (!status && !metrics) return {};
        if (auto st = faces_tasks.open(); !st) return st;
        faces_thread = std::thread([this] {
            auto st =
                faces_loop.run([this](const Error& e) { log.error("status/metrics loop: {}", e.text()); });
            if (!st) log.error("status/metrics loop gave up: {}", st.error().text());
        });
        return {};
    }

    void stop_faces() {
        daemon_tasks.close();  // a reload waiting on the socket gets "stopping"
        if (faces_thread.joinable()) {
            faces_tasks.post([this](bool) { faces_loop.stop(); });
            faces_thread.join();
        }
        status.reset();
        metrics.reset();
    }

    void write_audit(const AuditEvent& event) {
        if (!audit) return;
        if (auto st = audit->write(event); !st)
            log.error("audit trail {}: {}", audit->path(), st.error().text());
    }

    // The outside faces the policy asks for; a failure is a start-up error.
    Status open_faces(const policy::Settings& settings, const std::shared_ptr<spdlog::logger>& shared_log) {
        if (auto path = status_socket_path(settings)) {
            StatusServerSettings ss;
            ss.path = *path;
            status = std::make_unique<StatusServer>(faces_loop, hooks(), ss, shared_log);
            if (auto st = status->open(); !st) return st;
            log.info("status socket: {}", *path);
        }
        if (settings.metrics_listen) {
            MetricsServerSettings ms;
            ms.listen = *settings.metrics_listen;
            metrics = std::make_unique<MetricsServer>(faces_loop, hooks(), ms, shared_log);
            if (auto st = metrics->open(); !st) return st;
            log.info("metrics: http://{}/metrics", metrics->address());
        }
        return {};
    }

    ReloadOutcome reload() {
        ReloadOutcome out;
        log.info("reloading {}", path);
        notify.reloading();
        auto loaded = policy::load_file(path);
        for (const auto& d : loaded.diagnostics) {
            out.diagnostics.push_back(d.format());
            log.error("{}", d.format());
        }
        if (!loaded.policy) {
            out.error = "the policy has errors; keeping the one that runs";
            log.error("reload: {}", out.error);
            daemon.reload_rejected(out.diagnostics.empty() ? out.error : out.diagnostics.front(), now());
        } else if (auto st = daemon.reload(std::move(*loaded.policy), now()); !st) {
            out.error = st.error().text();
            log.error("reload: {}", out.error);
            out.ok = false;
        } else {
            out.ok = true;
            daemon.set_policy_source(path, file_checksum(path), wall_ms());
            loop.reset_timer(poll_timer, daemon.poll_interval_ms());
            if (auto st = reload_exports(); !st) {
                out.ok = false;
                out.error = st.error().text();
                log.error("reload: {}", out.error);
            }
        }
        notify.ready(status_line(daemon));
        return out;
    }

    // [[export]] follows a reload: unchanged targets keep counting, removed ones end their
    // records, new ones open (the first also switches conntrack timestamps on).
    Status reload_exports() {
        const auto& exports = daemon.policy().exports;
        if (!flows) {
            if (exports.empty()) return {};
            flows = std::make_unique<FlowExport>(loop, log,
                                                 [this](uint32_t mark) { return daemon.dscp_of(mark); });
            daemon.add_reader(flows.get());
            export_timestamps(log);
            log.info(
                "export: the conntrack event buffer keeps its start size until a restart (16 MiB when the "
                "policy at start has [[export]])");
        }
        return flows->reconfigure(exports, daemon.poll_interval_ms());
    }

    void on_signal(int fd) {
        signalfd_siginfo info{};
        while (read(fd, &info, sizeof info) == sizeof info) {
            if (info.ssi_signo == SIGHUP) {
                (void)reload();
            } else if (info.ssi_signo == SIGUSR1) {
                if (audit) {
                    if (auto st = audit->reopen(); !st)
                        log.error("audit trail {}: reopen: {}", audit->path(), st.error().text());
                    else
                        log.info("audit trail {} reopened", audit->path());
                }
            } else {
                log.info("{}: stopping", strsignal(static_cast<int>(info.ssi_signo)));
                loop.stop();
                return;
            }
        }
    }

    void on_poll() {
        if (auto st = daemon.poll(now()); !st) log.warn("poll: {}", st.error().text());
        if (drift) drift->after_poll();
        notify.status(status_line(daemon));
    }
};

Status watch(Process& p, kernel::ConntrackPort& conntrack, int signal_fd) {
    if (!p.loop.valid()) return make_error("event loop", "epoll", errno, std::strerror(errno));
    if (auto st = p.loop.add_fd(signal_fd, EPOLLIN, [&p, signal_fd](uint32_t) { p.on_signal(signal_fd); });
        !st)
        return st;
    if (conntrack.event_fd() >= 0) {
        auto st = p.loop.add_fd(conntrack.event_fd(), EPOLLIN, [&p](uint32_t) {
            if (auto e = p.daemon.on_conntrack_events(p.now()); !e)
                p.log.warn("events: {}", e.error().text());
        });
        if (!st) return st;
    }
    uint64_t interval = p.daemon.poll_interval_ms();
    p.poll_timer = p.loop.add_timer(interval, interval, [&p] { p.on_poll(); });
    if (uint64_t wd = p.notify.watchdog_interval_ms()) p.loop.add_timer(0, wd, [&p] { p.notify.watchdog(); });
    return {};
}

}  // namespace

int run_daemon(const std::string& policy_path, bool force) {
    auto log = make_stderr_logger();
    auto loaded = policy::load_file(policy_path);
    for (const auto& d : loaded.diagnostics) log->error("{}", d.format());
    if (!loaded.policy) return 1;
    // Signals go to the signalfd, from before the first kernel change on.
    sigset_t mask;
    sigemptyset(&mask);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&mask, s);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    Fd sig(signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
    if (sig.get() < 0) {
        log->error("signalfd: {}", std::strerror(errno));
        return 1;
    }

    // Before any kernel change: one daemon per network namespace.
    auto lock = InstanceLock::acquire();
    if (!lock) {
        log->error("{}", lock.error().text());
        return 1;
    }
    const auto settings = loaded.policy->settings;
    auto choice = kernel::choose_backend(settings.firewall, kernel::probe_backends());
    kernel::RealPortsOptions popts;
    popts.firewall = settings.firewall;
    if (!loaded.policy->exports.empty()) popts.event_rcvbuf_bytes = 16 * 1024 * 1024;
    auto ports = kernel::open_real_ports(popts);
    if (!ports) {
        log->error("{}", ports.error().text());
        return 1;
    }
    log->info("firewall: {} ({})", ports->mangle->backend(), choice.reason);
    DaemonOptions options;
    options.force = force;
    options.firewall = ports->mangle->backend() + ": " + choice.reason;
    Process* process = nullptr;
    options.audit = [&process](const AuditEvent& e) {
        if (process) process->write_audit(e);
    };
    // Snapshots cost a read of every class's counters per poll: only when someone reads them.
    const char* notify_socket = std::getenv("NOTIFY_SOCKET");
    options.snapshots = status_socket_path(settings).has_value() || settings.metrics_listen.has_value() ||
                        (notify_socket && *notify_socket);
    options.on_snapshot = [&process](SnapshotPtr s) {
        if (process) process->box.set(std::move(s));
    };
    Daemon daemon(std::move(*loaded.policy), {*ports->tc, *ports->mangle, *ports->conntrack, *ports->links},
                  log, options);
    daemon.set_policy_source(policy_path, file_checksum(policy_path), wall_ms());
    Process p{policy_path, *log, daemon, EventLoop(), ServiceNotify()};
    process = &p;
    struct FacesGuard {
        Process& p;
        ~FacesGuard() { p.stop_faces(); }
    } faces_guard{p};
    daemon.add_reader(&p.clients);
    if (!daemon.policy().exports.empty()) {
        p.flows = std::make_unique<FlowExport>(p.loop, *log,
                                               [&daemon](uint32_t mark) { return daemon.dscp_of(mark); });
        if (auto st = p.flows->open(daemon.policy().exports, daemon.poll_interval_ms()); !st) {
            log->error("start: {}", st.error().text());
            return 1;
        }
        daemon.add_reader(p.flows.get());
        if (daemon.policy().interfaces.empty() && daemon.policy().detects.empty() &&
            daemon.policy().caps.empty())
            log->info(
                "export only: no interface, cap or detect rule; conntrack accounting is switched on for the "
                "records");
    }
    if (settings.audit_log) {
        p.audit = std::make_unique<AuditLog>(*settings.audit_log);
        if (auto st = p.audit->open(); !st) {
            log->error("audit trail {}: {}", *settings.audit_log, st.error().text());
            return 1;
        }
    }
    if (auto st = watch(p, *ports->conntrack, sig.get()); !st) {
        log->error("event loop setup: {}", st.error().text());
        return 1;
    }
    // The faces open before the first kernel change: a socket of another running daemon or a
    // metrics address in use stops this one before it touches anything.
    if (auto st = p.open_faces(settings, log); !st) {
        log->error("start: {}", st.error().text());
        return 1;
    }
    if (auto st = p.daemon_tasks.open(); !st) {
        log->error("event loop setup: {}", st.error().text());
        return 1;
    }
    // Until the first apply is done (a 10,000-client tree takes seconds), the socket and the
    // metrics answer from this: who runs, since when, which policy; no device, no heavy client.
    {
        auto first = std::make_shared<Snapshot>();
        first->taken_unix_ms = first->started_unix_ms = first->policy_loaded_unix_ms = wall_ms();
        first->policy_path = policy_path;
        first->policy_checksum = file_checksum(policy_path);
        first->firewall = options.firewall;
        first->poll_interval_ms = daemon.poll_interval_ms();
        for (const auto& r : daemon.policy().detects) first->heavy_per_rule[r.name] = 0;
        p.box.set(std::move(first));
    }
    if (auto st = p.start_faces(); !st) {
        log->error("status/metrics thread: {}", st.error().text());
        return 1;
    }
    if (auto st = daemon.start(p.now()); !st) {
        log->error("start: {}", st.error().text());  // start undid what it had done
        return 1;
    }
    if (p.flows) export_timestamps(*log);
    p.drift = std::make_unique<DriftRepair>(p.loop, daemon, *ports->mangle, *log);
    if (auto st = p.drift->open(); !st) log->error("drift repair off: {}", st.error().text());
    p.notify.ready(status_line(daemon));
    auto looped = p.loop.run([&](const Error& e) { log->error("event loop: {}", e.text()); });
    if (!looped) log->error("event loop gave up: {}; stopping", looped.error().text());
    p.notify.stopping();
    if (p.flows) {  // one last read of the table: the records end with the bytes moved since the last poll
        auto last = ports->conntrack->dump_all({});
        if (!last)
            log->warn("export: reading conntrack at exit: {}; records end at the last poll",
                      last.error().text());
        p.flows->finish(last ? *last : std::vector<kernel::FlowSample>{});
    }
    p.stop_faces();
    return daemon.stop() && looped ? 0 : 1;
}

}  // namespace flowshaper::controller
