// Static caps end to end: `flowshaper apply` in a namespace, checked with tc -j and iperf3.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "netns.hpp"
#include "tc_text.hpp"

using flowshaper::testing::Netns;
using flowshaper::testing::require_netns_privileges;
using flowshaper::testing::sh;
using flowshaper::testing::tc_class_table;
using flowshaper::testing::VethPair;
using json = nlohmann::json;

namespace {

struct TempFile {
    std::string path;
    explicit TempFile(const std::string& text) {
        char tmpl[] = "/tmp/fs-e2e-XXXXXX";
        int fd = mkstemp(tmpl);
        REQUIRE(fd >= 0);
        close(fd);
        path = std::string(tmpl) + ".toml";
        std::rename(tmpl, path.c_str());
        std::ofstream(path) << text;
    }
    ~TempFile() { std::remove(path.c_str()); }
};

// A policy for veth-s: 1gbit link, client caps as given ("addr rate" pairs).
std::string policy(const std::vector<std::pair<std::string, std::string>>& caps) {
    std::string text = "[[interface]]\ndevice = \"veth-s\"\nrate = \"1gbit\"\n";
    int n = 0;
    for (const auto& [client, rate] : caps)
        text += "\n[[cap]]\nname = \"c" + std::to_string(n++) + "\"\ndevice = \"veth-s\"\nclients = [\"" +
                client + "\"]\nrate = \"" + rate + "\"\n";
    return text;
}

int run_fs(const Netns& ns, const std::string& args, std::string* out = nullptr) {
    return ns.exec(std::string(FLOWSHAPER_BIN) + " " + args, out);
}

json tc_json(const Netns& ns, const std::string& what) {
    return json::parse(ns.exec_ok("tc -s -j " + what));
}

std::string flowid_of(const Netns& ns, const std::string& needle) {
    return flowshaper::testing::tc_flowid_of(ns, "veth-s", needle);
}

uint64_t class_bytes(const Netns& ns, const std::string& classid) {
    auto classes = tc_class_table(ns, "veth-s");
    auto it = classes.find(classid);
    return it == classes.end() ? 0 : it->second.bytes;
}

// Downloads from the server for `seconds` with iperf3 -R from `client_addr`; returns the layer-2
// rate of `classid` measured from its byte counter between second 2 and second seconds-1.
double download_l2_rate(const VethPair& net, const std::string& server_addr, const std::string& client_addr,
                        int port, const std::string& classid, int seconds = 6) {
    net.server.exec_ok("iperf3 -s -1 -D -p " + std::to_string(port));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    sh("ip netns exec " + net.client.name() + " iperf3 -c " + server_addr + " -B " + client_addr + " -p " +
       std::to_string(port) + " -R -t " + std::to_string(seconds) + " >/dev/null 2>&1 &");
    std::this_thread::sleep_for(std::chrono::seconds(2));
    auto t0 = std::chrono::steady_clock::now();
    uint64_t b0 = class_bytes(net.server, classid);
    std::this_thread::sleep_for(std::chrono::seconds(seconds - 3));
    uint64_t b1 = class_bytes(net.server, classid);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::this_thread::sleep_for(std::chrono::seconds(2));
    return static_cast<double>(b1 - b0) * 8 / secs;
}

}  // namespace

