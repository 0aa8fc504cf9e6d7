// A program that a real-kernel test runs beside itself in a namespace (a server, a collector,
// `conntrack -E`, tcpdump): started with its output in a log file, stopped with SIGTERM.
#pragma once

#include <chrono>
#include <string>

#include "netns.hpp"

namespace flowshaper::testing {

class Background {
public:
    // Runs `command` in `ns` through the shell, stdout and stderr into the file `log`.
    Background(const Netns& ns, const std::string& command, const std::string& log);
    // stop()
    ~Background();
    Background(const Background&) = delete;
    Background& operator=(const Background&) = delete;

    bool running() const;
    // Waits for the program to end by itself; false after `timeout`.
    bool wait(std::chrono::milliseconds timeout) const;
    // SIGSTOP: the program keeps its sockets and connections but does nothing.
    void pause() const;
    // SIGTERM (and SIGCONT, so that a paused one ends too), then waits up to 5 s for the end.
    void stop();

private:
    int pid_ = -1;
};

}  // namespace flowshaper::testing
