#include "flowshaper/controller/instance_lock.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

namespace flowshaper::controller {

namespace {

constexpr char kName[] = "flowshaper.daemon";

socklen_t abstract_address(sockaddr_un& addr) {
    addr = {};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path + 1, kName, sizeof kName - 1);  // sun_path[0] = 0: abstract
    return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + sizeof kName - 1);
}

// The pid of the daemon that holds the lock, when it answers.
pid_t holder() {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    sockaddr_un addr;
    socklen_t len = abstract_address(addr);
    pid_t pid = 0;
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), len) == 0) {
        ucred cred{};
        socklen_t clen = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) pid = cred.pid;
    }
    close(fd);
    return pid;
}

}  // namespace

Result<InstanceLock> InstanceLock::acquire() {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return make_error("take the daemon lock", "", errno, std::strerror(errno));
    InstanceLock lock(fd);
    sockaddr_un addr;
    socklen_t len = abstract_address(addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
        int err = errno;
        if (err != EADDRINUSE) return make_error("take the daemon lock", "", err, std::strerror(err));
        pid_t pid = holder();
        return make_error(
            "start", "", EBUSY,
            "another flowshaper daemon" + (pid ? " (pid " + std::to_string(pid) + ")" : std::string()) +
                " already runs in this network namespace; it owns the mangle rules and the "
                "devices' trees here: stop it first (or use 'flowshaper reload' to change its policy)");
    }
    // Listening lets a second daemon learn our pid through SO_PEERCRED; nobody is ever accepted.
    (void)listen(fd, 1);
    return lock;
}

InstanceLock::~InstanceLock() {
    if (fd_ >= 0) close(fd_);
}

}  // namespace flowshaper::controller