TEST_CASE("a capped client downloads at its cap within 5% at layer 2, and an uncapped one is not held to it",
          "[traffic]") {
    require_netns_privileges();
    VethPair net("cap");
    net.add_client_address("10.200.0.3/24");
    net.add_client_address("fd00:200::3/64");
    TempFile p(policy({{"10.200.0.2", "20mbit"}, {"fd00:200::2", "30mbit"}}));
    REQUIRE(run_fs(net.server, "apply " + p.path) == 0);
    auto v4_class = flowid_of(net.server, "0ac80002/ffffffff at 16");
    REQUIRE_FALSE(v4_class.empty());

    double capped = download_l2_rate(net, "10.200.0.1", "10.200.0.2", 5201, v4_class);
    INFO("capped IPv4 client: " << capped / 1e6 << " Mbit/s at layer 2");
    CHECK(capped == Approx(20e6).epsilon(0.05));

    double other = download_l2_rate(net, "10.200.0.1", "10.200.0.3", 5202, "f5:2");
    INFO("uncapped client: " << other / 1e6 << " Mbit/s at layer 2");
    CHECK(other > 3 * 20e6);

    auto v6_class = flowid_of(net.server, "00000002/ffffffff at 36");
    REQUIRE_FALSE(v6_class.empty());
    double capped6 = download_l2_rate(net, "fd00:200::1", "fd00:200::2", 5203, v6_class);
    INFO("capped IPv6 client: " << capped6 / 1e6 << " Mbit/s at layer 2");
    CHECK(capped6 == Approx(30e6).epsilon(0.05));
}

TEST_CASE("the tree tc shows matches the plan, and applying it twice sends no change") {
    require_netns_privileges();
    VethPair net("tree");
    TempFile p(policy({{"10.200.0.2", "5mbit"}, {"10.9.8.0/24", "7mbit"}, {"2001:db8:1::/64", "9mbit"}}));
    std::string out;
    REQUIRE(run_fs(net.server, "apply " + p.path, &out) == 0);
    auto qdiscs = tc_json(net.server, "qdisc show dev veth-s");
    REQUIRE(qdiscs.size() >= 1);
    CHECK(qdiscs[0]["kind"] == "htb");
    CHECK(qdiscs[0]["handle"] == "f5:");
    auto classes = tc_class_table(net.server, "veth-s");
    CHECK(classes.size() == 5);  // root, default, three clients
    REQUIRE(classes.count("f5:1"));
    CHECK(classes["f5:1"].rate == "1Gbit");
    CHECK(classes["f5:1"].parent == "root");
    CHECK(classes["f5:2"].parent == "f5:1");
    // Each client's class has its rate and a filter pointing at it.
    for (auto [needle, rate] :
         {std::pair{"0ac80002/ffffffff at 16", "5Mbit"}, std::pair{"0a090800/ffffff00 at 16", "7Mbit"},
          std::pair{"20010db8/ffffffff at 24", "9Mbit"}}) {
        auto id = flowid_of(net.server, needle);
        INFO(needle);
        REQUIRE_FALSE(id.empty());
        REQUIRE(classes.count(id));
        CHECK(classes[id].rate == rate);
        CHECK(classes[id].parent == "f5:1");
    }
    // The plan's tc script, run by tc -batch on a second device, builds the same classes.
    std::string script;
    REQUIRE(run_fs(net.server, "plan --format tc " + p.path, &script) == 0);
    CHECK(script.find("class add dev veth-s") != std::string::npos);

    REQUIRE(run_fs(net.server, "apply " + p.path, &out) == 0);
    CHECK(out.find("veth-s: 0 changes sent") != std::string::npos);
}

TEST_CASE("changing one cap's rate changes that class in place and its counters keep counting") {
    require_netns_privileges();
    VethPair net("chg");
    TempFile p(policy({{"10.200.0.2", "5mbit"}, {"10.200.0.9", "5mbit"}}));
    REQUIRE(run_fs(net.server, "apply " + p.path) == 0);
    auto id = flowid_of(net.server, "0ac80002/ffffffff at 16");
    REQUIRE_FALSE(id.empty());
    net.server.exec_ok("ping -c 20 -i 0.01 -q 10.200.0.2");
    uint64_t before = class_bytes(net.server, id);
    CHECK(before > 20 * 84);
    TempFile q(policy({{"10.200.0.2", "8mbit"}, {"10.200.0.9", "5mbit"}}));
    std::string out;
    REQUIRE(run_fs(net.server, "apply -v " + q.path, &out) == 0);
    CHECK(out.find("veth-s: 1 changes sent") != std::string::npos);
    CHECK(out.find("change class " + id) != std::string::npos);
    CHECK(flowid_of(net.server, "0ac80002/ffffffff at 16") == id);
    auto classes = tc_class_table(net.server, "veth-s");
    REQUIRE(classes.count(id));
    CHECK(classes[id].rate == "8Mbit");
    CHECK(classes[id].bytes >= before);
}

