// `flowshaper run`: one event loop (epoll) over a poll timer, the conntrack event socket and
// the signals.
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "flowshaper/controller/daemon.hpp"
#include "flowshaper/controller/log.hpp"
#include "flowshaper/kernel/netlink_tc_port.hpp"
#include "flowshaper/policy/loader.hpp"

namespace flowshaper::controller {

namespace {

uint64_t now_ms() {
    using namespace std::chrono;
    return static_cast<uint64_t>(duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count());
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

std::optional<policy::Policy> load(const std::string& path, spdlog::logger& log) {
    auto result = policy::load_file(path);
    for (const auto& d : result.diagnostics) log.error("{}", d.format());
    return std::move(result.policy);
}

bool arm_timer(int fd, uint64_t interval_ms) {
    itimerspec spec{};
    spec.it_interval.tv_sec = static_cast<time_t>(interval_ms / 1000);
    spec.it_interval.tv_nsec = static_cast<long>((interval_ms % 1000) * 1000000);
    spec.it_value = spec.it_interval;
    return timerfd_settime(fd, 0, &spec, nullptr) == 0;
}

// Returns the exit status once SIGTERM/SIGINT arrives.
int loop(Daemon& daemon, kernel::ConntrackPort& conntrack, const std::string& path, spdlog::logger& log) {
    sigset_t mask;
    sigemptyset(&mask);
    for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&mask, s);
    Fd sig(signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
    Fd timer(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    Fd ep(epoll_create1(EPOLL_CLOEXEC));
    if (sig.get() < 0 || timer.get() < 0 || ep.get() < 0 ||
        !arm_timer(timer.get(), daemon.poll_interval_ms())) {
        log.error("event loop setup: {}", std::strerror(errno));
        return 1;
    }
    int fds[] = {sig.get(), timer.get(), conntrack.event_fd()};
    for (int fd : fds) {
        if (fd < 0) continue;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev);
    }
    for (;;) {
        epoll_event events[4];
        int n = epoll_wait(ep.get(), events, 4, -1);
        if (n < 0 && errno == EINTR) continue;
        for (int i = 0; i < n; ++i) {
            int fd = events[i].data.fd;
            if (fd == timer.get()) {
                uint64_t expirations = 0;
                if (read(fd, &expirations, sizeof expirations) < 0) continue;
                if (auto st = daemon.poll(now_ms()); !st) log.warn("poll: {}", st.error().text());
            } else if (fd == conntrack.event_fd()) {
                if (auto st = daemon.on_conntrack_events(now_ms()); !st)
                    log.warn("events: {}", st.error().text());
            } else if (fd == sig.get()) {
                signalfd_siginfo info{};
                if (read(fd, &info, sizeof info) != sizeof info) continue;
                if (info.ssi_signo == SIGHUP) {
                    log.info("SIGHUP: reloading {}", path);
                    if (auto next = load(path, log)) {
                        if (auto st = daemon.reload(std::move(*next), now_ms()); !st)
                            log.error("reload: {}", st.error().text());
                        arm_timer(timer.get(), daemon.poll_interval_ms());
                    } else {
                        log.error("reload: the policy has errors; keeping the one that runs");
                    }
                    continue;
                }
                log.info("{}: stopping", strsignal(static_cast<int>(info.ssi_signo)));
                return daemon.stop() ? 0 : 1;
            }
        }
    }
}

}  // namespace

int run_daemon(const std::string& policy_path, bool force) {
    auto log = make_stderr_logger();
    auto pol = load(policy_path, *log);
    if (!pol) return 1;
    // Signals go to the signalfd, from before the first kernel change on.
    sigset_t mask;
    sigemptyset(&mask);
    for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&mask, s);
    sigprocmask(SIG_BLOCK, &mask, nullptr);

    auto tc = kernel::NetlinkTcPort::open();
    if (!tc) {
        log->error("{}", tc.error().text());
        return 1;
    }
    auto mangle = kernel::make_iptc_mangle_port();
    auto conntrack = kernel::make_nfct_conntrack_port();
    if (!conntrack) {
        log->error("{}", conntrack.error().text());
        return 1;
    }
    kernel::NetlinkLinkPort links;
    DaemonOptions options;
    options.force = force;
    Daemon daemon(std::move(*pol), {**tc, *mangle, **conntrack, links}, log, options);
    if (auto st = daemon.start(now_ms()); !st) {
        log->error("start: {}", st.error().text());  // start undid what it had done
        return 1;
    }
    return loop(daemon, **conntrack, policy_path, *log);
}

}  // namespace flowshaper::controller
