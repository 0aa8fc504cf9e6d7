// The test plays systemd: it binds the notify socket, starts `flowshaper run` with NOTIFY_SOCKET
// (and WATCHDOG_USEC) set, and reads what the daemon says, in order, checking the kernel with
// tc at the moment READY=1 arrives.
#include <signal.h>

#include <catch2/catch.hpp>
#include <thread>

#include "faults_support.hpp"

using namespace flowshaper::testing;
using namespace std::chrono_literals;

namespace {

bool contains(const std::string& text, const std::string& needle) {
    return text.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE(
    "systemd hears READY=1 once the tree is in place, RELOADING=1 then READY=1 around SIGHUP, "
    "WATCHDOG=1 every second and STOPPING=1 on SIGTERM") {
    require_netns_privileges();
    const std::string firewall = each_firewall();
    INFO("firewall = " << firewall);
    FaultRig rig("notify", fault_settings("500ms", firewall), fault_policy_body());
    NotifySocket systemd;
    rig.daemon =
        std::make_unique<Daemon>(rig.net.server, rig.policy->path(),
                                 std::vector<std::pair<std::string, std::string>>{
                                     {"NOTIFY_SOCKET", systemd.path()}, {"WATCHDOG_USEC", "2000000"}});
    std::vector<std::string> seen;
    auto ready = systemd.wait_for("READY=1", kWaitMs, &seen);
    INFO(rig.daemon->log());
    REQUIRE(ready);
    // At this moment the whole tree is there: what tc shows now is what it shows later, and the
    // root is flowshaper's HTB.
    auto at_ready = kernel_counts(rig.net.server);
    auto root = tc_json(rig.net.server, "qdisc show dev veth-s root");
    REQUIRE(root.size() == 1);
    CHECK(root[0]["kind"] == "htb");
    CHECK(root[0]["handle"] == "f5:");
    CHECK(at_ready.classes == 4);  // root, normal, bulk, the cap's client
    CHECK((firewall == "iptables" ? at_ready.rules4 : at_ready.nft_rules) >= 2);
    CHECK(contains(*ready, "STATUS="));
    for (size_t i = 0; i + 1 < seen.size(); ++i) CHECK_FALSE(contains(seen[i], "READY=1"));

    // The watchdog: WATCHDOG_USEC = 2 s, so a ping every ~1 s (half of it, as sd_watchdog_enabled
    // advises). Listened to for 4 s: a duration, the pings' cadence is what is measured.
    std::vector<std::chrono::steady_clock::time_point> pings;
    auto until = std::chrono::steady_clock::now() + 4s;
    while (std::chrono::steady_clock::now() < until)
        if (auto m = systemd.next(500); m && contains(*m, "WATCHDOG=1"))
            pings.push_back(std::chrono::steady_clock::now());
    REQUIRE(pings.size() >= 3);
    for (size_t i = 1; i < pings.size(); ++i) {
        double gap_ms = std::chrono::duration<double, std::milli>(pings[i] - pings[i - 1]).count();
        // The cadence is this part's subject; the bound is systemd's own: a gap of WATCHDOG_USEC
        // would get the service killed. (~1,000 ms here; an emulated machine's loop may be late.)
        WARN("gap between watchdog pings " << i - 1 << " and " << i << ": " << gap_ms << " ms");
        CHECK(gap_ms < 2000);
    }
    CHECK(kernel_counts(rig.net.server) == at_ready);

    // SIGHUP: RELOADING=1 first, READY=1 after it.
    seen.clear();
    kill(rig.daemon->pid(), SIGHUP);
    auto reloading = systemd.wait_for("RELOADING=1", kWaitMs, &seen);
    REQUIRE(reloading);
    for (const auto& m : seen) CHECK_FALSE(contains(m, "READY=1"));
    CHECK(systemd.wait_for("READY=1", kWaitMs));

    // Plain STATUS= lines after polls.
    CHECK(systemd.wait_for("STATUS=", kWaitMs));

    // SIGTERM: STOPPING=1, and a clean exit.
    CHECK(rig.daemon->stop(SIGTERM) == 0);
    CHECK(systemd.wait_for("STOPPING=1", kWaitMs));
    CHECK(tc_json(rig.net.server, "qdisc show dev veth-s")[0]["kind"] == "noqueue");
}

TEST_CASE("without WATCHDOG_USEC the daemon sends no WATCHDOG=1, and READY=1 exactly once") {
    require_netns_privileges();
    const std::string firewall = each_firewall();
    INFO("firewall = " << firewall);
    FaultRig rig("nowd", fault_settings("500ms", firewall), fault_policy_body());
    NotifySocket systemd;
    rig.daemon = std::make_unique<Daemon>(
        rig.net.server, rig.policy->path(),
        std::vector<std::pair<std::string, std::string>>{{"NOTIFY_SOCKET", systemd.path()}});
    REQUIRE(systemd.wait_for("READY=1", kWaitMs));
    std::vector<std::string> seen;
    // Listened to for 2.5 s, a duration: with a watchdog there would have been two pings by then.
    CHECK_FALSE(systemd.wait_for("WATCHDOG=1", 2500, &seen));
    CHECK_FALSE(seen.empty());  // it does talk: STATUS= after polls
    for (const auto& m : seen) CHECK_FALSE(contains(m, "READY=1"));
}
