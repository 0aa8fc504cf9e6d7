// Both mangle backends (libiptc and nftables) against the kernel: one suite, parametrised by
// GENERATE over the backend, checked with tools that are not flowshaper's (nft -j list ruleset,
// iptables-legacy-save, iptables-nft-save, tcpdump, conntrack -L).
#include <poll.h>

#include <catch2/catch.hpp>
#include <string>

#include "backends.hpp"
#include "capture.hpp"
#include "flowshaper/kernel/mangle_backend.hpp"
#include "netns.hpp"
#include "nft_session.hpp"

using namespace flowshaper::testing;
using flowshaper::kernel::CappedClient;
using flowshaper::kernel::MangleBackend;
using flowshaper::kernel::MangleSpec;
using flowshaper::net::Family;

namespace {

MangleSpec heavy_rule() {
    MangleSpec spec;
    spec.mark_mask = 0x00ff0000;
    spec.dscp_rules.push_back({0x00010000, 0x00ff0000, 8, "heavy"});  // CS1: TOS byte 0x20
    return spec;
}

// Our objects as the backend's independent tool lists them.
std::string listed(const Netns& ns, MangleBackend backend) {
    if (backend == MangleBackend::Nftables) {
        std::string out;
        ns.exec("nft list table inet flowshaper", &out);
        return out;
    }
    return ns.exec_ok("iptables-legacy-save -t mangle") + ns.exec_ok("ip6tables-legacy-save -t mangle");
}

}  // namespace

TEST_CASE("both backends: ensure twice writes once, and a restarted port adopts the rules without writing") {
    require_netns_privileges();
    const MangleBackend backend = GENERATE(MangleBackend::Nftables, MangleBackend::Iptables);
    INFO(name(backend));
    Netns ns("mb");
    EnterNetns in(ns);
    auto port = open_port(backend);
    for (auto f : {Family::V4, Family::V6}) REQUIRE(port->ensure(f, heavy_rule()));
    const uint64_t written = port->commits();
    CHECK(written >= 1);
    for (auto f : {Family::V4, Family::V6}) REQUIRE(port->ensure(f, heavy_rule()));
    CHECK(port->commits() == written);

    const std::string text = listed(ns, backend);
    if (backend == MangleBackend::Nftables) {
        CHECK(text.find("ct mark & 0x00ff0000 == 0x00010000 ip dscp set cs1 comment \"heavy\"") !=
              std::string::npos);
        CHECK(text.find("ip6 dscp set cs1") != std::string::npos);
        CHECK(text.find("meta mark set meta mark & 0xff00ffff") != std::string::npos);
    } else {
        CHECK(
            text.find("-A FLOWSHAPER -m connmark --mark 0x10000/0xff0000 -m comment --comment heavy -j DSCP "
                      "--set-dscp 0x08") != std::string::npos);
    }
    auto restarted = open_port(backend);  // as after SIGKILL: a new process, the same kernel
    auto read = restarted->read(Family::V6);
    REQUIRE(read);
    REQUIRE(read->has_value());
    CHECK(**read == heavy_rule());
    for (auto f : {Family::V4, Family::V6}) REQUIRE(restarted->ensure(f, heavy_rule()));
    CHECK(restarted->commits() == 0);
}

