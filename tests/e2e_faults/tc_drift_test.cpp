// Drift repair of the tc tree: someone deletes flowshaper's root qdisc, one class or one u32
// filter, or the device itself; the daemon puts the tree back within 1 s (read with tc), and the
// repair shows in status (drift_repairs, the device's state), the metrics and the audit trail.
// A tool that keeps deleting is answered with a back-off announced at error level, at low CPU.
#include <signal.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "faults_support.hpp"

using namespace flowshaper::testing;

namespace {

std::function<std::string()> tc_reader(const FaultRig& rig) {
    return [&rig] { return tc_tree_text(rig.net.server); };
}

// The handle of the u32 node that sends `needle` (e.g. the client's address in hex) to a class.
std::string u32_node_with(const Netns& ns, const std::string& needle, std::string* prio) {
    std::string text = ns.exec_ok("tc filter show dev veth-s parent f5:");
    std::string last_handle, last_prio;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        auto fh = line.find(" fh ");
        if (fh != std::string::npos) {
            last_handle = line.substr(fh + 4, line.find(' ', fh + 4) - fh - 4);
            auto p = line.find(" pref ");
            last_prio = line.substr(p + 6, line.find(' ', p + 6) - p - 6);
        }
        if (line.find(needle) != std::string::npos) {
            *prio = last_prio;
            return last_handle;
        }
    }
    return "";
}

}  // namespace

TEST_CASE("the root qdisc deleted behind the daemon's back is back within 1 s, counted and audited") {
    require_netns_privileges();
    const std::string firewall = each_firewall();
    INFO("firewall = " << firewall);
    FaultRig rig("rootdel", fault_settings("1s", firewall), fault_policy_body());
    rig.start();
    expect_repaired(rig, "tc qdisc del dev veth-s root", tc_reader(rig), 1000);
    expect_repaired(rig, "tc qdisc del dev veth-s root", tc_reader(rig),
                    1000);  // and again: each repair counts
}

TEST_CASE("one policy class (without filters) deleted is back within 1 s, the others untouched") {
    require_netns_privileges();
    const std::string firewall = each_firewall();
    INFO("firewall = " << firewall);
    FaultRig rig("classdel", fault_settings("1s", firewall), fault_policy_body());
    rig.start();
    std::string bulk = rig.classid_of("class bulk");
    REQUIRE_FALSE(bulk.empty());
    REQUIRE(tc_class_table(rig.net.server, "veth-s").count(bulk) == 1);
    expect_repaired(rig, "tc class del dev veth-s classid " + bulk, tc_reader(rig), 1000);
}

// The repair puts the deleted filter back pointing at the client's class (the daemon remembers
// what it applied): the classid and its counters survive.
TEST_CASE("one u32 filter deleted is back within 1 s, the client's class untouched") {
    require_netns_privileges();
    const std::string firewall = each_firewall();
    INFO("firewall = " << firewall);
    FaultRig rig("filterdel", fault_settings("1s", firewall), fault_policy_body());
    rig.start();
    std::string prio;
    std::string handle = u32_node_with(rig.net.server, "0ac80007/ffffffff", &prio);  // 10.200.0.7
    INFO(rig.net.server.exec_ok("tc filter show dev veth-s parent f5:"));
    REQUIRE_FALSE(handle.empty());
    expect_repaired(
        rig, "tc filter del dev veth-s parent f5: protocol ip prio " + prio + " handle " + handle + " u32",
        tc_reader(rig), 1000);
}

