#include "faults_support.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace flowshaper::testing {

namespace {

sockaddr_un unix_address(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) throw std::runtime_error("socket path too long: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return addr;
}

// Closes a descriptor when the scope ends.
struct FdGuard {
    int fd;
    ~FdGuard() {
        if (fd >= 0) close(fd);
    }
};

std::string unique_path(const std::string& prefix, const std::string& suffix) {
    char tmpl[64];
    std::snprintf(tmpl, sizeof tmpl, "/tmp/%s-XXXXXX", prefix.c_str());
    int fd = mkstemp(tmpl);
    if (fd < 0) throw std::runtime_error("mkstemp: " + std::string(std::strerror(errno)));
    close(fd);
    std::remove(tmpl);
    return std::string(tmpl) + suffix;
}

}  // namespace

NotifySocket::NotifySocket() : path_(unique_path("fs-notify", ".sock")) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr = unix_address(path_);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
}

NotifySocket::~NotifySocket() {
    if (fd_ >= 0) close(fd_);
    std::remove(path_.c_str());
}

std::optional<std::string> NotifySocket::next(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return std::nullopt;
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
}

std::optional<std::string> NotifySocket::wait_for(const std::string& needle, int timeout_ms,
                                                  std::vector<std::string>* seen) {
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
        if (left.count() <= 0) return std::nullopt;
        auto msg = next(static_cast<int>(left.count()));
        if (!msg) return std::nullopt;
        if (seen) seen->push_back(*msg);
        if (msg->find(needle) != std::string::npos) return msg;
    }
}

nlohmann::json status_request(const std::string& socket_path, const nlohmann::json& request, int timeout_ms) {
    FdGuard fd{socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    sockaddr_un addr = unix_address(socket_path);
    if (connect(fd.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        throw std::runtime_error("connect " + socket_path + ": " + std::strerror(errno));
    std::string line = request.dump() + "\n";
    if (write(fd.fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
        throw std::runtime_error("write " + socket_path + ": " + std::strerror(errno));
    std::string answer;
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (answer.find('\n') == std::string::npos) {
        auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
        pollfd p{fd.fd, POLLIN, 0};
        if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) != 1)
            throw std::runtime_error("no answer from " + socket_path + " within " +
                                     std::to_string(timeout_ms) + " ms");
        char buf[65536];
        ssize_t n = read(fd.fd, buf, sizeof buf);
        if (n <= 0) throw std::runtime_error("the daemon closed " + socket_path + " without an answer");
        answer.append(buf, static_cast<size_t>(n));
    }
    return nlohmann::json::parse(answer.substr(0, answer.find('\n')));
}

std::optional<double> time_until(const std::function<bool()>& done, int timeout_ms, int step_ms) {
    auto t0 = std::chrono::steady_clock::now();
    auto end = t0 + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        if (done())
            return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (std::chrono::steady_clock::now() >= end) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(step_ms));
    }
}

std::optional<double> metric_value(const std::string& text, const std::string& name) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
    return std::nullopt;
}

std::string tc_tree_text(const Netns& ns, const std::string& dev) {
    std::string out = ns.exec_ok("tc qdisc show dev " + dev);
    out += ns.exec_ok("tc class show dev " + dev);
    out += ns.exec_ok("tc filter show dev " + dev + " parent f5:");
    return out;
}

std::string fault_settings(const std::string& poll_interval, const std::string& firewall) {
    return "poll_interval = \"" + poll_interval + "\"\nfirewall = \"" + firewall + "\"\n";
}

std::string fault_policy_body(const std::string& cap_rate, const std::string& bulk_rate) {
    return "[[interface]]\ndevice = \"veth-s\"\nrate = \"1gbit\"\ndefault_class = \"normal\"\n\n"
           "[[interface.class]]\nname = \"normal\"\nrate = \"500mbit\"\nceil = \"1gbit\"\n\n"
           "[[interface.class]]\nname = \"bulk\"\nrate = \"" +
           bulk_rate +
           "\"\nceil = \"1gbit\"\n\n"
           "[[cap]]\nname = \"customer\"\ndevice = \"veth-s\"\nclients = [\"10.200.0.7\"]\nrate = \"" +
           cap_rate + "\"\nceil = \"10mbit\"\n";
}

