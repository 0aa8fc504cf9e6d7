// `flowshaper run` end to end: detection, marking, capping and release on real traffic, checked
// with tools that are not flowshaper's: tcpdump/tshark, conntrack -L, tc -j, iptables-legacy-save,
// nft -j, ipset. Every case runs on both mangle backends (GENERATE over `firewall`).
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <sstream>
#include <thread>

#include "background.hpp"
#include "daemon_fixture.hpp"
#include "kernel_has.hpp"
#include "status_socket.hpp"

using namespace flowshaper::testing;
using namespace std::chrono_literals;

namespace {

// `settings`: more [settings] lines (a status socket).
std::string header(const std::string& firewall, const std::string& settings = "") {
    return "[settings]\npoll_interval = \"200ms\"\nfirewall = \"" + firewall + "\"\n" + settings +
           "\n[[interface]]\ndevice = \"veth-s\"\nrate = \"1gbit\"\n\n";
}

std::string upload_rule(const std::string& firewall, const std::string& threshold,
                        const std::string& settings = "") {
    return header(firewall, settings) +
           "[[detect]]\nname = \"bulk-upload\"\ndevice = \"veth-s\"\nprotocol = \"tcp\"\nremote_ports = "
           "[5301]\n"
           "flow_bytes = \"" +
           threshold + "\"\ndscp = \"CS1\"\nlimit = { rate = \"20mbit\" }\nrelease_after = \"1m\"\n";
}

// This host (the server namespace) uploads to `to` on port 5301 for `seconds` (or `bytes`).
void upload(const VethPair& net, const std::string& to, const std::string& amount, bool background) {
    REQUIRE(wait_until([&] { return !net.client.listens("tcp", 5301); }));  // the last one's server is gone
    net.client.exec_ok("iperf3 -s -1 -D -B " + to + " -p 5301");
    REQUIRE(wait_until([&] { return net.client.listens("tcp", 5301); }));
    std::string cmd = "ip netns exec " + net.server.name() + " iperf3 -c " + to + " -p 5301 " + amount;
    sh(background ? cmd + " >/dev/null 2>&1 &" : cmd + " >/dev/null 2>&1");
}

// The layer-2 rate of `classid` over `window`: the window is a duration (what is measured), and
// the bytes are divided by the time that really passed.
double l2_rate(const Netns& ns, const std::string& classid, std::chrono::seconds window) {
    auto t0 = std::chrono::steady_clock::now();
    uint64_t b0 = class_bytes(ns, "veth-s", classid);
    std::this_thread::sleep_for(window);
    uint64_t b1 = class_bytes(ns, "veth-s", classid);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return static_cast<double>(b1 - b0) * 8 / secs;
}

// Connections matching `parts` that carry rule 1's ctmark `u32_mark` exactly (classifier u32); with
// fw a client number sits beside the rule's bit, so only the bits of `u32_mark` are compared.
std::vector<std::string> marked_lines(const Netns& ns, std::vector<std::string> parts,
                                      unsigned long u32_mark) {
    if (!kernel_has("CONFIG_NET_CLS_FW", "cls_fw")) {
        parts.push_back("mark=" + std::to_string(u32_mark) + " ");
        return conntrack_lines(ns, parts);
    }
    parts.push_back(" mark=");
    std::vector<std::string> out;
    for (const auto& line : conntrack_lines(ns, parts))
        if ((std::stoul(line.substr(line.find(" mark=") + 6)) & u32_mark) == u32_mark) out.push_back(line);
    return out;
}

void classic_case(const std::string& client, const std::string& light_client,
                  const std::string& filter_needle) {
    require_netns_privileges();
    const std::string firewall = each_firewall();
    INFO("firewall = " << firewall);
    VethPair net("up");
    net.add_client_address(light_client.find(':') == std::string::npos ? light_client + "/24"
                                                                       : light_client + "/64");
    TempPolicy policy(upload_rule(firewall, "20MB"));
    Daemon daemon(net.server, policy.path());
    REQUIRE(daemon.wait_for_log("ready"));
    REQUIRE(daemon.log().find("firewall: " + firewall) != std::string::npos);
    // classifier = "auto": fw where the kernel has cls_fw (a stock kernel), else hashed u32.
    const bool fw = kernel_has("CONFIG_NET_CLS_FW", "cls_fw");
    INFO("classifier " << (fw ? "fw" : "u32"));
    CHECK(daemon.log().find(fw ? "classifier fw" : "classifier u32") != std::string::npos);

    std::string pcap = policy.path() + ".pcap";
    Background capture(net.client, "tcpdump -i veth-c -s 96 -w " + pcap + " 'tcp port 5301'", pcap + ".log");
    REQUIRE(wait_until([&] { return sh("grep -q 'listening on' " + pcap + ".log") == 0; }));
    upload(net, light_client, "-n 2M", false);  // below the threshold: never marked
    // Long enough for a slow machine to decide and place the class while it runs; stopped once
    // the rate is measured (below).
    upload(net, client, "-t 120", true);
    REQUIRE(daemon.wait_for_log("mark client=" + client));
    // The mark reaches the heavy connection's conntrack entry, and the client gets its class.
    CHECK(wait_until([&] {
        return !marked_lines(net.server, {client, "dport=5301"}, 8454144).empty() &&
               !heavy_class_of(net.server, "veth-s", client, filter_needle).empty();
    }));

    // The kernel's own view of the connections: the heavy one carries flowshaper's ctmark, rule 1
    // (0x10000) and the prefilter's candidate flag (0x800000) that xt_connbytes set past 20MB.
    CHECK(daemon.log().find("conntrack prefilter: the kernel flags connections past 20000000 bytes") !=
          std::string::npos);
    auto heavy = marked_lines(net.server, {client, "dport=5301"}, 8454144);
    CHECK(heavy.size() >= 1);
    auto light = conntrack_lines(net.server, {light_client, "dport=5301"});
    REQUIRE_FALSE(light.empty());  // else the loop below checks nothing
    for (const auto& l : light) CHECK(l.find("mark=0 ") != std::string::npos);

    // The heavy client's rate settles at the rule's limit (layer 2, from tc's counters).
    auto classid = heavy_class_of(net.server, "veth-s", client, filter_needle);
    REQUIRE_FALSE(classid.empty());
    double rate = l2_rate(net.server, classid, 4s);
    INFO("heavy client at layer 2: " << rate / 1e6 << " Mbit/s");
    // Capped: never above the limit (10% for counting windows). How close below it the sender
    // gets depends on the machine (18.9 of 20 Mbit/s here with the bfifo leaf, whose drops tell
    // this host's own TCP sender to back off at once; 8-17 under qemu TCG, by its load), so the
    // lower bound only says that the heavy connection's packets land in the class.
    WARN("heavy client at layer 2: " << rate / 1e6 << " Mbit/s (limit 20)");
    CHECK(rate <= 1.10 * 20e6);
    CHECK(rate >= 1e6);
    // Stop the upload: SIGTERM to the iperf3 client in the server namespace (ip netns pids: that
    // namespace's processes only), then wait until both ends are gone.
    sh("for p in $(ip netns pids " + net.server.name() +
       "); do [ \"$(cat /proc/$p/comm 2>/dev/null)\" = iperf3 ] && kill $p; done; true");
    REQUIRE(wait_until([&] { return !net.server.runs("iperf3") && !net.client.runs("iperf3"); }));
    capture.stop();  // SIGTERM: tcpdump writes out what it captured

    // A capture on the receiving side: packets of the heavy connection carry CS1, the light one's none.
    bool v6 = client.find(':') != std::string::npos;
    std::string field = v6 ? "ipv6.tclass.dscp" : "ip.dsfield.dscp";
    std::string dst = v6 ? "ipv6.dst" : "ip.dst";
    std::string out;
    sh("tshark -r " + pcap + " -Y '" + dst + " == " + client + " && tcp.dstport == 5301 && " + field +
           " == 8' 2>/dev/null | wc -l",
       &out);
    CHECK(std::stoul(out) > 100);
    sh("tshark -r " + pcap + " -Y '" + dst + " == " + light_client + " && " + field +
           " != 0' 2>/dev/null | wc -l",
       &out);
    CHECK(std::stoul(out) == 0);
    sh("tshark -r " + pcap + " -Y '" + dst + " == " + light_client + "' 2>/dev/null | wc -l", &out);
    CHECK(std::stoul(out) >= 10);  // it was captured, unmarked (GSO: few, large packets)
    std::remove(pcap.c_str());
    std::remove((pcap + ".log").c_str());
}

}  // namespace

