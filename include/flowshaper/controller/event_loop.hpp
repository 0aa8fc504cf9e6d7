// The daemon's one thread: an epoll loop that owns descriptors and timers. Everything the daemon
// serves (conntrack events, signals, the status socket, the metrics endpoint, rtnetlink events,
// flow export) registers a descriptor or a timer here; nothing runs on another thread.
//
// Timers are kept in the loop itself (no timerfd per timer): each wait sleeps until the earliest
// deadline. Periodic timers keep their phase (the next deadline is the previous one plus the
// period, skipping missed periods rather than firing them in a burst).
//
// The clock and epoll_wait are injectable (a port), so tests drive time and inject errors.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "flowshaper/common/result.hpp"

namespace flowshaper::controller {

class EventLoop {
public:
    using FdCallback = std::function<void(uint32_t events)>;  // EPOLLIN, EPOLLOUT, EPOLLERR, ...
    using TimerCallback = std::function<void()>;
    using TimerId = uint64_t;
    using Clock = std::function<uint64_t()>;  // monotonic milliseconds
    using WaitFn = std::function<int(int epfd, epoll_event* events, int max, int timeout_ms)>;

    // Defaults: CLOCK_MONOTONIC and ::epoll_wait.
    explicit EventLoop(Clock clock = {}, WaitFn wait = {});
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // The epoll instance could not be created (start-up error).
    bool valid() const { return epfd_ >= 0; }

    // Watches `fd` (not owned) for `events`. A second add of the same fd replaces its callback.
    Status add_fd(int fd, uint32_t events, FdCallback callback);
    Status modify_fd(int fd, uint32_t events);
    void remove_fd(int fd);  // safe from inside any callback, also the fd's own

    // `period_ms` 0: a one-shot timer (removed after it fired).
    TimerId add_timer(uint64_t first_in_ms, uint64_t period_ms, TimerCallback callback);
    // A new period (and next deadline now + period); false when the timer is gone.
    bool reset_timer(TimerId id, uint64_t period_ms);
    void cancel_timer(TimerId id);  // safe from inside any callback
    size_t timer_count() const { return timers_.size(); }

    // One round: waits at most `max_wait_ms` (-1: until the next timer or fd; without either,
    // forever), then runs the ready descriptors' callbacks and the due timers. An error other
    // than EINTR from epoll_wait is returned (the caller decides; the loop does not spin on it).
    Status run_once(int max_wait_ms = -1);
    // Rounds until stop(). Each epoll error is passed to `on_error` and retried after a pause of
    // 100 ms (a persistent fault cannot spin the CPU); `max_errors` consecutive ones end the loop
    // with the last one.
    Status run(const std::function<void(const Error&)>& on_error = {}, int max_errors = 10);
    void stop() { stopping_ = true; }
    bool stopping() const { return stopping_; }

    uint64_t now_ms() const { return clock_(); }

private:
    struct Timer {
        uint64_t deadline_ms = 0;
        uint64_t period_ms = 0;
        TimerCallback callback;
    };
    int wait_timeout(int max_wait_ms) const;
    void run_due_timers();

    Clock clock_;
    WaitFn wait_;
    int epfd_ = -1;
    std::map<int, std::shared_ptr<FdCallback>> fds_;
    std::map<TimerId, Timer> timers_;
    TimerId next_timer_ = 1;
    bool stopping_ = false;
};

}  // namespace flowshaper::controller
