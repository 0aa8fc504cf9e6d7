#include "netns.hpp"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace flowshaper::testing {

int sh(const std::string& command, std::string* out) {
    std::string full = command + " 2>&1";
    FILE* pipe = popen(full.c_str(), "r");
    if (!pipe) return -1;
    std::string text;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) text.append(buf, n);
    int status = pclose(pipe);
    if (out) *out = std::move(text);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string sh_ok(const std::string& command) {
    std::string out;
    int rc = sh(command, &out);
    if (rc != 0)
        throw std::runtime_error("command failed (" + std::to_string(rc) + "): " + command + "\n" + out);
    return out;
}

void require_netns_privileges() {
    if (geteuid() != 0) FAIL("real-kernel tests need root (network namespaces); run the suite as root");
    if (sh("ip netns list >/dev/null") != 0) FAIL("'ip netns' does not work here");
}

namespace {
std::atomic<int> counter{0};

// The ctest run's id (written by the netns_setup test), so that netns_cleanup removes only this
// run's namespaces; a per-process id when the file is absent (a test binary run by hand).
std::string read_run_id() {
    std::ifstream in(FLOWSHAPER_NETNS_RUNID_FILE);
    std::string id;
    if (in >> id && !id.empty() && id.find_first_not_of("0123456789abcdef") == std::string::npos) return id;
    std::string fallback(1, 'p');
    return fallback.append(std::to_string(getpid()));
}
}  // namespace

const std::string& netns_run_id() {
    static const std::string id = read_run_id();
    return id;
}

Netns::Netns(const std::string& tag) {
    name_ = "fst-" + netns_run_id() + "-" + std::to_string(getpid()) + "-" + tag + "-" +
            std::to_string(counter++);
    sh_ok("ip netns add " + name_);
    sh_ok("ip -n " + name_ + " link set lo up");
}

Netns::~Netns() {
    sh("ip netns del " + name_);
}

int Netns::exec(const std::string& command, std::string* out) const {
    return sh("ip netns exec " + name_ + " " + command, out);
}

std::string Netns::exec_ok(const std::string& command) const {
    return sh_ok("ip netns exec " + name_ + " " + command);
}

namespace {

// ss's lines for the `proto` sockets bound to `port`, without the header.
std::string bound_sockets(const Netns& ns, const std::string& proto, int port) {
    std::string out;
    const std::string flags = proto == "udp" ? "-Hlun" : "-Hltn";
    if (ns.exec("ss " + flags + " 'sport = :" + std::to_string(port) + "'", &out) != 0) return "";
    return out;
}

}  // namespace

bool Netns::listens(const std::string& proto, int port) const {
    return bound_sockets(*this, proto, port).find(':' + std::to_string(port)) != std::string::npos;
}

long Netns::receive_queue(const std::string& proto, int port) const {
    std::istringstream in(bound_sockets(*this, proto, port));
    std::string state;
    long queued = -1;
    return in >> state >> queued ? queued : -1;
}

bool Netns::runs(const std::string& comm) const {
    std::string pids;
    if (sh("ip netns pids " + name_, &pids) != 0) return false;
    std::istringstream in(pids);
    for (std::string pid; in >> pid;) {
        std::ifstream file("/proc/" + pid + "/comm");
        std::string name;
        if (std::getline(file, name) && name == comm) return true;
    }
    return false;
}

EnterNetns::EnterNetns(const Netns& ns) {
    saved_fd_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (saved_fd_ < 0) throw std::runtime_error("open own netns failed");
    std::string path = "/run/netns/" + ns.name();
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
        if (fd >= 0) close(fd);
        close(saved_fd_);
        throw std::runtime_error("setns into " + ns.name() + " failed");
    }
    close(fd);
}

EnterNetns::~EnterNetns() {
    setns(saved_fd_, CLONE_NEWNET);
    close(saved_fd_);
}

VethPair::VethPair(const std::string& tag) : server(tag + "s"), client(tag + "c") {
    sh_ok("ip link add " + std::string(kServerDev) + " netns " + server.name() + " type veth peer name " +
          kClientDev + " netns " + client.name());
    server.exec_ok(std::string("ip addr add ") + kServerV4 + "/24 dev " + kServerDev);
    client.exec_ok(std::string("ip addr add ") + kClientV4 + "/24 dev " + kClientDev);
    server.exec_ok(std::string("ip addr add ") + kServerV6 + "/64 dev " + kServerDev + " nodad");
    client.exec_ok(std::string("ip addr add ") + kClientV6 + "/64 dev " + kClientDev + " nodad");
    server.exec_ok(std::string("ip link set ") + kServerDev + " up");
    client.exec_ok(std::string("ip link set ") + kClientDev + " up");
}

void VethPair::add_client_address(const std::string& cidr) const {
    std::string flags = cidr.find(':') != std::string::npos ? " nodad" : "";
    client.exec_ok("ip addr add " + cidr + " dev " + kClientDev + flags);
}

}  // namespace flowshaper::testing
