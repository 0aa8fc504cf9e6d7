// `flowshaper run` with the kernel sets of capped clients, on both mangle backends (GENERATE over
// firewall = "iptables" / "nftables"): the scraper pattern — a capped client that keeps opening
// short connections — is marked by the kernel from each connection's first packet and held to its
// ceil; SIGTERM leaves the firewall as it was; SIGKILL and a restart adopt the set's members and
// duplicate nothing. Checked with tshark on a capture of the server's veth, nft -j list ruleset,
// iptables-legacy-save and ipset list.
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <regex>
#include <sstream>

#include "background.hpp"
#include "daemon_fixture.hpp"
#include "status_socket.hpp"

using namespace flowshaper::testing;

namespace {

constexpr const char* kClient = "10.200.0.2";
constexpr double kCeilBps = 5e6;

// `settings`: more [settings] lines (a status socket).
std::string policy(const std::string& firewall, const std::string& settings = "") {
    return "[settings]\npoll_interval = \"200ms\"\nfirewall = \"" + firewall + "\"\n" + settings +
           "\n[[interface]]\ndevice = \"veth-s\"\nrate = \"1gbit\"\n\n"
           "[[detect]]\nname = \"scraper\"\ndevice = \"veth-s\"\nprotocol = \"tcp\"\nlocal_ports = [8080]\n"
           "client_bytes = \"2MB\"\nwindow = \"30s\"\ndscp = \"CS1\"\n"
           "limit = { rate = \"4mbit\", ceil = \"5mbit\" }\nrelease_after = \"10m\"\n";
}

// Everything the namespace's firewall holds, as the independent tools list it (the built-in
// chains' packet counters left out: traffic moves them).
std::string ruleset(const Netns& ns) {
    static const std::regex counters(R"( \[\d+:\d+\]$)");
    std::string out = ns.exec_ok("nft -j list ruleset");
    for (const char* save : {"iptables-legacy-save", "ip6tables-legacy-save", "ipset list"}) {
        std::string text;
        ns.exec(save, &text);
        std::istringstream in(text);
        for (std::string line; std::getline(in, line);)
            if (!line.empty() && line[0] != '#') out += std::regex_replace(line, counters, "") + "\n";
    }
    return out;
}

// The members of the scraper rule's kernel set of IPv4 clients, as the backend's tool lists them.
std::string set_members(const Netns& ns, const std::string& firewall) {
    std::string out;
    if (firewall == "nftables")
        ns.exec("nft list set inet flowshaper capped4_0", &out);
    else
        ns.exec("ipset list flowshaper-r0-v4", &out);
    return out;
}

// The server: 256 KB to every connection on port 8080, one after another, forever.
std::string server_command() {
    return "python3 -c \"import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
           "socket.SO_REUSEADDR, 1); s.bind((\\\"0.0.0.0\\\", 8080)); s.listen(64); d=b\\\"y\\\"*262144\n"
           "while True:\n  c=s.accept()[0]; c.sendall(d); c.close()\"";
}

// The scraper: `n` sequential downloads from the server, 100 ms apart (else the first dozens
// finish within one poll interval, before any cap).
void scrape(const Netns& client, int n) {
    client.exec_ok("python3 -c 'import socket,time\nfor i in range(" + std::to_string(n) +
                   "):\n  c=socket.create_connection((\"10.200.0.1\",8080))\n  while c.recv(65536): pass\n  "
                   "c.close(); time.sleep(0.1)'");
}

struct Packet {
    double t = 0;
    int stream = 0;
    bool syn = false;
    int dscp = 0;
    uint64_t bytes = 0;
};

// tcpdump -U on the server's veth into `pcap`: TCP from port 8080, and the fence datagrams to port 9.
std::string capture_command(const std::string& pcap) {
    return "tcpdump -U -i veth-s -s 96 -w " + pcap + " 'tcp src port 8080 or udp dst port 9'";
}

// Sends a datagram to the client's port 9 until the capture has written one out: every packet
// before it is then in the file too (tcpdump writes them in order, at once with -U).
bool fence_captured(const Netns& server, const std::string& pcap) {
    return wait_until(
        [&] {
            server.exec(
                "python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto("
                "b\"fence\", (\"" +
                std::string(kClient) + "\", 9))'");
            return sh("tcpdump -r " + pcap + " udp dst port 9 2>/dev/null | grep -q .") == 0;
        },
        kWaitMs, 100);
}

// The packets to the client from port 8080 in `pcap`, read by tshark.
std::vector<Packet> read_capture(const std::string& pcap) {
    std::string out;
    sh("tshark -r " + pcap + " -Y 'ip.dst == " + kClient +
           " && tcp.srcport == 8080' -T fields -e frame.time_epoch -e tcp.stream -e tcp.flags.syn -e "
           "ip.dsfield.dscp -e frame.len 2>/dev/null",
       &out);
    std::vector<Packet> packets;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) {
        std::istringstream f(line);
        Packet p;
        std::string syn;
        if (f >> p.t >> p.stream >> syn >> p.dscp >> p.bytes) {
            p.syn = syn == "1" || syn == "True";
            packets.push_back(p);
        }
    }
    return packets;
}

}  // namespace

