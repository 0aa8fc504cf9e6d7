// The kernel sets of capped clients, on both backends (GENERATE over libiptc + ipset and
// nftables): a capped client's new connection carries the rule's DSCP from its first packet
// toward it (for a server rule: the SYN-ACK), an uncapped client's never; members survive a rule
// rewrite and a restart; remove_all leaves the ruleset and the ipsets as they were. Checked with
// tcpdump, conntrack -L, ipset list / nft list set, iptables-legacy-save — never only our reader.
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "backends.hpp"
#include "capture.hpp"
#include "flowshaper/kernel/mangle_backend.hpp"
#include "netns.hpp"
#include "wait.hpp"

using namespace flowshaper::testing;
using flowshaper::kernel::CappedClient;
using flowshaper::kernel::MangleBackend;
using flowshaper::kernel::MangleSpec;
using flowshaper::net::Address;
using flowshaper::net::Family;

namespace {

// `rule_mask`: the DSCP rule's ctmark mask. The daemon plans it as the rule's own bits (then the
// capped-client rule has nothing to clear: nft lists it without its AND).
MangleSpec capped_spec(uint8_t l4proto, std::vector<uint16_t> local_ports, std::vector<uint16_t> remote = {},
                       uint32_t rule_mask = 0x00ff0000) {
    MangleSpec spec;
    spec.mark_mask = 0x00ff0000;
    spec.dscp_rules.push_back({0x00010000, rule_mask, 8, "heavy"});  // CS1: TOS byte 0x20
    spec.capped.push_back({l4proto, std::move(local_ports), std::move(remote)});
    return spec;
}

// The members of rule 0's set of `f` as the backend's own tool lists them.
std::string set_listing(const Netns& ns, MangleBackend backend, Family f) {
    std::string out;
    if (backend == MangleBackend::Nftables)
        ns.exec(std::string("nft list set inet flowshaper ") + (f == Family::V4 ? "capped4_0" : "capped6_0"),
                &out);
    else
        ns.exec(std::string("ipset list flowshaper-r0-") + (f == Family::V4 ? "v4" : "v6"), &out);
    return out;
}

// A TCP server in the server namespace sending 3000 bytes to each of `n` connections.
void serve(const Netns& server, Family f, int port, int n) {
    const std::string any = f == Family::V4 ? "0.0.0.0" : "::";
    const std::string af = f == Family::V4 ? "AF_INET" : "AF_INET6";
    server.exec_ok("sh -c 'python3 -c \"import socket; s=socket.socket(socket." + af +
                   "); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\\\"" + any +
                   "\\\"," + std::to_string(port) +
                   ")); s.listen(4); [(c.sendall(b\\\"y\\\"*3000), c.close()) for c in "
                   "(s.accept()[0] for _ in range(" +
                   std::to_string(n) + "))]\" >/dev/null 2>&1 &'");
    REQUIRE(wait_until([&] { return server.listens("tcp", port); }));
}

// One download from the server's `port`, opened from the client's address `from`.
void download(const Netns& client, Family f, const std::string& from, int port) {
    const std::string to = f == Family::V4 ? VethPair::kServerV4 : VethPair::kServerV6;
    client.exec_ok(
        "python3 -c 'import socket,sys; c=socket.create_connection((sys.argv[2]," + std::to_string(port) +
        "), source_address=(sys.argv[1],0)); [c.recv(9000) for _ in range(3)]' " + from + " " + to);
}

}  // namespace

TEST_CASE(
    "both backends: a capped client's new connection carries the DSCP from its first packet (the SYN-ACK), "
    "an uncapped client's never") {
    require_netns_privileges();
    const MangleBackend backend = GENERATE(MangleBackend::Nftables, MangleBackend::Iptables);
    const Family f = GENERATE(Family::V4, Family::V6);
    INFO(name(backend) << (f == Family::V4 ? " IPv4" : " IPv6"));
    VethPair net("cs");
    const std::string capped = f == Family::V4 ? VethPair::kClientV4 : VethPair::kClientV6;
    const std::string plain = f == Family::V4 ? "10.200.0.3" : "fd00:200::3";
    net.add_client_address(plain + (f == Family::V4 ? "/24" : "/64"));
    {
        EnterNetns in(net.server);
        auto port = open_port(backend);
        REQUIRE(port->has_kernel_sets());
        REQUIRE(port->ensure(f, capped_spec(6, {40020})));
        REQUIRE(port->add_capped({0, *Address::parse(capped)}));
    }
    CHECK(set_listing(net.server, backend, f).find(capped) != std::string::npos);
    CHECK(set_listing(net.server, backend, f).find(plain) == std::string::npos);
    serve(net.server, f, 40020, 2);

    Capture first(net.client, 4, "tcp and src port 40020");
    REQUIRE(first.listening());
    download(net.client, f, capped, 40020);
    auto packets = first.packets();
    INFO(first.raw());
    REQUIRE(packets.size() == 4);
    CHECK(packets[0].flags == "S.");  // the first packet toward the client
    for (const auto& p : packets) CHECK(p.tos == "0x20");

    Capture second(net.client, 3, "tcp and src port 40020");
    REQUIRE(second.listening());
    download(net.client, f, plain, 40020);
    auto other = second.packets();
    INFO(second.raw());
    REQUIRE(other.size() == 3);
    for (const auto& p : other) CHECK(p.tos == "0x0");
    // The kernel wrote the capped client's ctmark, and only its.
    const std::string fam = f == Family::V4 ? "ipv4" : "ipv6";
    CHECK(net.server.exec_ok("conntrack -L -f " + fam + " -p tcp -s " + capped + " --dport 40020")
              .find("mark=65536") != std::string::npos);
    CHECK(net.server.exec_ok("conntrack -L -f " + fam + " -p tcp -s " + plain + " --dport 40020")
              .find("mark=0 ") != std::string::npos);
}

