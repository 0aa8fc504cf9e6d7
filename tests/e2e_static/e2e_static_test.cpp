// Static caps end to end: `flowshaper apply` in a namespace, checked with tc -j and iperf3.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "netns.hpp"
#include "tc_text.hpp"
#include "wait.hpp"

using flowshaper::testing::Netns;
using flowshaper::testing::require_netns_privileges;
using flowshaper::testing::sh;
using flowshaper::testing::tc_class_table;
using flowshaper::testing::VethPair;
using flowshaper::testing::wait_until;
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

// iperf3 has ended in both namespaces (a one-off server exits after its test).
bool iperf3_done(const VethPair& net) {
    return !net.server.runs("iperf3") && !net.client.runs("iperf3");
}

// Downloads from the server for `seconds` with iperf3 -R from `client_addr`; returns the layer-2
// rate of `classid` measured from its byte counter between second 2 and second seconds-1. Those
// are durations: TCP's ramp-up left out, then the window measured (the bytes divided by the time
// that really passed).
double download_l2_rate(const VethPair& net, const std::string& server_addr, const std::string& client_addr,
                        int port, const std::string& classid, int seconds = 6) {
    REQUIRE(wait_until([&] { return iperf3_done(net); }));  // the last one's server is gone
    net.server.exec_ok("iperf3 -s -1 -D -p " + std::to_string(port));
    REQUIRE(wait_until([&] { return net.server.listens("tcp", port); }));
    sh("ip netns exec " + net.client.name() + " iperf3 -c " + server_addr + " -B " + client_addr + " -p " +
       std::to_string(port) + " -R -t " + std::to_string(seconds) + " >/dev/null 2>&1 &");
    std::this_thread::sleep_for(std::chrono::seconds(2));
    auto t0 = std::chrono::steady_clock::now();
    uint64_t b0 = class_bytes(net.server, classid);
    std::this_thread::sleep_for(std::chrono::seconds(seconds - 3));
    uint64_t b1 = class_bytes(net.server, classid);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    REQUIRE(wait_until([&] { return iperf3_done(net); }));
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
    REQUIRE(run_fs(net.server, "apply " + p.path, &out) == 0);
    CHECK(out.find("veth-s: 0 changes sent") != std::string::npos);
}