FaultRig::FaultRig(const std::string& tag, const std::string& settings, const std::string& body)
    : net(tag),
      socket_path(unique_path("fs-status", ".sock")),
      audit_path(unique_path("fs-audit", ".jsonl")) {
    policy = std::make_unique<TempPolicy>("");
    write_policy(settings, body);
}

FaultRig::~FaultRig() {
    daemon.reset();
    std::remove(socket_path.c_str());
    std::remove(audit_path.c_str());
}

void FaultRig::write_policy(const std::string& settings, const std::string& body) const {
    std::ofstream(policy->path()) << "[settings]\nstatus_socket = \"" << socket_path << "\"\naudit_log = \""
                                  << audit_path << "\"\nmetrics_listen = \"127.0.0.1:" << kMetricsPort
                                  << "\"\n"
                                  << settings << "\n"
                                  << body;
}

void FaultRig::start(const std::vector<std::pair<std::string, std::string>>& env) {
    daemon.reset();
    daemon = std::make_unique<Daemon>(net.server, policy->path(), env);
    INFO(daemon->log());
    REQUIRE(daemon->wait_for_log("ready", 15000));
}

nlohmann::json FaultRig::snapshot() const {
    auto answer = status_request(socket_path, {{"cmd", "status"}});
    INFO(answer.dump());
    REQUIRE(answer.value("ok", false));
    return answer["snapshot"];
}

std::string FaultRig::device_state(const std::string& dev) const {
    auto snap = snapshot();
    for (const auto& d : snap["devices"])
        if (d["name"] == dev) return d["state"].get<std::string>();
    return "absent from status: " + snap["devices"].dump();
}

std::string FaultRig::classid_of(const std::string& name) const {
    auto snap = snapshot();
    for (const auto& d : snap["devices"])
        for (const auto& c : d["classes"])
            if (c["name"] == name) return c["classid"].get<std::string>();
    return "";
}

std::string FaultRig::metrics() const {
    return net.server.exec_ok("curl -sf --max-time 5 http://127.0.0.1:" + std::to_string(kMetricsPort) +
                              "/metrics");
}

std::string FaultRig::audit_text() const {
    std::ifstream in(audit_path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

size_t FaultRig::audit_count(const std::string& action) const {
    size_t n = 0;
    std::istringstream in(audit_text());
    for (std::string line; std::getline(in, line);)
        if (!line.empty() && nlohmann::json::parse(line).value("action", "") == action) ++n;
    return n;
}

RepairsSeen repairs_seen(const FaultRig& rig) {
    RepairsSeen s;
    s.status = rig.counter("drift_repairs");
    auto text = rig.metrics();
    auto m = metric_value(text, "flowshaper_drift_repairs_total");
    INFO(text);
    REQUIRE(m);
    s.metric = *m;
    s.audit = rig.audit_count("repair");
    return s;
}

double expect_repaired(FaultRig& rig, const std::string& damage, const std::function<std::string()>& read,
                       double limit_ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // settle after the last change
    const std::string before = read();
    const auto counts = kernel_counts(rig.net.server);
    const RepairsSeen was = repairs_seen(rig);
    rig.net.server.exec_ok(damage);
    // That the damage did something is shown by the repair counted below: an event-driven repair
    // (nftables, ~15 ms) can be done before a listing taken here would see the damage.
    auto took = time_until([&] { return read() == before; }, 10000);
    INFO("after `" << damage << "`:\n" << read() << "\nlog:\n" << rig.daemon->log());
    REQUIRE(took);
    WARN("`" << damage << "` repaired in " << *took << " ms");
    CHECK(*took < limit_ms);
    CHECK(kernel_counts(rig.net.server) == counts);               // no duplicates, nothing missing
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the snapshot after the repair
    const RepairsSeen now = repairs_seen(rig);
    CHECK(now.status == was.status + 1);
    CHECK(now.metric == static_cast<double>(now.status));
    CHECK(now.audit == was.audit + 1);
    CHECK(rig.device_state() == "in-sync");
    CHECK(rig.daemon->log().find("repaired flowshaper's objects") != std::string::npos);
    return *took;
}

}  // namespace flowshaper::testing
