#include "flowshaper/controller/service_notify.hpp"

#include <systemd/sd-daemon.h>

#include <cstdlib>

namespace flowshaper::controller {

ServiceNotify::ServiceNotify() {
    const char* socket = std::getenv("NOTIFY_SOCKET");
    enabled_ = socket && *socket;
    uint64_t usec = 0;
    // unset_environment = 0: children (none) would inherit it; the variables stay readable.
    if (enabled_ && sd_watchdog_enabled(0, &usec) > 0) watchdog_interval_ms_ = usec / 2000;
}

void ServiceNotify::send(const std::string& message) {
    if (enabled_) (void)sd_notify(0, message.c_str());
}

void ServiceNotify::ready(const std::string& status) {
    send("READY=1\nSTATUS=" + status);
}

void ServiceNotify::reloading() {
    send("RELOADING=1\nSTATUS=reloading the policy");
}

void ServiceNotify::stopping() {
    send("STOPPING=1\nSTATUS=stopping: removing flowshaper's rules and classes");
}

void ServiceNotify::status(const std::string& status) {
    send("STATUS=" + status);
}

void ServiceNotify::watchdog() {
    send("WATCHDOG=1");
}

}  // namespace flowshaper::controller
