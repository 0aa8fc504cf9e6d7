// Conntrack byte accounting (net.netfilter.nf_conntrack_acct) for the current network namespace.
// /proc/sys/net shows the namespace of the thread that opens the file, so this works from a thread
// that entered the target namespace with setns().
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "flowshaper/common/result.hpp"
#include "flowshaper/kernel/conntrack_port.hpp"

namespace flowshaper::kernel {

namespace {

Error acct_error(const std::string& operation, const std::string& path, int err) {
    std::string hint;
    if (err == ENOENT)
        hint =
            " (conntrack is not loaded: modprobe nf_conntrack, or let flowshaper's CONNMARK rule load it "
            "first)";
    else if (err == EACCES || err == EPERM || err == EROFS)
        hint = " (needs CAP_NET_ADMIN in this network namespace and a writable /proc/sys)";
    return make_error(operation, path, err, std::strerror(err) + hint);
}

Result<char> read_flag(const std::string& path) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return acct_error("read", path, errno);
    char c = 0;
    ssize_t n = ::read(fd, &c, 1);
    int err = errno;
    close(fd);
    if (n != 1) return acct_error("read", path, n < 0 ? err : EIO);
    return c;
}

}  // namespace

Result<bool> enable_conntrack_accounting(const std::string& path) {
    auto before = read_flag(path);
    if (!before) return before.error();
    if (*before == '1') return true;
    int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return acct_error("write", path, errno);
    ssize_t n = write(fd, "1\n", 2);
    int err = errno;
    close(fd);
    if (n != 2) return acct_error("write", path, n < 0 ? err : EIO);
    auto after = read_flag(path);
    if (!after) return after.error();
    if (*after != '1') return make_error("write", path, EIO, "the value did not stay at 1");
    return false;
}

Result<bool> enable_conntrack_timestamps() {
    return enable_conntrack_accounting("/proc/sys/net/netfilter/nf_conntrack_timestamp");
}

}  // namespace flowshaper::kernel
