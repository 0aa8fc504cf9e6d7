// The audit trail (`audit_log` in [settings]): one JSON object per line for every cap applied or
// lifted, every drift repaired and every reload. The file is opened O_APPEND and never rewritten;
// each event is one write(2) of a whole line, so concurrent readers never see half a line.
// reopen() (on SIGUSR1, after logrotate renamed the file) opens the path again. Failures are
// returned for the caller to log; they never stop the daemon.
#pragma once

#include <string>

#include "flowshaper/common/result.hpp"
#include "flowshaper/controller/snapshot.hpp"

namespace flowshaper::controller {

class AuditLog {
public:
    explicit AuditLog(std::string path);
    ~AuditLog();
    AuditLog(const AuditLog&) = delete;
    AuditLog& operator=(const AuditLog&) = delete;

    Status open();    // creates the file (mode 0640) when missing; the directory must exist
    Status reopen();  // closes and opens the path again (logrotate)
    // Appends the event's line. Not open (a failed open or reopen): tries to open first.
    Status write(const AuditEvent& event);
    const std::string& path() const { return path_; }
    bool is_open() const { return fd_ >= 0; }

private:
    std::string path_;
    int fd_ = -1;
};

}  // namespace flowshaper::controller