TEST_CASE(
    "a capped scraper's new connections carry the DSCP from their first packet and stay under 1.2x its "
    "ceil, SIGTERM leaves the firewall as before") {
    require_netns_privileges();
    const std::string firewall = GENERATE(as<std::string>{}, "iptables", "nftables");
    INFO("firewall = " << firewall);
    VethPair net("es");
    // Another tool's objects, in both worlds: they must be there, untouched, afterwards.
    net.server.exec_ok("iptables-legacy -t mangle -A POSTROUTING -p udp --dport 9 -j RETURN");
    net.server.exec_ok("ip6tables-legacy -t mangle -S");
    net.server.exec_ok("ipset create othertool hash:ip");
    net.server.exec_ok("ipset add othertool 198.51.100.9");
    net.server.exec_ok("nft add table inet othertool");
    const std::string before = ruleset(net.server);
    TempPolicy file(policy(firewall));
    const std::string pcap = file.path() + ".pcap";
    {
        Daemon daemon(net.server, file.path());
        INFO(daemon.log());
        REQUIRE(daemon.wait_for_log("ready"));
        CHECK(daemon.log().find("firewall: " + firewall) != std::string::npos);
        Background server(net.server, server_command(), pcap + ".server.log");
        Background capture(net.server, capture_command(pcap), pcap + ".log");
        REQUIRE(wait_until([&] {
            return net.server.listens("tcp", 8080) && sh("grep -q 'listening on' " + pcap + ".log") == 0;
        }));
        scrape(net.client, 30);  // ~9 at full speed until capped, then the rest capped
        CHECK(daemon.log().find("mark client=" + std::string(kClient)) != std::string::npos);
        CHECK(set_members(net.server, firewall).find(kClient) != std::string::npos);
        CHECK(fence_captured(net.server, pcap));
        capture.stop();
        server.stop();
        CHECK(daemon.stop(SIGTERM) == 0);
    }
    CHECK(ruleset(net.server) == before);

    const auto packets = read_capture(pcap);
    for (const std::string& file : {pcap, pcap + ".log", pcap + ".server.log"}) std::remove(file.c_str());
    REQUIRE(packets.size() > 100);
    // The first connection whose SYN-ACK carries CS1: the kernel set has the client from then on.
    std::map<int, std::vector<const Packet*>> streams;
    for (const auto& p : packets) streams[p.stream].push_back(&p);
    int first_marked = -1;
    for (const auto& [id, ps] : streams)
        if (ps.front()->syn && ps.front()->dscp == 8) {
            first_marked = id;
            break;
        }
    REQUIRE(first_marked >= 0);
    size_t after = 0;
    for (const auto& [id, ps] : streams) {
        if (id < first_marked) continue;
        ++after;
        INFO("connection " << id);
        CHECK(ps.front()->syn);
        for (const Packet* p : ps) CHECK(p->dscp == 8);  // every packet, the SYN-ACK included
    }
    CHECK(streams.size() == 30);
    CHECK(after >= 18);  // most connections came after the cap
    // Its 1-second rate from the capture, from one second after the first marked packet on.
    double t0 = 0;
    for (const auto& p : packets)
        if (p.dscp == 8) {
            t0 = p.t;
            break;
        }
    std::map<long, uint64_t> bins;
    for (const auto& p : packets)
        if (p.t >= t0 + 1) bins[static_cast<long>(p.t - t0 - 1)] += p.bytes;
    REQUIRE(bins.size() >= 8);
    bins.erase(std::prev(bins.end()));  // the last second is partial
    for (const auto& [second, bytes] : bins) {
        INFO("second " << second + 1 << " after the cap: " << bytes * 8 / 1e6 << " Mbit/s");
        CHECK(static_cast<double>(bytes) * 8 <= 1.2 * kCeilBps);
    }
}

TEST_CASE("after SIGKILL a restarted daemon adopts the kernel set's members and duplicates nothing") {
    require_netns_privileges();
    const std::string firewall = GENERATE(as<std::string>{}, "iptables", "nftables");
    INFO("firewall = " << firewall);
    VethPair net("ek");
    StatusSocketPath status;
    TempPolicy file(policy(firewall, status.setting()));
    Background server(net.server, server_command(), file.path() + ".server.log");
    auto first = std::make_unique<Daemon>(net.server, file.path());
    REQUIRE(first->wait_for_log("ready"));
    REQUIRE(wait_until([&] { return net.server.listens("tcp", 8080); }));
    scrape(net.client, 12);  // 3 MB: past client_bytes
    REQUIRE(first->wait_for_log("mark client=" + std::string(kClient)));
    CHECK(wait_until([&] { return set_members(net.server, firewall).find(kClient) != std::string::npos; }));
    const std::string capped = ruleset(net.server);
    CHECK(first->stop(SIGKILL) == 128 + SIGKILL);
    first.reset();

    Daemon second(net.server, file.path());
    REQUIRE(second.wait_for_log("ready"));
    CHECK(second.log().find("adopted heavy client " + std::string(kClient)) != std::string::npos);
    INFO(second.log());
    REQUIRE(wait_for_polls(status.path(), 5));  // what a restart would double, it would have by now
    CHECK(ruleset(net.server) == capped);       // the same rules, sets and members: nothing doubled
    CHECK(count_lines(set_members(net.server, firewall), kClient) == 1);
    CHECK(second.log().find("mark client=" + std::string(kClient)) == std::string::npos);
    std::remove((file.path() + ".server.log").c_str());
}