TEST_CASE(
    "an IPv4 connection this host opens that passes flow_bytes leaves with the DSCP, its ctmark, capped") {
    classic_case("10.200.0.2", "10.200.0.3", "00200000/00fc0000 at 0");
}

TEST_CASE("IPv6 flows are marked and capped like IPv4 ones") {
    classic_case("fd00:200::2", "fd00:200::3", "02000000/0fc00000 at 0");
}

TEST_CASE(
    "a client passing client_bytes over several connections is capped, another keeps full speed, "
    "and the cap is lifted after release_after") {
    require_netns_privileges();
    const std::string firewall = each_firewall();
    INFO("firewall = " << firewall);
    VethPair net("srv");
    net.add_client_address("10.200.0.3/24");
    TempPolicy policy(header(firewall) +
                      "[[detect]]\nname = \"mailbox-sync\"\ndevice = \"veth-s\"\nprotocol = \"tcp\"\n"
                      "local_ports = [5201]\nclient_bytes = \"30MB\"\nwindow = \"1m\"\n"
                      "limit = { rate = \"10mbit\" }\nrelease_after = \"3s\"\n");
    Daemon daemon(net.server, policy.path());
    REQUIRE(daemon.wait_for_log("ready"));
    auto download = [&](const std::string& from, int port, const std::string& amount) {
        REQUIRE(wait_until([&] { return !net.server.listens("tcp", port); }));  // the last one's is gone
        net.server.exec_ok("iperf3 -s -1 -D -p " + std::to_string(port));
        REQUIRE(wait_until([&] { return net.server.listens("tcp", port); }));
        std::string out;
        net.client.exec("iperf3 -c 10.200.0.1 -B " + from + " -p " + std::to_string(port) + " -R " + amount,
                        &out);
        return out;
    };
    for (int i = 0; i < 4 && daemon.log().find("mark client=10.200.0.2") == std::string::npos; ++i)
        download("10.200.0.2", 5201, "-n 12M");  // each connection alone is small
    REQUIRE(daemon.wait_for_log("mark client=10.200.0.2"));
    CHECK(tc_class_table(net.server, "veth-s").size() == 3);  // root, default, the heavy client
    // Its next download runs at the limit (TCP goodput a little under the 10 Mbit/s at layer 2),
    // its connections carrying the rule's ctmark.
    auto capped = nlohmann::json::parse(download("10.200.0.2", 5201, "-t 3 -J"));
    double capped_rate = capped["end"]["sum_received"]["bits_per_second"].get<double>();
    INFO("the heavy client: " << capped_rate / 1e6 << " Mbit/s");
    CHECK(capped_rate < 10.5e6);
    CHECK(capped_rate > 8e6);
    CHECK_FALSE(marked_lines(net.server, {"src=10.200.0.2", "dport=5201"}, 65536).empty());

    // The other client, on a port the rule does not name, keeps full speed meanwhile.
    std::string out = download("10.200.0.3", 5202, "-t 3 -J");
    auto rate = nlohmann::json::parse(out)["end"]["sum_received"]["bits_per_second"].get<double>();
    INFO("the other client: " << rate / 1e6 << " Mbit/s");
    CHECK(rate > 10 * 10e6);  // ten times the heavy client's limit
    CHECK(daemon.log().find("mark client=10.200.0.3") == std::string::npos);

    // Quiet for release_after: the class is gone.
    REQUIRE(daemon.wait_for_log("release client=10.200.0.2"));
    CHECK(wait_until([&] {
        return tc_class_table(net.server, "veth-s").size() == 2 &&
               marked_lines(net.server, {"10.200.0.2"}, 65536).empty();
    }));
    CHECK(tc_class_table(net.server, "veth-s").size() == 2);
    CHECK(marked_lines(net.server, {"10.200.0.2"}, 65536).empty());
}

