// The rules work on real packets, on both backends (GENERATE over nftables and libiptc): in a
// VethPair, connections whose ctmark carries a rule's bits leave the server with the rule's DSCP
// (tcpdump on the client's side reads the TOS / traffic class), unmarked ones keep 0, and the
// restore copies the ctmark bits into the fwmark while keeping the fwmark's other bits.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "backends.hpp"
#include "capture.hpp"
#include "flowshaper/kernel/conntrack_port.hpp"
#include "netns.hpp"

using namespace flowshaper::testing;
using flowshaper::kernel::MangleBackend;
using flowshaper::kernel::MangleSpec;
using flowshaper::net::Family;

namespace {

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

// The packets counted by each commented rule of `table inet fstest`, from `nft -j`.
std::map<std::string, uint64_t> counted(const Netns& ns) {
    std::map<std::string, uint64_t> out;
    auto doc = nlohmann::json::parse(ns.exec_ok("nft -j list table inet fstest"));
    for (const auto& item : doc["nftables"]) {
        if (!item.contains("rule") || !item["rule"].contains("comment")) continue;
        for (const auto& e : item["rule"]["expr"])
            if (e.contains("counter")) out[item["rule"]["comment"]] = e["counter"]["packets"];
    }
    return out;
}

}  // namespace

TEST_CASE(
    "both backends: packets of a connection with the rule's ctmark leave with its DSCP, others keep 0, "
    "and the fwmark gets the ctmark's bits beside its own") {
    require_netns_privileges();
    const MangleBackend backend = GENERATE(MangleBackend::Nftables, MangleBackend::Iptables);
    const Family f = GENERATE(Family::V4, Family::V6);
    INFO(name(backend) << (f == Family::V4 ? " IPv4" : " IPv6"));
    VethPair net("mt");
    {
        EnterNetns in(net.server);
        auto port = open_port(backend);
        REQUIRE(port->ensure(f, one_rule()));
    }
    // Test-only rules, another tool's table: connections to port 40001 get the heavy ctmark when
    // they start, and packets from source ports 4501x carry fwmark bits of someone else's (0x1;
    // with 45013 also 0x20000, inside flowshaper's mask, which the restore owns); after flowshaper's
    // hook (mangle, -150), rules count the fwmarks that leave.
    const std::string rules = "/tmp/fst-rules-" + std::to_string(getpid()) + ".nft";
    std::ofstream(rules) << "table inet fstest {\n"
                            "  chain out { type filter hook output priority mangle; policy accept;\n"
                            "    udp dport 40001 ct mark set ct mark | 0x00010000\n"
                            "    udp sport { 45011, 45012 } meta mark set meta mark | 0x1\n"
                            "    udp sport 45013 meta mark set meta mark | 0x00020001\n"
                            "  }\n"
                            "  chain post { type filter hook postrouting priority filter; policy accept;\n"
                            "    udp dport 40001 meta mark 0x00010000 counter comment \"marked\"\n"
                            "    udp dport 40001 meta mark 0x00010001 counter comment \"marked-others\"\n"
                            "    udp dport 40002 meta mark 0 counter comment \"plain\"\n"
                            "    udp dport 40002 meta mark 0x1 counter comment \"plain-others\"\n"
                            "  }\n"
                            "}\n";
    const int loaded = net.server.exec("nft -f " + rules);
    std::remove(rules.c_str());
    REQUIRE(loaded == 0);

    Capture capture(net.client, 15);
    REQUIRE(capture.listening());
    send_udp(net.server, client_address(f), 40001, 45001, 3);
    send_udp(net.server, client_address(f), 40002, 45002, 3);
    send_udp(net.server, client_address(f), 40001, 45011, 3);
    send_udp(net.server, client_address(f), 40002, 45012, 3);
    send_udp(net.server, client_address(f), 40002, 45013, 3);
    auto packets = capture.packets();
    INFO(capture.raw());
    CHECK(tos_of(packets, 40001) == std::vector<std::string>(6, "0x20"));
    CHECK(tos_of(packets, 40002) == std::vector<std::string>(9, "0x0"));

    const auto n = counted(net.server);
    INFO(net.server.exec_ok("nft list ruleset"));
    CHECK(n.at("marked") == 3);         // the usual path: no other bit in the fwmark
    CHECK(n.at("marked-others") == 3);  // someone else's bit kept beside the restored ones
    CHECK(n.at("plain") == 3);
    CHECK(n.at("plain-others") == 6);  // 45012, and 45013 whose bit inside the mask was cleared
}

TEST_CASE(
    "both backends: a ctmark written into a live connection (conntrack -U) marks its following packets") {
    require_netns_privileges();
    const MangleBackend backend = GENERATE(MangleBackend::Nftables, MangleBackend::Iptables);
    const Family f = GENERATE(Family::V4, Family::V6);
    INFO(name(backend) << (f == Family::V4 ? " IPv4" : " IPv6"));
    VethPair net("mu");
    {
        EnterNetns in(net.server);
        auto port = open_port(backend);
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
    "both backends: the kernel flags connections past the candidate threshold, and a dump filtered on the "
    "flag holds just those") {
    require_netns_privileges();
    const MangleBackend backend = GENERATE(MangleBackend::Nftables, MangleBackend::Iptables);
    const Family f = GENERATE(Family::V4, Family::V6);
    INFO(name(backend) << (f == Family::V4 ? " IPv4" : " IPv6"));
    VethPair net("mc");
    MangleSpec spec = one_rule();
    spec.mark_mask = 0x007f0000;
    spec.dscp_rules[0].ctmark_mask = 0x007f0000;
    spec.candidate = MangleSpec::Candidate{1000, 0x00800000};
    {
        EnterNetns in(net.server);
        auto port = open_port(backend);
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
    // The flag is not restored into the fwmark: the restore's mask leaves it out.
    if (backend == MangleBackend::Nftables)
        CHECK(
            net.server.exec_ok("nft list table inet flowshaper").find("meta mark set ct mark & 0x007f0000") !=
            std::string::npos);
    else
        CHECK(net.server
                  .exec_ok(std::string(f == Family::V4 ? "iptables" : "ip6tables") + "-legacy-save -t mangle")
                  .find("--nfmask 0x7f0000 --ctmask 0x7f0000") != std::string::npos);

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
