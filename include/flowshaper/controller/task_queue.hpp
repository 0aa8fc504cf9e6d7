// Work handed from one thread to another thread's EventLoop: post() from any thread, the
// functions run on the loop's thread (an eventfd wakes it). close() runs every pending task with
// `run = false` (so a waiting caller gets an answer) and refuses later posts.
#pragma once

#include <deque>
#include <functional>
#include <mutex>

#include "flowshaper/common/result.hpp"
#include "flowshaper/controller/event_loop.hpp"

namespace flowshaper::controller {

class TaskQueue {
public:
    using Task = std::function<void(bool run)>;
    explicit TaskQueue(EventLoop& loop);
    ~TaskQueue();
    TaskQueue(const TaskQueue&) = delete;
    TaskQueue& operator=(const TaskQueue&) = delete;

    Status open();  // registers the eventfd on the loop (call on the loop's thread, before run())
    // false when closed (the task was not queued and will not run).
    bool post(Task task);
    void close();

private:
    void drain();

    EventLoop& loop_;
    int fd_ = -1;
    std::mutex mutex_;
    std::deque<Task> tasks_;
    bool closed_ = false;
};

}  // namespace flowshaper::controller
