#include "flowshaper/controller/task_queue.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace flowshaper::controller {

TaskQueue::TaskQueue(EventLoop& loop) : loop_(loop), fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

TaskQueue::~TaskQueue() {
    close();
    if (fd_ >= 0) {
        loop_.remove_fd(fd_);
        ::close(fd_);
    }
}

Status TaskQueue::open() {
    if (fd_ < 0) return make_error("task queue", "eventfd", errno, std::strerror(errno));
    return loop_.add_fd(fd_, EPOLLIN, [this](uint32_t) { drain(); });
}

bool TaskQueue::post(Task task) {
    {
        std::lock_guard lock(mutex_);
        if (closed_) return false;
        tasks_.push_back(std::move(task));
    }
    uint64_t one = 1;
    (void)!write(fd_, &one, sizeof one);
    return true;
}

void TaskQueue::drain() {
    uint64_t count = 0;
    (void)!read(fd_, &count, sizeof count);
    std::deque<Task> now;
    {
        std::lock_guard lock(mutex_);
        now.swap(tasks_);
    }
    for (auto& t : now) t(true);
}

void TaskQueue::close() {
    std::deque<Task> left;
    {
        std::lock_guard lock(mutex_);
        closed_ = true;
        left.swap(tasks_);
    }
    for (auto& t : left) t(false);
}

}  // namespace flowshaper::controller