TEST_CASE(
    "both backends: remove_all leaves the ruleset as before, another tool's nft table and an iptables-nft "
    "rule "
    "untouched") {
    require_netns_privileges();
    const MangleBackend backend = GENERATE(MangleBackend::Nftables, MangleBackend::Iptables);
    INFO(name(backend));
    Netns ns("mr");
    ns.exec_ok("nft add table inet othertool");
    ns.exec_ok("nft add chain inet othertool post '{ type filter hook postrouting priority mangle; }'");
    ns.exec_ok("nft add rule inet othertool post udp dport 9999 meta mark set 0x1");
    ns.exec_ok("iptables-nft -t mangle -A POSTROUTING -p tcp --dport 25 -j RETURN");
    const std::string before = ruleset(ns);
    {
        EnterNetns in(ns);
        auto port = open_port(backend);
        MangleSpec spec = heavy_rule();
        spec.candidate = MangleSpec::Candidate{1000, 0x01000000};
        for (auto f : {Family::V4, Family::V6}) REQUIRE(port->ensure(f, spec));
        CHECK(ruleset(ns) != before);
        CHECK(ns.exec_ok("nft list table inet othertool").find("udp dport 9999 meta mark set 0x00000001") !=
              std::string::npos);
        CHECK(ns.exec_ok("iptables-nft-save -t mangle")
                  .find("-A POSTROUTING -p tcp -m tcp --dport 25 -j RETURN") != std::string::npos);
        for (auto f : {Family::V4, Family::V6}) REQUIRE(port->remove_all(f));
    }
    CHECK(ruleset(ns) == before);
}

TEST_CASE("both backends: remove_all of either backend removes the other backend's objects too") {
    require_netns_privileges();
    const MangleBackend first = GENERATE(MangleBackend::Nftables, MangleBackend::Iptables);
    const MangleBackend second =
        first == MangleBackend::Nftables ? MangleBackend::Iptables : MangleBackend::Nftables;
    INFO(name(first) << " then removed through " << name(second));
    Netns ns("mx");
    EnterNetns in(ns);
    for (auto f : {Family::V4, Family::V6}) REQUIRE(open_port(first)->ensure(f, heavy_rule()));
    REQUIRE(listed(ns, first).find(first == MangleBackend::Nftables ? "table inet flowshaper"
                                                                    : "FLOWSHAPER") != std::string::npos);
    auto other = open_port(second);
    for (auto f : {Family::V4, Family::V6}) REQUIRE(other->remove_all(f));
    CHECK(ns.exec_ok("nft list ruleset").find("flowshaper") == std::string::npos);
    std::string legacy;
    ns.exec("iptables-legacy-save -t mangle; ip6tables-legacy-save -t mangle", &legacy);
    CHECK(legacy.find("FLOWSHAPER") == std::string::npos);
}

TEST_CASE(
    "both backends: a connection with the rule's ctmark leaves with its DSCP and conntrack -L shows the "
    "mark") {
    require_netns_privileges();
    const MangleBackend backend = GENERATE(MangleBackend::Nftables, MangleBackend::Iptables);
    const Family f = GENERATE(Family::V4, Family::V6);
    INFO(name(backend) << (f == Family::V4 ? " IPv4" : " IPv6"));
    VethPair net("md");
    {
        EnterNetns in(net.server);
        REQUIRE(open_port(backend)->ensure(f, heavy_rule()));
    }
    const std::string to = f == Family::V4 ? VethPair::kClientV4 : VethPair::kClientV6;
    const std::string fam = f == Family::V4 ? "ipv4" : "ipv6";
    const std::string send =
        "python3 -c 'import socket,sys; a=sys.argv[1]; f=socket.AF_INET6 if \":\" in a else "
        "socket.AF_INET; k=socket.socket(f,socket.SOCK_DGRAM); k.bind((\"\",45011)); "
        "[k.sendto(b\"x\",(a,40011)) for _ in range(int(sys.argv[2]))]' " +
        to;
    Capture capture(net.client, 3);
    REQUIRE(capture.listening());
    net.server.exec_ok(send + " 1");
    net.server.exec_ok("conntrack -U -f " + fam + " -p udp --sport 45011 --dport 40011 --mark 0x10000");
    net.server.exec_ok(send + " 2");
    auto packets = capture.packets();
    INFO(capture.raw());
    CHECK(tos_of(packets, 40011) == std::vector<std::string>{"0x0", "0x20", "0x20"});
    CHECK(net.server.exec_ok("conntrack -L -f " + fam + " -p udp --dport 40011").find("mark=65536") !=
          std::string::npos);
}