TEST_CASE("the device deleted and created again gets its tree back, status says missing meanwhile") {
    require_netns_privileges();
    const std::string firewall = each_firewall();
    INFO("firewall = " << firewall);
    FaultRig rig("linkdel", fault_settings("1s", firewall), fault_policy_body());
    rig.start();
    const std::string before = tc_tree_text(rig.net.server);
    const RepairsSeen was = repairs_seen(rig);
    rig.net.server.exec_ok("ip link del veth-s");
    CHECK(wait_until([&] { return rig.device_state() == "missing"; }, kWaitMs, 50));
    // Recreated as it was: the same name, address and peer in the client namespace.
    rig.net.server.exec_ok("ip link add veth-s type veth peer name veth-c netns " + rig.net.client.name());
    rig.net.server.exec_ok("ip addr add 10.200.0.1/24 dev veth-s");
    rig.net.server.exec_ok("ip link set veth-s up");
    rig.net.client.exec_ok("ip addr add 10.200.0.2/24 dev veth-c");
    rig.net.client.exec_ok("ip link set veth-c up");
    // How fast is the root qdisc case's subject; here it is that the tree comes back at all.
    auto took = time_until([&] { return tc_tree_text(rig.net.server) == before; }, kWaitMs, 10);
    INFO(tc_tree_text(rig.net.server) << "\nlog:\n" << rig.daemon->log());
    REQUIRE(took);
    WARN("tree back on the recreated device " << *took << " ms after it came up");
    rig.wait_in_sync();
    CHECK(wait_until([&] { return repairs_seen(rig).audit > was.audit; }));
    // Traffic to the capped client goes through its class again.
    rig.net.client.exec_ok("ip addr add 10.200.0.7/24 dev veth-c");
    rig.net.server.exec_ok("ping -c 3 -i 0.2 -W 1 10.200.0.7");
    std::string cap_class = rig.classid_of("cap customer 10.200.0.7");
    REQUIRE_FALSE(cap_class.empty());
    CHECK(class_bytes(rig.net.server, "veth-s", cap_class) > 0);
}

TEST_CASE("a tool deleting the root qdisc in a loop makes the daemon back off and say so, at low CPU") {
    require_netns_privileges();
    const std::string firewall = each_firewall();
    INFO("firewall = " << firewall);
    FaultRig rig("fight", fault_settings("1s", firewall), fault_policy_body());
    rig.start();
    const std::string before = tc_tree_text(rig.net.server);
    auto cpu_ticks = [&] {
        std::ifstream in("/proc/" + std::to_string(rig.daemon->pid()) + "/stat");
        std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::istringstream fields(stat.substr(stat.rfind(')') + 2));
        std::string f;
        unsigned long long utime = 0, stime = 0;
        for (int i = 3; i <= 15 && fields >> f; ++i) {
            if (i == 14) utime = std::stoull(f);
            if (i == 15) stime = std::stoull(f);
        }
        return utime + stime;
    };
    auto ticks0 = cpu_ticks();
    auto t0 = std::chrono::steady_clock::now();
    // 10 s of `tc qdisc del` every 50 ms (it fails quietly while the root is already gone): the
    // fight's length and pace are the case's setting, durations, not waits.
    rig.net.server.exec_ok(
        "sh -c 'end=$(($(date +%s) + 10)); while [ $(date +%s) -lt $end ]; do "
        "tc qdisc del dev veth-s root 2>/dev/null; sleep 0.05; done'");
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double cpu_s = static_cast<double>(cpu_ticks() - ticks0) / static_cast<double>(sysconf(_SC_CLK_TCK));
    auto repairs = rig.counter("drift_repairs");
    INFO(rig.daemon->log());
    WARN("while fought for " << secs << " s: " << repairs << " repairs, daemon CPU " << cpu_s << " s");
    CHECK(rig.daemon->log().find(
              "error: flowshaper's objects keep being removed or changed by something else") !=
          std::string::npos);
    CHECK(repairs >= 5);   // it did repair at first
    CHECK(repairs <= 14);  // ...then spaced the repairs out (without a back-off: one per ~70 ms)
    // Low CPU is the subject: a daemon fighting in a tight loop takes the whole CPU (1.0 of the
    // wall time); 14 repairs and 10 polls take a few percent here. Half leaves room for a machine
    // 20x slower (emulated), where each repair costs 20x more CPU, and still tells the two apart.
    CHECK(cpu_s < 0.5 * secs);
    // Once the tool stops, the next repair (at most one back-off later, at most a minute) restores
    // the tree.
    auto took = time_until([&] { return tc_tree_text(rig.net.server) == before; }, 60'000 + kWaitMs, 50);
    REQUIRE(took);
    WARN("tree back " << *took << " ms after the loop ended");
}