TEST_CASE(
    "someone else's firewall (legacy mangle rules, an nft table, an iptables-nft rule) is untouched, and "
    "flowshaper leaves nothing after SIGTERM") {
    require_netns_privileges();
    const std::string firewall = each_firewall();
    INFO("firewall = " << firewall);
    VethPair net("ipt");
    net.server.exec_ok("iptables-legacy -t mangle -N USERCHAIN");
    net.server.exec_ok("iptables-legacy -t mangle -A POSTROUTING -p udp --dport 9999 -j MARK --set-mark 0x1");
    net.server.exec_ok("iptables-legacy -t mangle -A USERCHAIN -j RETURN");
    net.server.exec_ok(
        "ip6tables-legacy -t mangle -A POSTROUTING -p udp --dport 9999 -j MARK --set-mark 0x1");
    net.server.exec_ok("nft add table inet othertool");
    net.server.exec_ok(
        "nft add chain inet othertool post '{ type filter hook postrouting priority mangle; policy accept; "
        "}'");
    net.server.exec_ok("nft add rule inet othertool post udp dport 9998 meta mark set 0x2");
    net.server.exec_ok("iptables-nft -t mangle -A POSTROUTING -p udp --dport 9997 -j MARK --set-mark 0x3");
    const std::string before = others_firewall(net.server);
    REQUIRE(before.find("othertool") != std::string::npos);
    REQUIRE(before.find("USERCHAIN") != std::string::npos);

    TempPolicy policy(upload_rule(firewall, "20MB"));
    Daemon daemon(net.server, policy.path());
    REQUIRE(daemon.wait_for_log("ready"));
    // flowshaper's objects are there, in the chosen backend only; everything else is as it was.
    const std::string legacy = mangle_save(net.server, false) + mangle_save(net.server, true);
    std::string tables = net.server.exec_ok("nft list tables");
    if (firewall == "iptables") {
        CHECK(count_lines(mangle_save(net.server, false), "-A POSTROUTING -j FLOWSHAPER") == 1);
        CHECK(tables.find("inet flowshaper") == std::string::npos);
    } else {
        CHECK(count_lines(tables, "table inet flowshaper") == 1);
        CHECK(legacy.find("FLOWSHAPER") == std::string::npos);
    }
    CHECK(others_firewall(net.server) == before);
    CHECK(daemon.stop(SIGTERM) == 0);
    CHECK(others_firewall(net.server) == before);
    CHECK(mangle_objects(net.server, "iptables").find("FLOWSHAPER") == std::string::npos);
    CHECK(mangle_objects(net.server, "nftables").empty());
    std::string sets;
    net.server.exec("ipset list -n", &sets);
    CHECK(sets.find("flowshaper") == std::string::npos);
    CHECK(tc_json(net.server, "qdisc show dev veth-s")[0]["kind"] == "noqueue");
}

