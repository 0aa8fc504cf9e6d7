// A test's side of the daemon's status socket (JSON lines): one request, and waits measured in
// the daemon's own polls rather than in seconds ("two polls later" is the same amount of the
// daemon's work on any machine).
#pragma once

#include <sys/un.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "wait.hpp"

namespace flowshaper::testing {

// A unique path for a test daemon's `status_socket`; the file is removed when this goes (a
// daemon killed with SIGKILL leaves it).
class StatusSocketPath {
public:
    StatusSocketPath();
    ~StatusSocketPath();
    StatusSocketPath(const StatusSocketPath&) = delete;
    StatusSocketPath& operator=(const StatusSocketPath&) = delete;
    const std::string& path() const { return path_; }
    // The policy's [settings] line.
    std::string setting() const { return "status_socket = \"" + path_ + "\"\n"; }

private:
    std::string path_;
};

// One JSON-lines request on the daemon's status socket; throws on a connection error or when no
// answer came within `timeout_ms` (a hang guard).
// The sockaddr of a unix socket path (throws when the path does not fit).
sockaddr_un unix_address(const std::string& path);

nlohmann::json status_request(const std::string& socket_path, const nlohmann::json& request,
                              int timeout_ms = kWaitMs);

// The {"cmd":"status"} snapshot, or nullopt while the daemon does not answer or has none yet.
std::optional<nlohmann::json> try_snapshot(const std::string& socket_path);

// Waits until the daemon has finished `n` polls more than when called (counters.polls); false
// after the deadline.
bool wait_for_polls(const std::string& socket_path, uint64_t n, int timeout_ms = kWaitMs);

}  // namespace flowshaper::testing
