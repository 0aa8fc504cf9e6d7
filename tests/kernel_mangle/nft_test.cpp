// What only the nftables backend has: one transaction per change (a rejected batch leaves the
// old table) and the NFNLGRP_NFTABLES events that tell the daemon someone else removed the table.
// The capped-client sets of both backends are in capped_sets_test.cpp.
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

TEST_CASE("nftables: someone deleting the table makes change_fd readable, flowshaper's own writes do not") {
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

TEST_CASE("nftables: one port called from two namespaces in turn writes each namespace's own table") {
    require_netns_privileges();
    Netns a("n1"), b("n2");
    std::unique_ptr<flowshaper::kernel::ManglePort> port;
    {
        EnterNetns in(a);
        port = nft_port();
        REQUIRE(port->ensure(Family::V4, capped_spec(6, {993})));
    }
    {
        EnterNetns in(b);  // the port keeps a libnftables context per namespace
        REQUIRE(port->ensure(Family::V6, capped_spec(17, {})));
        auto read = port->read(Family::V4);
        REQUIRE(read);
        CHECK_FALSE(read->has_value());  // b has no IPv4 rules: a's were not read from here
    }
    CHECK(a.exec_ok("nft list table inet flowshaper").find("chain v6") == std::string::npos);
    CHECK(a.exec_ok("nft list table inet flowshaper").find("tcp sport 993") != std::string::npos);
    CHECK(b.exec_ok("nft list table inet flowshaper").find("chain v4") == std::string::npos);
    {
        EnterNetns in(a);
        auto read = port->read(Family::V4);
        REQUIRE(read);
        CHECK(read->has_value());
    }
}
