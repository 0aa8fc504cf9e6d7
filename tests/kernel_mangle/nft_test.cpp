// What only the nftables backend has: one transaction per change (a rejected batch leaves the
// old table), the capped-client sets marking a new connection from its first packet, and the
// NFNLGRP_NFTABLES events that tell the daemon someone else removed the table.
#include <poll.h>

#include <catch2/catch.hpp>
#include <string>

#include "capture.hpp"
#include "flowshaper/kernel/mangle_backend.hpp"
#include "netns.hpp"
#include "nft_session.hpp"

using namespace flowshaper::testing;
using flowshaper::kernel::CappedClient;
using flowshaper::kernel::MangleSpec;
using flowshaper::net::Address;
using flowshaper::net::Family;

namespace {

MangleSpec capped_spec(uint8_t l4proto, std::vector<uint16_t> local_ports) {
    MangleSpec spec;
    spec.mark_mask = 0x00ff0000;
    spec.dscp_rules.push_back({0x00010000, 0x00ff0000, 8, "heavy"});
    spec.capped.push_back({l4proto, std::move(local_ports), {}});
    return spec;
}

std::unique_ptr<flowshaper::kernel::ManglePort> nft_port() {
    auto port = flowshaper::kernel::make_nft_mangle_port();
    REQUIRE(port);
    return std::move(*port);
}

bool readable(int fd, int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, timeout_ms) == 1;
}

}  // namespace

TEST_CASE("nftables: a rejected batch leaves the old table as it was") {
    require_netns_privileges();
    Netns ns("nb");
    EnterNetns in(ns);
    auto port = nft_port();
    REQUIRE(port->ensure(Family::V4, capped_spec(6, {993})));
    REQUIRE(port->add_capped({0, *Address::parse("192.0.2.7")}));
    const std::string before = ns.exec_ok("nft -j list ruleset");
    MangleSpec other = capped_spec(6, {993});
    other.dscp_rules[0].dscp = 10;
    // The port's own write path with one rule the kernel refuses appended to the same buffer.
    auto session = flowshaper::kernel::nft::Session::open(false);
    REQUIRE(session);
    auto out = session->run(flowshaper::kernel::render_nft_table(other, std::nullopt) +
                                "add rule inet flowshaper v4 meta mark set 1 jump nosuchchain\n",
                            "replace", "table inet flowshaper");
    REQUIRE_FALSE(out);
    INFO(out.error().text());
    CHECK(out.error().text().find("Could not process rule") != std::string::npos);
    CHECK(ns.exec_ok("nft -j list ruleset") == before);
}

TEST_CASE("nftables: capped sets are kept across a table rewrite and read back after a restart") {
    require_netns_privileges();
    Netns ns("ns");
    EnterNetns in(ns);
    auto port = nft_port();
    for (auto f : {Family::V4, Family::V6}) REQUIRE(port->ensure(f, capped_spec(6, {143, 993})));
    const CappedClient a{0, *Address::parse("192.0.2.7")}, b{0, *Address::parse("2001:db8::7")};
    REQUIRE(port->add_capped(a));
    REQUIRE(port->add_capped(a));  // already there: not an error
    REQUIRE(port->add_capped(b));
    CHECK(ns.exec_ok("nft list set inet flowshaper capped4_0").find("192.0.2.7") != std::string::npos);
    MangleSpec changed = capped_spec(6, {143, 993});
    changed.dscp_rules[0].dscp = 10;
    REQUIRE(port->ensure(Family::V4, changed));  // the table is replaced whole
    auto restarted = nft_port();
    auto members = restarted->read_capped();
    REQUIRE(members);
    CHECK(*members == std::vector<CappedClient>{a, b});
    REQUIRE(restarted->remove_capped(a));
    REQUIRE(restarted->remove_capped(a));  // gone already: not an error
    REQUIRE(restarted->flush_capped());
    CHECK(ns.exec_ok("nft list set inet flowshaper capped6_0").find("2001:db8::7") == std::string::npos);
}

TEST_CASE("nftables: every packet of a capped client's new connection carries the DSCP from the first one") {
    require_netns_privileges();
    VethPair net("nc");
    net.add_client_address("10.200.0.3/24");
    {
        EnterNetns in(net.server);
        auto port = nft_port();
        REQUIRE(port->ensure(Family::V4, capped_spec(6, {40020})));
        REQUIRE(port->add_capped({0, *Address::parse(VethPair::kClientV4)}));
    }
    net.server.exec_ok(
        "sh -c 'python3 -c \"import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
        "socket.SO_REUSEADDR, 1); "
        "s.bind((\\\"0.0.0.0\\\",40020)); s.listen(4); [(c.sendall(b\\\"y\\\"*3000), c.close()) for c in "
        "(s.accept()[0] for _ in range(2))]\" >/dev/null 2>&1 &'");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    Capture capture(net.client, 4, "tcp and src port 40020");
    REQUIRE(capture.listening());
    const std::string get =
        "python3 -c 'import socket,sys; c=socket.create_connection((\"10.200.0.1\",40020), "
        "source_address=(sys.argv[1],0)); [c.recv(9000) for _ in range(3)]' ";
    net.client.exec_ok(get + VethPair::kClientV4);  // capped: SYN-ACK and data marked
    auto capped = capture.packets();
    INFO(capture.raw());
    REQUIRE(capped.size() >= 3);
    for (const auto& p : capped) CHECK(p.tos == "0x20");
    Capture other(net.client, 3, "tcp and src port 40020");
    REQUIRE(other.listening());
    net.client.exec_ok(get + "10.200.0.3");  // not capped
    auto plain = other.packets();
    INFO(other.raw());
    REQUIRE(plain.size() == 3);
    for (const auto& p : plain) CHECK(p.tos == "0x0");
    // The kernel wrote the capped client's ctmark, and only its.
    CHECK(net.server.exec_ok("conntrack -L -p tcp -s 10.200.0.2 --dport 40020").find("mark=65536") !=
          std::string::npos);
    CHECK(net.server.exec_ok("conntrack -L -p tcp -s 10.200.0.3 --dport 40020").find("mark=0") !=
          std::string::npos);
}

TEST_CASE("nftables: someone deleting the table makes change_fd readable; flowshaper's own writes do not") {
    require_netns_privileges();
    Netns ns("ne");
    EnterNetns in(ns);
    auto port = nft_port();
    REQUIRE(port->change_fd() >= 0);
    MangleSpec spec = capped_spec(17, {});
    REQUIRE(port->ensure(Family::V4, spec));
    REQUIRE(readable(port->change_fd(), 200));
    CHECK_FALSE(port->drain_changes());  // our own transaction
    ns.exec_ok("nft delete table inet flowshaper");
    REQUIRE(readable(port->change_fd(), 1000));
    CHECK(port->drain_changes());
    auto read = port->read(Family::V4);
    REQUIRE(read);
    CHECK_FALSE(read->has_value());
    REQUIRE(port->ensure(Family::V4, spec));  // restored
    CHECK(ns.exec_ok("nft list tables").find("inet flowshaper") != std::string::npos);
}
