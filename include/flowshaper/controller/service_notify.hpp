// What systemd learns about the daemon (Type=notify, through libsystemd's sd_notify): READY=1
// after the first successful apply, RELOADING=1 / READY=1 around a reload, STOPPING=1, a
// one-line STATUS=, and WATCHDOG=1 from the loop when the unit sets WatchdogSec=. Without
// NOTIFY_SOCKET (not under systemd) every call is a no-op.
#pragma once

#include <cstdint>
#include <string>

namespace flowshaper::controller {

class ServiceNotify {
public:
    ServiceNotify();
    bool enabled() const { return enabled_; }
    void ready(const std::string& status);
    void reloading();
    void stopping();
    void status(const std::string& status);
    // How often the loop must ping (half of WATCHDOG_USEC), 0 when the watchdog is off.
    uint64_t watchdog_interval_ms() const { return watchdog_interval_ms_; }
    void watchdog();

private:
    void send(const std::string& message);
    bool enabled_ = false;
    uint64_t watchdog_interval_ms_ = 0;
};

}  // namespace flowshaper::controller
