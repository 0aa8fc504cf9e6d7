// Throwaway network namespaces for real-kernel tests. Everything made here is removed in the
// destructor, also when a test fails. A crash leaves "fst-<runid>-<pid>-..." behind, which the
// ctest fixture's netns_cleanup removes (only its own run's, only when <pid> is gone).
#pragma once

#include <string>
#include <vector>

namespace flowshaper::testing {

// Runs a shell command (tests only: the product never does this). Returns its exit status and
// fills `out` with stdout when given.
int sh(const std::string& command, std::string* out = nullptr);
// Like sh(), but throws std::runtime_error with the command and output on a non-zero status.
std::string sh_ok(const std::string& command);

// The id of this ctest run (tests/support/netns_run.sh setup), or "p<pid>" outside ctest.
const std::string& netns_run_id();

// Fails (not skips) the current test when the process cannot create namespaces.
void require_netns_privileges();

class Netns {
public:
    // Creates "fst-<runid>-<pid>-<tag>-<n>" with lo up.
    explicit Netns(const std::string& tag);
    ~Netns();
    Netns(const Netns&) = delete;
    Netns& operator=(const Netns&) = delete;

    const std::string& name() const { return name_; }
    // "ip netns exec <name> <command>" through sh().
    int exec(const std::string& command, std::string* out = nullptr) const;
    std::string exec_ok(const std::string& command) const;
    // Whether a `proto` ("tcp" or "udp") socket listens on (is bound to) `port` here, as ss says:
    // what to wait for after starting a server, before its first client.
    bool listens(const std::string& proto, int port) const;
    // The bytes waiting in the receive queue of the `proto` socket bound to `port` (ss's Recv-Q),
    // or -1 when there is none.
    long receive_queue(const std::string& proto, int port) const;
    // Whether a process named `comm` (its /proc/<pid>/comm) runs in this namespace: what to wait
    // for before a test ends while traffic it started may still run.
    bool runs(const std::string& comm) const;

private:
    std::string name_;
};

// While alive, the calling thread is inside `ns` (setns); netlink sockets opened meanwhile
// talk to that namespace. Restores the previous namespace on destruction.
class EnterNetns {
public:
    explicit EnterNetns(const Netns& ns);
    ~EnterNetns();
    EnterNetns(const EnterNetns&) = delete;
    EnterNetns& operator=(const EnterNetns&) = delete;

private:
    int saved_fd_ = -1;
};

// Two namespaces joined by a veth pair: "server" (device "veth-s", 10.200.0.1/24,
// fd00:200::1/64) and "client" (device "veth-c", 10.200.0.2/24, fd00:200::2/64).
// Extra client addresses can be added to veth-c with add_client_address().
struct VethPair {
    explicit VethPair(const std::string& tag);

    Netns server;
    Netns client;
    static constexpr const char* kServerDev = "veth-s";
    static constexpr const char* kClientDev = "veth-c";
    static constexpr const char* kServerV4 = "10.200.0.1";
    static constexpr const char* kClientV4 = "10.200.0.2";
    static constexpr const char* kServerV6 = "fd00:200::1";
    static constexpr const char* kClientV6 = "fd00:200::2";

    void add_client_address(const std::string& cidr) const;
};

}  // namespace flowshaper::testing