TEST_CASE("removing a cap removes its class and filter, and flush removes everything") {
    require_netns_privileges();
    VethPair net("rm");
    TempFile p(policy({{"10.200.0.2", "5mbit"}, {"10.200.0.9", "6mbit"}}));
    REQUIRE(run_fs(net.server, "apply " + p.path) == 0);
    auto gone = flowid_of(net.server, "0ac80009/ffffffff at 16");
    REQUIRE_FALSE(gone.empty());
    TempFile q(policy({{"10.200.0.2", "5mbit"}}));
    REQUIRE(run_fs(net.server, "apply " + q.path) == 0);
    CHECK(flowid_of(net.server, "0ac80009/ffffffff at 16").empty());
    CHECK(tc_class_table(net.server, "veth-s").count(gone) == 0);
    CHECK_FALSE(flowid_of(net.server, "0ac80002/ffffffff at 16").empty());

    REQUIRE(run_fs(net.server, "flush") == 0);
    auto qdiscs = tc_json(net.server, "qdisc show dev veth-s");
    REQUIRE(qdiscs.size() == 1);
    CHECK(qdiscs[0]["kind"] == "noqueue");
    CHECK(tc_class_table(net.server, "veth-s").empty());
    CHECK(net.server.exec_ok("tc filter show dev veth-s").empty());
}

TEST_CASE("a root qdisc someone else configured is refused and left intact, unless --force") {
    require_netns_privileges();
    VethPair net("foreign");
    net.server.exec_ok("tc qdisc add dev veth-s root handle 1: tbf rate 100mbit burst 32kb latency 50ms");
    TempFile p(policy({{"10.200.0.2", "5mbit"}}));
    std::string out;
    CHECK(run_fs(net.server, "apply " + p.path, &out) == 1);
    CHECK(out.find("which flowshaper did not create") != std::string::npos);
    CHECK(out.find("--force") != std::string::npos);
    auto qdiscs = tc_json(net.server, "qdisc show dev veth-s");
    CHECK(qdiscs[0]["kind"] == "tbf");
    CHECK(qdiscs[0]["handle"] == "1:");
    CHECK(run_fs(net.server, "flush") == 0);  // flush leaves it alone too
    CHECK(tc_json(net.server, "qdisc show dev veth-s")[0]["kind"] == "tbf");
    REQUIRE(run_fs(net.server, "apply --force " + p.path) == 0);
    CHECK(tc_json(net.server, "qdisc show dev veth-s")[0]["handle"] == "f5:");
}

TEST_CASE("an invalid policy or a missing kernel feature changes nothing") {
    require_netns_privileges();
    VethPair net("bad");
    TempFile bad("[[interface]]\ndevice = \"veth-s\"\nrate = \"1gbitt\"\n");
    std::string out;
    CHECK(run_fs(net.server, "apply " + bad.path, &out) == 1);
    CHECK(out.find(bad.path + ":3:8: error:") != std::string::npos);
    TempFile fw("[settings]\nclassifier = \"fw\"\n\n" + policy({{"10.200.0.2", "5mbit"}}));
    CHECK(run_fs(net.server, "apply " + fw.path, &out) == 1);
    CHECK(out.find("no cls_fw") != std::string::npos);
    CHECK(tc_json(net.server, "qdisc show dev veth-s")[0]["kind"] == "noqueue");
    TempFile nodev("[[interface]]\ndevice = \"nosuchdev0\"\nrate = \"1gbit\"\n");
    CHECK(run_fs(net.server, "apply " + nodev.path, &out) == 1);
    CHECK(out.find("nosuchdev0") != std::string::npos);
}
