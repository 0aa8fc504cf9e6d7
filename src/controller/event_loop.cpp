#include "flowshaper/controller/event_loop.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

namespace flowshaper::controller {

namespace {

uint64_t monotonic_ms() {
    using namespace std::chrono;
    return static_cast<uint64_t>(duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count());
}

}  // namespace

EventLoop::EventLoop(Clock clock, WaitFn wait)
    : clock_(clock ? std::move(clock) : Clock(monotonic_ms)),
      wait_(wait ? std::move(wait) : WaitFn([](int epfd, epoll_event* ev, int max, int timeout) {
          return ::epoll_wait(epfd, ev, max, timeout);
      })),
      epfd_(epoll_create1(EPOLL_CLOEXEC)) {}

EventLoop::~EventLoop() {
    if (epfd_ >= 0) close(epfd_);
}

Status EventLoop::add_fd(int fd, uint32_t events, FdCallback callback) {
    if (fd < 0) return make_error("watch descriptor", std::to_string(fd), EBADF, std::strerror(EBADF));
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    bool known = fds_.count(fd) != 0;
    if (epoll_ctl(epfd_, known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0)
        return make_error("watch descriptor", std::to_string(fd), errno, std::strerror(errno));
    fds_[fd] = std::make_shared<FdCallback>(std::move(callback));
    return {};
}

Status EventLoop::modify_fd(int fd, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (!fds_.count(fd) || epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) != 0) {
        int err = fds_.count(fd) ? errno : ENOENT;
        return make_error("watch descriptor", std::to_string(fd), err, std::strerror(err));
    }
    return {};
}

void EventLoop::remove_fd(int fd) {
    if (fds_.erase(fd)) epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
}

EventLoop::TimerId EventLoop::add_timer(uint64_t first_in_ms, uint64_t period_ms, TimerCallback callback) {
    TimerId id = next_timer_++;
    timers_[id] = Timer{clock_() + first_in_ms, period_ms, std::move(callback)};
    return id;
}

bool EventLoop::reset_timer(TimerId id, uint64_t period_ms) {
    auto it = timers_.find(id);
    if (it == timers_.end()) return false;
    it->second.period_ms = period_ms;
    it->second.deadline_ms = clock_() + period_ms;
    return true;
}

void EventLoop::cancel_timer(TimerId id) {
    timers_.erase(id);
}

int EventLoop::wait_timeout(int max_wait_ms) const {
    int timeout = max_wait_ms;
    if (timers_.empty()) return timeout;
    uint64_t now = clock_();
    uint64_t earliest = UINT64_MAX;
    for (const auto& [id, t] : timers_) earliest = std::min(earliest, t.deadline_ms);
    uint64_t until = earliest > now ? earliest - now : 0;
    if (until > static_cast<uint64_t>(INT32_MAX)) until = INT32_MAX;
    if (timeout < 0 || static_cast<uint64_t>(timeout) > until) timeout = static_cast<int>(until);
    return timeout;
}

void EventLoop::run_due_timers() {
    uint64_t now = clock_();
    std::vector<TimerId> due;
    for (const auto& [id, t] : timers_)
        if (t.deadline_ms <= now) due.push_back(id);
    for (TimerId id : due) {
        auto it = timers_.find(id);
        if (it == timers_.end()) continue;  // cancelled by an earlier callback of this round
        Timer& t = it->second;
        TimerCallback callback = t.callback;  // the callback may cancel or reset its own timer
        if (t.period_ms == 0) {
            timers_.erase(it);
        } else {
            // Keep the phase; periods missed while the loop was busy are skipped, not bunched.
            uint64_t next = t.deadline_ms + t.period_ms;
            if (next <= now) next = now + t.period_ms - (now - t.deadline_ms) % t.period_ms;
            t.deadline_ms = next;
        }
        callback();
        if (stopping_) return;
    }
}

Status EventLoop::run_once(int max_wait_ms) {
    if (epfd_ < 0) return make_error("event loop", "epoll", EBADF, "no epoll instance");
    constexpr int kMaxEvents = 64;
    epoll_event events[kMaxEvents];
    int n = wait_(epfd_, events, kMaxEvents, wait_timeout(max_wait_ms));
    if (n < 0) {
        if (errno == EINTR) return {};
        int err = errno;
        return make_error("wait for events", "epoll", err, std::strerror(err));
    }
    for (int i = 0; i < n && !stopping_; ++i) {
        auto it = fds_.find(events[i].data.fd);
        if (it == fds_.end()) continue;  // removed by an earlier callback of this round
        auto callback = it->second;      // keeps it alive if the callback removes its own fd
        (*callback)(events[i].events);
    }
    if (!stopping_) run_due_timers();
    return {};
}

Status EventLoop::run(const std::function<void(const Error&)>& on_error, int max_errors) {
    int consecutive = 0;
    while (!stopping_) {
        auto st = run_once();
        if (st) {
            consecutive = 0;
            continue;
        }
        if (on_error) on_error(st.error());
        if (++consecutive >= max_errors) return st;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return {};
}

}  // namespace flowshaper::controller
