// The leaf queue under a capped client's class, on whichever kernel runs the test: fq_codel
// (leaf_qdisc = "auto" on a stock kernel), sfq when asked and present, the bfifo fallback here.
// Its queueing delay under load is measured with tools that are not flowshaper's: ping's RTT
// (a sparse flow beside the bulk ones) and the kernel's own TCP RTT of the bulk flows (ss -ti),
// each minus the idle RTT; tc -s shows the leaf's kind and that the cap holds meanwhile.
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "background.hpp"
#include "kernel_has.hpp"
#include "netns.hpp"
#include "tc_text.hpp"
#include "wait.hpp"

using namespace flowshaper::testing;
using json = nlohmann::json;

namespace {

constexpr double kCapBits = 10e6;  // rate = ceil: the client's traffic runs at its ceil

double median(std::vector<double> v) {
    REQUIRE_FALSE(v.empty());
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Every number after `key` in `text` (e.g. "time=" in ping's lines, "rtt:" in ss -ti).
std::vector<double> numbers_after(const std::string& text, const std::string& key) {
    std::vector<double> out;
    for (size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + 1))
        out.push_back(std::stod(text.substr(at + key.size())));
    return out;
}

// Median RTT of `count` pings from the server to the client, in ms.
double ping_ms(const VethPair& net, int count) {
    std::string out;
    net.server.exec("ping -n -c " + std::to_string(count) + " -i 0.2 -W 5 10.200.0.2", &out);
    INFO(out);
    return median(numbers_after(out, "time="));
}

std::string leaf_kind_under(const Netns& ns, const std::string& classid) {
    for (const auto& q : json::parse(ns.exec_ok("tc -j qdisc show dev veth-s")))
        if (q.value("parent", "") == classid) return q.value("kind", "");
    return "";
}

uint64_t class_bytes(const Netns& ns, const std::string& classid) {
    auto classes = tc_class_table(ns, "veth-s");
    auto it = classes.find(classid);
    return it == classes.end() ? 0 : it->second.bytes;
}

std::string temp_policy(const std::string& text) {
    char tmpl[] = "/tmp/fst-leaf-XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    close(fd);
    std::ofstream(tmpl) << text;
    return tmpl;
}

}  // namespace

TEST_CASE("under load a capped client's queueing delay stays low with the leaf queue the kernel offers",
          "[traffic]") {
    require_netns_privileges();
    const std::string leaf = GENERATE(as<std::string>{}, "auto", "sfq");
    const bool fq_codel = kernel_has("CONFIG_NET_SCH_FQ_CODEL", "sch_fq_codel");
    const bool sfq = kernel_has("CONFIG_NET_SCH_SFQ", "sch_sfq");
    const std::string expected = leaf == "sfq" ? "sfq" : fq_codel ? "fq_codel" : sfq ? "sfq" : "bfifo";
    INFO("leaf_qdisc = " << leaf << ": expecting " << expected);
    VethPair net("lat");
    const std::string policy = temp_policy(
        "[settings]\nleaf_qdisc = \"" + leaf +
        "\"\n\n[[interface]]\ndevice = \"veth-s\"\nrate = \"1gbit\"\n\n"
        "[[cap]]\nname = \"c\"\ndevice = \"veth-s\"\nclients = [\"10.200.0.2\"]\nrate = \"10mbit\"\nceil = "
        "\"10mbit\"\n");
    std::string out;
    const int rc = net.server.exec(std::string(FLOWSHAPER_BIN) + " apply " + policy + " 2>&1", &out);
    std::remove(policy.c_str());
    INFO(out);
    if (leaf == "sfq" && !sfq) {  // asked for what the kernel lacks: a clear error, nothing applied
        CHECK(rc == 1);
        CHECK(out.find("sfq") != std::string::npos);
        CHECK(net.server.exec_ok("tc qdisc show dev veth-s").find("htb") == std::string::npos);
        return;
    }
    REQUIRE(rc == 0);
    const std::string classid = tc_flowid_of(net.server, "veth-s", "0ac80002/ffffffff at 16");
    REQUIRE_FALSE(classid.empty());
    CHECK(leaf_kind_under(net.server, classid) == expected);

    const double idle_ms = ping_ms(net, 10);
    // Four bulk TCP flows from the server to the client, for longer than the measurement takes.
    Background server(net.server, "iperf3 -s -p 5210", "/dev/null");
    REQUIRE(wait_until([&] { return net.server.exec("ss -ltn | grep -q ':5210 '") == 0; }));
    Background client(net.client, "iperf3 -c 10.200.0.1 -p 5210 -R -P 4 -t 600", "/dev/null");
    // Loaded: the class has sent a few seconds' worth at its cap (not a fixed sleep: a slow
    // machine takes longer to get there).
    const uint64_t b0 = class_bytes(net.server, classid);
    REQUIRE(
        wait_until([&] { return class_bytes(net.server, classid) > b0 + 4 * kCapBits / 8; }, 120'000, 100));

    const auto t0 = std::chrono::steady_clock::now();
    const uint64_t c0 = class_bytes(net.server, classid);
    const double loaded_ms = ping_ms(net, 25);
    std::string ss;
    net.server.exec("ss -tin dst 10.200.0.2", &ss);
    const uint64_t c1 = class_bytes(net.server, classid);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    client.stop();
    server.stop();

    INFO("ss -ti:\n" << ss);
    const std::vector<double> tcp_rtts = numbers_after(ss, " rtt:");
    REQUIRE(tcp_rtts.size() >= 4);
    const double tcp_ms = median(tcp_rtts);
    const double rate = static_cast<double>(c1 - c0) * 8 / secs;
    const double ping_delay = loaded_ms - idle_ms, tcp_delay = tcp_ms - idle_ms;
    WARN(expected << " leaf at a 10 Mbit/s ceil: idle RTT " << idle_ms << " ms; under load ping " << loaded_ms
                  << " ms (+" << ping_delay << "), bulk TCP " << tcp_ms << " ms (+" << tcp_delay << "); "
                  << rate / 1e6 << " Mbit/s at layer 2");
    // The cap holds while the leaf queues, and the link was loaded while the delay was measured
    // (under emulation the senders do not always fill it: 7.2 Mbit/s was seen under qemu TCG
    // with fq_codel, whose drops keep the queue short).
    CHECK(rate <= 1.10 * kCapBits);
    CHECK(rate >= 0.5 * kCapBits);
    if (expected == "fq_codel") {
        CHECK(ping_delay < 20);  // a sparse flow goes first
        CHECK(tcp_delay < 20);   // CoDel keeps the bulk flows' own queue short
    } else if (expected == "sfq") {
        // No AQM: the bulk flows fill its 127 packets; round robin serves the sparse flow ahead of
        // them (measured under qemu TCG: ping +27 ms beside bulk TCP +262 ms).
        CHECK(ping_delay < tcp_delay / 4);
    } else {
        // bfifo: no per-flow queues, no AQM: the delay is what the queue holds, at most its limit.
        uint64_t limit = 0;
        for (const auto& q : json::parse(net.server.exec_ok("tc -j qdisc show dev veth-s")))
            if (q.value("parent", "") == classid) limit = q["options"].value("limit", 0ull);
        REQUIRE(limit > 0);
        const double full_ms = static_cast<double>(limit) * 8 / kCapBits * 1000;
        INFO("bfifo limit " << limit << " B = " << full_ms << " ms at the ceil");
        CHECK(tcp_delay < full_ms + 20);
    }
}
