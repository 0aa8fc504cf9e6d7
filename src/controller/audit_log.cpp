#include "flowshaper/controller/audit_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "flowshaper/controller/snapshot_json.hpp"

namespace flowshaper::controller {

AuditLog::AuditLog(std::string path) : path_(std::move(path)) {}

AuditLog::~AuditLog() {
    if (fd_ >= 0) ::close(fd_);
}

Status AuditLog::open() {
    int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    if (fd < 0)
        return make_error(
            "open audit log", path_, errno,
            std::string(std::strerror(errno)) + " (does its directory exist and is it writable?)");
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
    return {};
}

Status AuditLog::reopen() {
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
    return open();
}

Status AuditLog::write(const AuditEvent& event) {
    if (fd_ < 0)
        if (auto s = open(); !s) return s;
    const std::string line =
        to_json(event).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    ssize_t n;
    do {
        n = ::write(fd_, line.data(), line.size());
    } while (n < 0 && errno == EINTR);
    if (n < 0) return make_error("write audit log", path_, errno, std::strerror(errno));
    if (static_cast<size_t>(n) != line.size())
        return make_error(
            "write audit log", path_, ENOSPC,
            "short write: " + std::to_string(n) + " of " + std::to_string(line.size()) + " bytes");
    return {};
}

}  // namespace flowshaper::controller