TEST_CASE(
    "both backends: members survive a rule rewrite and a restart, and remove_all leaves the firewall and "
    "the other tool's ipset as before") {
    require_netns_privileges();
    const MangleBackend backend = GENERATE(MangleBackend::Nftables, MangleBackend::Iptables);
    const uint32_t rule_mask = GENERATE(0x00ff0000u, 0x00010000u);
    INFO(name(backend) << " rule mask " << rule_mask);
    Netns ns("ck");
    ns.exec_ok("ipset create othertool hash:ip");
    ns.exec_ok("ipset add othertool 198.51.100.9");
    ns.exec_ok("ipset create flowshaper-other hash:ip");  // not a name of ours
    const std::string before = ruleset(ns);
    EnterNetns in(ns);
    auto port = open_port(backend);
    const MangleSpec spec = capped_spec(6, {143, 993}, {2525}, rule_mask);
    for (auto f : {Family::V4, Family::V6}) REQUIRE(port->ensure(f, spec));
    for (auto f : {Family::V4, Family::V6}) {  // both families' rules are there, read back
        auto read = port->read(f);
        REQUIRE(read);
        REQUIRE(read->has_value());
        CHECK(**read == spec);
    }
    const CappedClient a{0, *Address::parse("192.0.2.7")}, b{0, *Address::parse("2001:db8::7")};
    REQUIRE(port->add_capped(a));
    REQUIRE(port->add_capped(a));  // already there: not an error
    REQUIRE(port->add_capped(b));
    CHECK(set_listing(ns, backend, Family::V4).find("192.0.2.7") != std::string::npos);
    CHECK(set_listing(ns, backend, Family::V6).find("2001:db8::7") != std::string::npos);
    MangleSpec changed = spec;
    changed.dscp_rules[0].dscp = 10;
    REQUIRE(port->ensure(Family::V4, changed));  // the rules change, the sets' members stay

    auto restarted = open_port(backend);  // as after SIGKILL: a new process, the same kernel
    auto read = restarted->read(Family::V4);
    REQUIRE(read);
    REQUIRE(read->has_value());
    CHECK(**read == changed);
    const uint64_t commits = restarted->commits();
    REQUIRE(restarted->ensure(Family::V4, changed));
    CHECK(restarted->commits() == commits);  // adopted: nothing written
    auto members = restarted->read_capped();
    REQUIRE(members);
    CHECK(*members == std::vector<CappedClient>{a, b});
    REQUIRE(restarted->remove_capped(a));
    REQUIRE(restarted->remove_capped(a));  // gone already: not an error
    CHECK(set_listing(ns, backend, Family::V4).find("192.0.2.7") == std::string::npos);
    REQUIRE(restarted->flush_capped());
    CHECK(set_listing(ns, backend, Family::V6).find("2001:db8::7") == std::string::npos);
    CHECK(ns.exec_ok("ipset list othertool").find("198.51.100.9") != std::string::npos);
    for (auto f : {Family::V4, Family::V6}) REQUIRE(restarted->remove_all(f));
    CHECK(ruleset(ns) == before);
}

TEST_CASE("iptables: the capped-client rules read back with iptables-legacy-save, no unsupported revision") {
    require_netns_privileges();
    Netns ns("cr");
    {
        EnterNetns in(ns);
        auto port = open_port(MangleBackend::Iptables);
        REQUIRE(port->ensure(Family::V4, capped_spec(6, {143, 993}, {2525})));
        MangleSpec udp = capped_spec(17, {});
        REQUIRE(port->ensure(Family::V6, udp));
    }
    const std::string v4 = ns.exec_ok("iptables-legacy-save -t mangle");
    const std::string v6 = ns.exec_ok("ip6tables-legacy-save -t mangle");
    INFO(v4 << v6);
    CHECK(v4.find("unsupported") == std::string::npos);
    CHECK(v6.find("unsupported") == std::string::npos);
    CHECK(
        v4.find(
            "-A FLOWSHAPER -p tcp -m set --match-set flowshaper-r0-v4 dst -m multiport --sports 143,993 -j "
            "CONNMARK --set-xmark 0x10000/0xff0000\n-A FLOWSHAPER -p tcp -m set --match-set flowshaper-r0-v4 "
            "dst -m multiport --dports 2525 -j CONNMARK --set-xmark 0x10000/0xff0000\n-A FLOWSHAPER -j "
            "CONNMARK --restore-mark") != std::string::npos);
    CHECK(v6.find("-A FLOWSHAPER -p udp -m set --match-set flowshaper-r0-v6 dst -j CONNMARK --set-xmark "
                  "0x10000/0xff0000") != std::string::npos);
    // The same text as `flowshaper plan` prints for it.
    for (const auto& line : flowshaper::kernel::render_save_lines(capped_spec(6, {143, 993}, {2525})))
        CHECK(v4.find(line) != std::string::npos);
    CHECK(ns.exec_ok("ipset list -n").find("flowshaper-r0-v4\nflowshaper-r0-v6") != std::string::npos);
}