TEST_CASE("after SIGKILL a restarted daemon adopts what is in the kernel and duplicates nothing") {
    require_netns_privileges();
    const std::string firewall = each_firewall();
    INFO("firewall = " << firewall);
    VethPair net("kill");
    StatusSocketPath status;
    TempPolicy policy(upload_rule(firewall, "5MB", status.setting()));
    auto first = std::make_unique<Daemon>(net.server, policy.path());
    REQUIRE(first->wait_for_log("ready"));
    upload(net, "10.200.0.2", "-t 4", true);
    REQUIRE(first->wait_for_log("mark client=10.200.0.2"));
    // The class, then (u32) the kernel set's member that follows it. With fw (a kernel with
    // cls_fw) the client's mark names its class and no kernel set is used.
    const bool fw = kernel_has("CONFIG_NET_CLS_FW", "cls_fw");
    INFO("classifier " << (fw ? "fw" : "u32"));
    const size_t members = fw ? 0 : 1;
    CHECK(wait_until([&] {
        const auto c = kernel_counts(net.server);
        return c.classes == 3 && c.set_members == members;
    }));
    auto classes_before = tc_class_table(net.server, "veth-s").size();
    auto before = kernel_counts(net.server);
    INFO("before: " << before);
    CHECK(before.classes == 3);               // the root class, the default class and the heavy client's
    CHECK(before.qdiscs == 3);                // htb and a leaf qdisc under each leaf class
    CHECK(before.filters >= (fw ? 1u : 4u));  // its fw filter, or a hash table, its link and its DSCP node
    CHECK(before.set_members == members);     // u32: the capped client, in the kernel set of its rule
    if (firewall == "iptables") {
        CHECK(before.rules4 >= 2);
        CHECK(before.nft_rules == 0);
    } else {
        CHECK(before.nft_rules >= 4);
        CHECK(before.rules4 == 0);
    }
    CHECK(first->stop(SIGKILL) == 128 + SIGKILL);
    first.reset();

    Daemon second(net.server, policy.path());
    REQUIRE(second.wait_for_log("ready"));
    CHECK(second.log().find("adopted heavy client 10.200.0.2") != std::string::npos);
    REQUIRE(wait_for_polls(status.path(), 5));  // what a restart would duplicate, it would have by now
    const std::string text = mangle_objects(net.server, firewall);
    if (firewall == "iptables") {
        CHECK(count_lines(text, "-A POSTROUTING -j FLOWSHAPER") == 2);  // IPv4 and IPv6
        CHECK(count_lines(text, ":FLOWSHAPER") == 2);
        CHECK(count_lines(text, "--restore-mark") == 2);
    } else {
        CHECK(count_lines(net.server.exec_ok("nft list tables"), "table inet flowshaper") == 1);
        CHECK(count_lines(text, "jump v4_restore") == 1);
        CHECK(count_lines(text, "meta nfproto vmap") == 1);
    }
    CHECK(tc_class_table(net.server, "veth-s").size() == classes_before);
    CHECK(kernel_counts(net.server) == before);  // not one qdisc, class, filter, rule or member more or less
    CHECK(second.log().find("mark client=10.200.0.2") == std::string::npos);  // not decided twice

    // Killed again, `flowshaper flush` removes everything the daemon left.
    CHECK(second.stop(SIGKILL) == 128 + SIGKILL);
    // Its connection still carries rule 1's mark and the candidate flag (fw: and its client number).
    CHECK_FALSE(marked_lines(net.server, {"10.200.0.2", "dport=5301"}, 8454144).empty());
    std::string out;
    REQUIRE(net.server.exec(std::string(FLOWSHAPER_BIN) + " flush", &out) == 0);
    INFO(out);
    CHECK(out.find("removed flowshaper's chains") != std::string::npos);
    CHECK(mangle_objects(net.server, "iptables").find("FLOWSHAPER") == std::string::npos);
    CHECK(mangle_objects(net.server, "nftables").empty());
    std::string sets;
    net.server.exec("ipset list -n", &sets);
    CHECK(sets.find("flowshaper") == std::string::npos);
    auto left = conntrack_lines(net.server, {"10.200.0.2"});
    CHECK_FALSE(left.empty());
    for (const auto& l : left) CHECK(l.find("mark=0 ") != std::string::npos);  // flag included
    CHECK(tc_json(net.server, "qdisc show dev veth-s")[0]["kind"] == "noqueue");
    // The upload ends before the namespaces go.
    CHECK(wait_until([&] { return !net.server.runs("iperf3") && !net.client.runs("iperf3"); }));
}
