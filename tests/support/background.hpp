// A program that a real-kernel test runs beside itself in a namespace (a server, a collector,
// `conntrack -E`, tcpdump): started with its output in a log file, stopped with SIGTERM.
#pragma once

#include <chrono>
#include <string>

#include "netns.hpp"
#include "wait.hpp"

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
    // Waits for the program to end by itself; false after `timeout` (a hang guard).
    bool wait(std::chrono::milliseconds timeout) const;
    // SIGSTOP: the program keeps its sockets and connections but does nothing.
    void pause() const;
    // SIGTERM (and SIGCONT, so that a paused one ends too), then waits for the end (kWaitMs).
    void stop();

private:
    int pid_ = -1;
};

// Whether process `pid` still runs: it exists and is not a zombie. (A program started through a
// shell that has exited is nobody's child here; where no init reaps orphans it stays a zombie.)
bool process_runs(int pid);

}  // namespace flowshaper::testing
