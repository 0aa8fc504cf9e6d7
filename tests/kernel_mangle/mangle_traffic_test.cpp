// The rules work on real packets: in a VethPair, connections whose ctmark carries a rule's bits
// leave the server with the rule's DSCP (tcpdump on the client's side reads the TOS / traffic
// class), unmarked ones keep 0, and the restore rule copies the ctmark bits into the fwmark.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "capture.hpp"
#include "flowshaper/kernel/conntrack_port.hpp"
#include "flowshaper/kernel/mangle_iptc_port.hpp"
#include "netns.hpp"

using namespace flowshaper::testing;
using flowshaper::kernel::make_iptc_mangle_port;
using flowshaper::kernel::MangleSpec;
using flowshaper::net::Family;

namespace {

std::string iptables(Family f) {
    return f == Family::V4 ? "iptables-legacy" : "ip6tables-legacy";
}
std::string client_address(Family f) {
    return f == Family::V4 ? VethPair::kClientV4 : VethPair::kClientV6;
}

MangleSpec one_rule() {
    MangleSpec spec;
    spec.mark_mask = 0x00ff0000;
    spec.dscp_rules.push_back({0x00010000, 0x00ff0000, 8, "heavy"});  // CS1: TOS byte 0x20
    return spec;
}

// Sends `count` one-byte UDP datagrams from source port `sport` (same port: same connection).
void send_udp(const Netns& from, const std::string& to, int dport, int sport, int count) {
    from.exec_ok(
        "python3 -c 'import socket,sys; "
        "a,d,s,n=sys.argv[1],int(sys.argv[2]),int(sys.argv[3]),int(sys.argv[4]); "
        "f=socket.AF_INET6 if \":\" in a else socket.AF_INET; k=socket.socket(f,socket.SOCK_DGRAM); "
        "k.bind((\"::\" if f==socket.AF_INET6 else \"0.0.0.0\",s)); [k.sendto(b\"x\",(a,d)) for _ in "
        "range(n)]' " +
        to + " " + std::to_string(dport) + " " + std::to_string(sport) + " " + std::to_string(count));
}

}  // namespace

TEST_CASE("packets of a connection with the rule's ctmark leave with its DSCP, others keep 0") {
    require_netns_privileges();
    const Family f = GENERATE(Family::V4, Family::V6);
    INFO((f == Family::V4 ? "IPv4" : "IPv6"));
    VethPair net("mt");
    auto port = make_iptc_mangle_port();
    {
        EnterNetns in(net.server);
        REQUIRE(port->ensure(f, one_rule()));
    }
    // Test-only rules: connections to port 40001 get the heavy ctmark when they start; after
    // flowshaper's jump, a rule counts packets whose fwmark carries the restored bits.
    const std::string ipt = iptables(f) + " -t mangle ";
    net.server.exec_ok(ipt + "-N FSTEST");
    net.server.exec_ok(ipt + "-A FSTEST -p udp --dport 40001 -j CONNMARK --set-xmark 0x10000/0xff0000");
    net.server.exec_ok(ipt + "-A OUTPUT -j FSTEST");
    net.server.exec_ok(ipt + "-A POSTROUTING -m mark --mark 0x10000/0xff0000 -j RETURN");

    Capture capture(net.client, 6);
    REQUIRE(capture.listening());
    send_udp(net.server, client_address(f), 40001, 45001, 3);
    send_udp(net.server, client_address(f), 40002, 45002, 3);
    auto packets = capture.packets();
    INFO(capture.raw());
    CHECK(tos_of(packets, 40001) == std::vector<std::string>{"0x20", "0x20", "0x20"});
    CHECK(tos_of(packets, 40002) == std::vector<std::string>{"0x0", "0x0", "0x0"});

    // The restore rule put the ctmark bits into the fwmark of exactly the 3 marked packets.
    const std::string counted = net.server.exec_ok(iptables(f) + "-save -c -t mangle");
    CHECK(counted.find("[3:") != std::string::npos);
    std::istringstream lines(counted);
    bool found = false;
    for (std::string line; std::getline(lines, line);)
        if (line.find("-A POSTROUTING -m mark --mark 0x10000/0xff0000 -j RETURN") != std::string::npos) {
            found = true;
            CHECK(line.rfind("[3:", 0) == 0);
        }
    CHECK(found);
}

