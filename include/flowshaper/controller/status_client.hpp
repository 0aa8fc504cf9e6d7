// The other end of the status socket, for `flowshaper status`, `reload` and `top`: one
// connection, one JSON line out, one JSON line in, with a deadline.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "flowshaper/common/result.hpp"

namespace flowshaper::controller {

class StatusClient {
public:
    StatusClient() = default;
    ~StatusClient();
    StatusClient(const StatusClient&) = delete;
    StatusClient& operator=(const StatusClient&) = delete;

    // ENOENT / ECONNREFUSED: no daemon listens there (the error says so).
    Status connect(const std::string& path);
    // Sends the request and waits at most `timeout_ms` for its answer line.
    Result<nlohmann::json> request(const nlohmann::json& request, int timeout_ms = 5000);
    const std::string& path() const { return path_; }

private:
    int fd_ = -1;
    std::string path_;
    std::string in_;
};

// No daemon answers at this path (the socket file is missing or nobody listens on it).
bool no_daemon(const Error& error);

}  // namespace flowshaper::controller
