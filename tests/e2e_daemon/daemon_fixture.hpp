// Runs `flowshaper run` in the server namespace of a VethPair, with helpers to watch it.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <string>

#include "netns.hpp"
#include "tc_text.hpp"

namespace flowshaper::testing {

class TempPolicy {
public:
    explicit TempPolicy(const std::string& text);
    ~TempPolicy();
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// The daemon as a child process; stopped with SIGTERM (or killed) in the destructor.
class Daemon {
public:
    Daemon(const Netns& ns, const std::string& policy_path);
    ~Daemon();
    // Sends a signal and waits for the exit; returns the exit status (128+sig when killed).
    int stop(int sig);
    // Waits until the log contains `needle` (true) or `timeout_ms` passes (false).
    bool wait_for_log(const std::string& needle, int timeout_ms) const;
    std::string log() const;
    pid_t pid() const { return pid_; }

private:
    pid_t pid_ = -1;
    std::string log_path_;
};

nlohmann::json tc_json(const Netns& ns, const std::string& what);
uint64_t class_bytes(const Netns& ns, const std::string& dev, const std::string& classid);
// Classes of flowshaper's tree on `dev` whose u32 filter matches `needle` in `tc filter show`.
std::string flowid_of(const Netns& ns, const std::string& dev, const std::string& needle);
// `conntrack -L` lines of the namespace that contain every one of `parts`.
std::vector<std::string> conntrack_lines(const Netns& ns, const std::vector<std::string>& parts);
std::string mangle_save(const Netns& ns, bool v6);

}  // namespace flowshaper::testing
