#include "faults_support.hpp"

#include "status_socket.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace flowshaper::testing {

namespace {

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

std::optional<double> metric_value(const std::string& text, const std::string& name) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
    return std::nullopt;
}

std::string tc_tree_text(const Netns& ns, const std::string& dev) {
    std::string out = ns.exec_ok("tc qdisc show dev " + dev);
    // HTB classes only: an fq_codel or sfq leaf lists its active flows as classes too.
    out += ns.exec_ok("tc class show dev " + dev + " | grep '^class htb ' || true");
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
    REQUIRE(daemon->wait_for_log("ready"));
    wait_in_sync();
}

void FaultRig::wait_in_sync(const std::string& dev) const {
    std::string state = "no snapshot";
    const bool in_sync = wait_until([&] {
        auto snap = try_snapshot(socket_path);
        if (!snap) return false;
        state = "absent from status";
        for (const auto& d : (*snap)["devices"])
            if (d["name"] == dev) state = d["state"].get<std::string>();
        return state == "in-sync";
    });
    INFO(dev << " in status: " << state << "\nlog:\n" << daemon->log());
    REQUIRE(in_sync);
}

void FaultRig::wait_for_polls(uint64_t n) const {
    INFO("log:\n" << daemon->log());
    REQUIRE(flowshaper::testing::wait_for_polls(socket_path, n));
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
    return net.server.exec_ok("curl -sf --max-time 60 http://127.0.0.1:" + std::to_string(kMetricsPort) +
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
    rig.wait_in_sync();  // the daemon idle after the last change, its snapshot current
    const auto t0 = std::chrono::steady_clock::now();
    const std::string before = read();
    const double read_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const auto counts = kernel_counts(rig.net.server);
    const RepairsSeen was = repairs_seen(rig);
    if (rig.counter("polls") == 0) rig.wait_for_polls(1);  // a poll timed, for the bound below
    const double poll_ms = rig.snapshot()["last_poll"]["duration_us"].get<double>() / 1000;
    rig.net.server.exec_ok(damage);
    // That the damage did something is shown by the repair counted below: an event-driven repair
    // (nftables, ~15 ms) can be done before a listing taken here would see the damage.
    auto took = time_until([&] { return read() == before; }, kWaitMs, 10);
    INFO("after `" << damage << "`:\n" << read() << "\nlog:\n" << rig.daemon->log());
    REQUIRE(took);
    // How fast is these tests' subject, so it is bounded: by the product's promise, plus the
    // daemon's own work (read, diff, apply cost about what a poll does: twice its last poll, as
    // status reports it) and the checker's resolution (the repair may land just after a reading
    // began: twice the reading timed above). Generous on a slow or emulated machine, and far
    // below the 30 s full check that a missed trigger would wait for.
    const double bound = limit_ms + 2 * poll_ms + 2 * read_ms;
    WARN("`" << damage << "` repaired in " << *took << " ms (bound " << bound << " ms: a poll takes "
             << poll_ms << " ms, a reading " << read_ms << " ms)");
    CHECK(*took < bound);
    CHECK(kernel_counts(rig.net.server) == counts);  // no duplicates, nothing missing
    // The snapshot after the repair, the metrics and the audit trail all count it.
    RepairsSeen now;
    wait_until([&] {
        now = repairs_seen(rig);
        return now.status > was.status && now.metric > was.metric && now.audit > was.audit;
    });
    CHECK(now.status == was.status + 1);
    CHECK(now.metric == static_cast<double>(now.status));
    CHECK(now.audit == was.audit + 1);
    CHECK(rig.device_state() == "in-sync");
    CHECK(rig.daemon->log().find("repaired flowshaper's objects") != std::string::npos);
    return *took;
}

}  // namespace flowshaper::testing