TEST_CASE(
    "changing one cap's rate changes that class and its leaf queue in place and its counters keep counting") {
    require_netns_privileges();
    VethPair net("chg");
    TempFile p(policy({{"10.200.0.2", "8mbit"}, {"10.200.0.9", "8mbit"}}));
    REQUIRE(run_fs(net.server, "apply " + p.path) == 0);
    auto id = flowid_of(net.server, "0ac80002/ffffffff at 16");
    REQUIRE_FALSE(id.empty());
    net.server.exec_ok("ping -c 20 -i 0.01 -q 10.200.0.2");
    uint64_t before = class_bytes(net.server, id);
    CHECK(before > 20 * 84);
    // Every leaf qdisc by its parent class: kind, limit and the handle the kernel keeps.
    auto leaves = [&] {
        std::map<std::string, std::pair<std::string, uint64_t>> out;
        for (const auto& q : tc_json(net.server, "qdisc show dev veth-s"))
            if (q.contains("parent"))
                out[q["parent"].get<std::string>()] = {q["handle"].get<std::string>(),
                                                       q["options"].value("limit", uint64_t{0})};
        return out;
    };
    auto leaves_before = leaves();
    REQUIRE(leaves_before.count(id));
    CHECK(leaves_before[id].second == 100'000);  // bfifo: 100 ms at 8 Mbit/s (above the floor)
    TempFile q(policy({{"10.200.0.2", "12mbit"}, {"10.200.0.9", "8mbit"}}));
    std::string out;
    REQUIRE(run_fs(net.server, "apply -v " + q.path, &out) == 0);
    CHECK(out.find("veth-s: 2 changes sent") != std::string::npos);  // the class and its bfifo
    CHECK(out.find("change class " + id) != std::string::npos);
    auto leaves_after = leaves();
    CHECK(leaves_after.size() == leaves_before.size());
    for (const auto& [parent, leaf] : leaves_before) {
        INFO(parent);
        REQUIRE(leaves_after.count(parent));
        CHECK(leaves_after[parent].first == leaf.first);
        CHECK(leaves_after[parent].second == (parent == id ? 150'000 : leaf.second));  // 100 ms at 12 Mbit/s
    }
    CHECK(flowid_of(net.server, "0ac80002/ffffffff at 16") == id);
    auto classes = tc_class_table(net.server, "veth-s");
    REQUIRE(classes.count(id));
    CHECK(classes[id].rate == "12Mbit");
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

namespace {

// One client of every hashed prefix length range, the two IPv6 host/64 layouts and the short list
// (shorter than any hash table), each a class of its own.
const char* kPrefixPolicy = R"([[interface]]
device = "veth-s"
rate = "1gbit"

[[cap]]
name = "p"
device = "veth-s"
clients = ["10.201.5.0/24", "10.203.9.128/25", "10.202.0.0/16", "11.0.0.0/8", "10.201.6.7", "192.0.0.0/4",
           "fd00:300::/48", "fd01::/32", "fd00:400:0:1::/64", "fd00:200::2", "2000::/4"]
rate = "5mbit"
)";

// Where the three packets `ping` sends to `address` went: the client classes that counted any,
// or "f5:2" when none did and the default class counted them all. (The default class also gets
// the namespace's own background traffic, such as IPv6 multicast listener reports.)
std::vector<std::string> classes_hit(const Netns& ns, const std::string& address) {
    auto before = tc_class_table(ns, "veth-s");
    ns.exec("ping -q -c 3 -i 0.01 -W 0.05 " + address + " >/dev/null 2>&1");
    std::vector<std::string> hit;
    uint64_t to_default = 0;
    for (const auto& [id, c] : tc_class_table(ns, "veth-s")) {
        uint64_t counted = c.packets - before[id].packets;
        if (id == "f5:2") to_default = counted;
        if (id != "f5:1" && id != "f5:2" && counted > 0) hit.push_back(id);
    }
    if (hit.empty() && to_default >= 3) hit.push_back("f5:2");
    return hit;
}

}  // namespace

TEST_CASE(
    "every prefix length is hashed: packets land in their client's class, and tc -batch of the plan "
    "builds the same tree") {
    require_netns_privileges();
    VethPair net("pfx");
    TempFile p(kPrefixPolicy);
    REQUIRE(run_fs(net.server, "apply " + p.path) == 0);
    // Everything leaves through veth-s: routes to the clients' prefixes via the peer, whose
    // link-layer address is fixed so that no neighbour discovery is needed.
    for (const char* r :
         {"10.201.0.0/16", "10.202.0.0/16", "10.203.0.0/16", "10.204.0.0/16", "11.0.0.0/8", "192.0.0.0/4"})
        net.server.exec_ok(std::string("ip route add ") + r + " via 10.200.0.2");
    for (const char* r : {"fd00:300::/48", "fd00:400::/48", "fd01::/32", "fd02::/32", "2000::/4"})
        net.server.exec_ok(std::string("ip -6 route add ") + r + " via fd00:200::2");
    net.server.exec_ok("ip neigh replace 10.200.0.2 lladdr 02:00:00:00:00:02 dev veth-s");
    net.server.exec_ok("ip -6 neigh replace fd00:200::2 lladdr 02:00:00:00:00:02 dev veth-s");

    // The class of each client, from tc's own reading of the filters.
    auto flowid = [&](const std::string& needle) {
        auto id = flowid_of(net.server, needle);
        INFO(needle);
        REQUIRE_FALSE(id.empty());
        return id;
    };
    struct Case {
        std::string address;
        std::string expect;
    };
    std::vector<Case> cases = {
        {"10.201.5.77", flowid("0ac90500/ffffff00 at 16")},       // /24, table by byte 2
        {"10.203.9.200", flowid("0acb0980/ffffff80 at 16")},      // /25, same table
        {"10.202.33.44", flowid("0aca0000/ffff0000 at 16")},      // /16, by byte 1
        {"11.2.3.4", flowid("0b000000/ff000000 at 16")},          // /8, by byte 0
        {"10.201.6.7", flowid("0ac90607/ffffffff at 16")},        // host, by the last byte
        {"193.1.1.1", flowid("c0000000/f0000000 at 16")},         // /4, the short list
        {"fd00:300:0:55::1", flowid("fd000300/ffffffff at 24")},  // /48, by byte 5
        {"fd01:0:ab::1", flowid("fd010000/ffffffff at 24")},      // /32, by byte 3
        {"fd00:400:0:1::9", flowid("00000001/ffffffff at 28")},   // /64, by byte 7
        {"2001::1", flowid("20000000/f0000000 at 24")},           // /4, the short list
        // In a bucket that holds a client, but not that client's: the default class.
        {"10.203.9.5", "f5:2"},
        {"10.204.5.1", "f5:2"},
        {"fd02:0:ab::1", "f5:2"},
    };
    for (const auto& c : cases) {
        INFO("ping " << c.address);
        CHECK(classes_hit(net.server, c.address) == std::vector<std::string>{c.expect});
    }

    // The same tree, built by tc -batch from `plan --format tc` on a second device, reads back
    // identically in tc's own words.
    VethPair twin("pfx2");
    TempFile batch("");
    REQUIRE(sh("{ ip netns exec " + twin.server.name() + " " FLOWSHAPER_BIN " plan --format tc " + p.path +
               " 2>/dev/null; } >" + batch.path) == 0);
    twin.server.exec_ok("tc -batch " + batch.path);
    for (const char* what : {"class show dev veth-s", "filter show dev veth-s", "qdisc show dev veth-s"}) {
        INFO(what);
        CHECK(twin.server.exec_ok(std::string("tc ") + what) ==
              net.server.exec_ok(std::string("tc ") + what));
    }
}

TEST_CASE("show reports each class's bytes, packets, drops and current rate as the kernel counts them") {
    require_netns_privileges();
    VethPair net("show");
    // A short leaf queue, so that the local sender overflows it instead of waiting on its socket
    // buffer: the kernel's default leaf (leaf_qdisc = "pfifo") takes its length from txqueuelen.
    // (A bfifo of 73,948 bytes holds more than the sender's socket buffer lets it queue: no drop.)
    net.server.exec_ok("ip link set veth-s txqueuelen 10");
    TempFile p("[settings]\nleaf_qdisc = \"pfifo\"\n\n" + policy({{"10.200.0.2", "5mbit"}}));
    REQUIRE(run_fs(net.server, "apply " + p.path) == 0);
    auto id = flowid_of(net.server, "0ac80002/ffffffff at 16");
    REQUIRE_FALSE(id.empty());
    // A 50 Mbit/s UDP download into the 5 Mbit/s class: it runs at its cap and drops the rest.
    net.server.exec_ok("iperf3 -s -1 -D -p 5311");
    REQUIRE(wait_until([&] { return net.server.listens("tcp", 5311); }));
    sh("ip netns exec " + net.client.name() +
       " timeout 120 iperf3 -c 10.200.0.1 -p 5311 -u -b 50M -R -t 4 >/dev/null 2>&1 &");
    // The download runs, at its cap, once the class drops; show then measures it over 1 s.
    REQUIRE(wait_until([&] { return tc_class_table(net.server, "veth-s")[id].drops > 0; }));
    std::string out;
    REQUIRE(run_fs(net.server, "show --json --interval 1000 2>/dev/null", &out) == 0);
    auto tc_after = tc_class_table(net.server, "veth-s");
    std::string text;
    REQUIRE(run_fs(net.server, "show", &text) == 0);
    CHECK(wait_until([&] { return iperf3_done(net); }));  // it ends before the namespaces go

    auto doc = json::parse(out);
    REQUIRE(doc["devices"].size() == 1);
    const json* cls = nullptr;
    for (const auto& c : doc["devices"][0]["classes"])
        if (c["classid"] == id) cls = &c;
    REQUIRE(cls);
    CHECK((*cls)["what"] == "client 10.200.0.2");
    CHECK((*cls)["rate_bits_per_s"] == 5'000'000);
    double now = (*cls)["current_rate_bits_per_s"].get<double>();
    INFO("current rate " << now / 1e6 << " Mbit/s");
    CHECK(now == Approx(5e6).epsilon(0.2));
    CHECK((*cls)["drops"].get<uint64_t>() > 0);
    // The kernel's own counters, read just after, are at or past what show saw.
    uint64_t bytes = (*cls)["bytes"].get<uint64_t>();
    uint64_t packets = (*cls)["packets"].get<uint64_t>();
    CHECK(bytes > 500'000);
    CHECK(tc_after[id].bytes >= bytes);
    CHECK(tc_after[id].packets >= packets);
    CHECK(tc_after[id].drops >= (*cls)["drops"].get<uint64_t>());
    CHECK(tc_after[id].bytes < bytes + 2'000'000);  // about a second later at 5 Mbit/s, not more
    CHECK(text.find(id) != std::string::npos);
    CHECK(text.find("client 10.200.0.2") != std::string::npos);
}
