// The daemon's event loop over real descriptors (pipes), a manual clock and an injected epoll_wait.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <thread>
#include <vector>

#include "flowshaper/controller/event_loop.hpp"
#include "flowshaper/controller/task_queue.hpp"

using flowshaper::controller::EventLoop;

namespace {

struct Pipe {
    int fds[2] = {-1, -1};
    Pipe() { REQUIRE(pipe(fds) == 0); }
    ~Pipe() {
        close(fds[0]);
        close(fds[1]);
    }
    void put() { REQUIRE(write(fds[1], "x", 1) == 1); }
    void take() {
        char c;
        REQUIRE(read(fds[0], &c, 1) == 1);
    }
};

}  // namespace

TEST_CASE("event loop: a readable descriptor runs its callback, a removed one no more") {
    EventLoop loop;
    Pipe p;
    int calls = 0;
    REQUIRE(loop.add_fd(p.fds[0], EPOLLIN, [&](uint32_t events) {
        CHECK((events & EPOLLIN) != 0);
        p.take();
        ++calls;
    }));
    REQUIRE(loop.run_once(0));
    CHECK(calls == 0);
    p.put();
    REQUIRE(loop.run_once(1000));
    CHECK(calls == 1);
    loop.remove_fd(p.fds[0]);
    p.put();
    REQUIRE(loop.run_once(0));
    CHECK(calls == 1);
}

TEST_CASE("event loop: a callback may remove its own descriptor and another ready one") {
    EventLoop loop;
    Pipe a, b;
    int calls = 0;
    auto cb = [&](uint32_t) {
        ++calls;
        loop.remove_fd(a.fds[0]);
        loop.remove_fd(b.fds[0]);
    };
    REQUIRE(loop.add_fd(a.fds[0], EPOLLIN, cb));
    REQUIRE(loop.add_fd(b.fds[0], EPOLLIN, cb));
    a.put();
    b.put();
    REQUIRE(loop.run_once(1000));
    CHECK(calls == 1);
}

TEST_CASE("event loop: periodic timers keep their phase and skip missed periods instead of bunching") {
    uint64_t now = 1000;
    EventLoop loop([&] { return now; });
    std::vector<uint64_t> fired;
    loop.add_timer(100, 100, [&] { fired.push_back(now); });
    now = 1100;
    REQUIRE(loop.run_once(0));
    now = 1205;  // a little late
    REQUIRE(loop.run_once(0));
    now = 1300;  // on the original phase, not 1305
    REQUIRE(loop.run_once(0));
    now = 1750;  // the loop was busy for 4 periods: one call, next at 1800
    REQUIRE(loop.run_once(0));
    REQUIRE(loop.run_once(0));
    now = 1800;
    REQUIRE(loop.run_once(0));
    CHECK(fired == std::vector<uint64_t>{1100, 1205, 1300, 1750, 1800});
}

TEST_CASE("event loop: the wait ends at the next timer's deadline") {
    uint64_t now = 0;
    int seen_timeout = -2;
    EventLoop loop([&] { return now; },
                   [&](int, epoll_event*, int, int timeout) {
                       seen_timeout = timeout;
                       return 0;
                   });
    loop.add_timer(250, 0, [] {});
    REQUIRE(loop.run_once());
    CHECK(seen_timeout == 250);
    REQUIRE(loop.run_once(100));
    CHECK(seen_timeout == 100);
}

TEST_CASE("event loop: one-shot timers fire once, cancel and reset work from callbacks") {
    uint64_t now = 0;
    EventLoop loop([&] { return now; });
    int once = 0, periodic = 0;
    EventLoop::TimerId p = 0;
    loop.add_timer(10, 0, [&] { ++once; });
    p = loop.add_timer(10, 10, [&] {
        if (++periodic == 2) loop.cancel_timer(p);
    });
    for (now = 10; now <= 100; now += 10) REQUIRE(loop.run_once(0));
    CHECK(once == 1);
    CHECK(periodic == 2);
    CHECK(loop.timer_count() == 0);
    CHECK_FALSE(loop.reset_timer(p, 5));
}

TEST_CASE("event loop: EINTR is not an error, other epoll errors are returned, not spun on") {
    int calls = 0;
    int fail_with = EINTR;
    EventLoop loop({}, [&](int, epoll_event*, int, int) {
        ++calls;
        errno = fail_with;
        return -1;
    });
    CHECK(loop.run_once(0));
    fail_with = EBADF;
    auto st = loop.run_once(0);
    REQUIRE_FALSE(st);
    CHECK(st.error().code == EBADF);
    // run() reports each error and gives up after max_errors consecutive ones, pausing between
    // them (5 errors: at least 400 ms of pauses, not a busy loop).
    calls = 0;
    std::vector<int> reported;
    auto t0 = std::chrono::steady_clock::now();
    auto ran = loop.run([&](const flowshaper::Error& e) { reported.push_back(e.code); }, 5);
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    REQUIRE_FALSE(ran);
    CHECK(calls == 5);
    CHECK(reported == std::vector<int>(5, EBADF));
    CHECK(ms >= 400);
}

TEST_CASE("event loop: stop() from a callback ends run()") {
    uint64_t now = 0;
    EventLoop loop([&] { return now++; });
    int ticks = 0;
    loop.add_timer(1, 1, [&] {
        if (++ticks == 3) loop.stop();
    });
    REQUIRE(loop.run());
    CHECK(ticks == 3);
}

TEST_CASE("event loop: watching an invalid descriptor is an error, not a crash") {
    EventLoop loop;
    CHECK_FALSE(loop.add_fd(-1, EPOLLIN, [](uint32_t) {}));
    CHECK_FALSE(loop.modify_fd(12345, EPOLLIN));
}

TEST_CASE(
    "task queue: work posted from another thread runs on the loop's thread, close answers what is left") {
    flowshaper::controller::EventLoop loop;
    flowshaper::controller::TaskQueue queue(loop);
    REQUIRE(queue.open());
    std::thread::id ran_on;
    bool ran = false;
    std::thread poster([&] {
        REQUIRE(queue.post([&](bool run) {
            ran = run;
            ran_on = std::this_thread::get_id();
        }));
    });
    poster.join();
    REQUIRE(loop.run_once(1000));
    CHECK(ran);
    CHECK(ran_on == std::this_thread::get_id());
    int refused = 0;
    REQUIRE(queue.post([&](bool run) { refused += run ? 0 : 1; }));
    queue.close();
    CHECK(refused == 1);
    CHECK_FALSE(queue.post([](bool) {}));
}