TEST_CASE("a ctmark written into a live connection (conntrack -U) marks its following packets") {
    require_netns_privileges();
    const Family f = GENERATE(Family::V4, Family::V6);
    INFO((f == Family::V4 ? "IPv4" : "IPv6"));
    VethPair net("mu");
    auto port = make_iptc_mangle_port();
    {
        EnterNetns in(net.server);
        REQUIRE(port->ensure(f, one_rule()));  // the only rules: they also switch conntrack on
    }
    Capture capture(net.client, 3);
    REQUIRE(capture.listening());
    send_udp(net.server, client_address(f), 40003, 45003, 1);
    // What the daemon does through libnetfilter_conntrack, done here with the conntrack tool.
    const std::string fam = f == Family::V4 ? "ipv4" : "ipv6";
    net.server.exec_ok("conntrack -U -f " + fam + " -p udp --sport 45003 --dport 40003 --mark 0x10000");
    send_udp(net.server, client_address(f), 40003, 45003, 2);
    auto packets = capture.packets();
    INFO(capture.raw());
    CHECK(tos_of(packets, 40003) == std::vector<std::string>{"0x0", "0x20", "0x20"});
    const std::string listed = net.server.exec_ok("conntrack -L -f " + fam + " -p udp --dport 40003");
    CHECK(listed.find("mark=65536") != std::string::npos);
}

TEST_CASE(
    "the kernel flags connections past the candidate threshold, and a dump filtered on the flag holds just "
    "those") {
    require_netns_privileges();
    const Family f = GENERATE(Family::V4, Family::V6);
    INFO((f == Family::V4 ? "IPv4" : "IPv6"));
    VethPair net("mc");
    auto port = make_iptc_mangle_port();
    MangleSpec spec = one_rule();
    spec.mark_mask = 0x007f0000;
    spec.dscp_rules[0].ctmark_mask = 0x007f0000;
    spec.candidate = MangleSpec::Candidate{1000, 0x00800000};
    {
        EnterNetns in(net.server);
        REQUIRE(port->ensure_conntrack_accounting());
        REQUIRE(port->ensure(f, spec));
    }
    // One-byte datagrams: 29 bytes per IPv4 packet, 49 per IPv6 packet.
    send_udp(net.server, client_address(f), 40005, 45005, 60);  // 1,740 / 2,940 bytes: past 1,000
    send_udp(net.server, client_address(f), 40006, 45006, 3);   // 87 / 147 bytes: not

    const std::string fam = f == Family::V4 ? "ipv4" : "ipv6";
    const std::string big = net.server.exec_ok("conntrack -L -f " + fam + " -p udp --dport 40005");
    const std::string small = net.server.exec_ok("conntrack -L -f " + fam + " -p udp --dport 40006");
    INFO(big << small);
    CHECK(big.find("mark=8388608") != std::string::npos);  // 0x800000
    CHECK(small.find("mark=0") != std::string::npos);
    // The flag is not restored into the fwmark: the restore rule's mask leaves it out.
    CHECK(net.server.exec_ok(iptables(f) + "-save -t mangle").find("--nfmask 0x7f0000 --ctmask 0x7f0000") !=
          std::string::npos);

    EnterNetns in(net.server);
    auto ct = flowshaper::kernel::make_nfct_conntrack_port({.events = false});
    REQUIRE(ct);
    flowshaper::kernel::DumpFilter flagged;
    flagged.mark = flowshaper::kernel::DumpFilter::MarkMatch{0x00800000, 0x00800000};
    auto dumped = (*ct)->dump_all(flagged);
    REQUIRE(dumped);
    REQUIRE(dumped->size() == 1);
    CHECK((*dumped)[0].orig_dport == 40005);
    CHECK((*dumped)[0].orig_bytes >= 1000);
    auto all = (*ct)->dump_all();
    REQUIRE(all);
    CHECK(all->size() >= 2);
}
