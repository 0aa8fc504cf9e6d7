#include <catch2/catch.hpp>

#include "detect_support.hpp"
#include "flowshaper/detect/classify.hpp"

using namespace flowshaper;
using namespace flowshaper::detect;
using namespace flowshaper::detect::testing;

namespace {

LocalAddresses host() {
    return LocalAddresses(host_addresses());
}

policy::Detect imap() {
    auto r = rule("imap");
    r.local_ports = {143, 993};
    r.flow_bytes = 500'000'000;
    return r;
}

policy::Detect upload() {
    auto r = rule("upload");
    r.remote_ports = {5301};
    r.flow_bytes = 1'000'000;
    return r;
}

}  // namespace

TEST_CASE("a client's connection to a local port: the client is the source, reply bytes go toward it") {
    auto c = classify(inbound(1, "203.0.113.7", 993, 7'000, 300), host(), {imap()});
    REQUIRE(c);
    CHECK(c->rule == 0);
    CHECK(c->client == addr("203.0.113.7"));
    CHECK(c->client_opened);
    CHECK(c->toward_client_bytes == 7'000);
}

TEST_CASE(
    "a connection this host opens to a remote port: the client is the destination, original bytes count") {
    auto c = classify(outbound(1, "198.51.100.9", 5301, 12'345, 999), host(), {upload()});
    REQUIRE(c);
    CHECK(c->client == addr("198.51.100.9"));
    CHECK_FALSE(c->client_opened);
    CHECK(c->toward_client_bytes == 12'345);
}

TEST_CASE("local_ports rules take only connections clients open, remote_ports rules only ours") {
    // Inbound to port 5301 is not "we initiated to 5301"; outbound to 993 is not "we serve 993".
    CHECK_FALSE(classify(inbound(1, "203.0.113.7", 5301, 10), host(), {upload()}));
    CHECK_FALSE(classify(outbound(2, "203.0.113.7", 993, 10), host(), {imap()}));
    // Another port of ours is no match either.
    CHECK_FALSE(classify(inbound(3, "203.0.113.7", 80, 10), host(), {imap()}));
}

TEST_CASE("a rule without port lists takes both directions and every port") {
    auto any = rule("any");
    auto in = classify(inbound(1, "203.0.113.7", 8080, 50, 5), host(), {any});
    auto out = classify(outbound(2, "203.0.113.8", 22, 60, 6), host(), {any});
    REQUIRE(in);
    REQUIRE(out);
    CHECK(in->toward_client_bytes == 50);
    CHECK(out->toward_client_bytes == 60);
    CHECK(out->client == addr("203.0.113.8"));
}

TEST_CASE("the protocol must match: tcp, udp or any") {
    auto tcp = rule("tcp");
    auto udp = rule("udp");
    udp.protocol = policy::Protocol::Udp;
    auto any = rule("any");
    any.protocol = policy::Protocol::Any;
    auto dns = inbound(1, "203.0.113.7", 53, 10, 0, kUdp);
    CHECK_FALSE(classify(dns, host(), {tcp}));
    REQUIRE(classify(dns, host(), {tcp, udp}));
    CHECK(classify(dns, host(), {tcp, udp})->rule == 1);
    auto icmp = inbound(2, "203.0.113.7", 0, 10, 0, 1);
    icmp.orig_sport = 0;
    CHECK(classify(icmp, host(), {any})->rule == 0);
    // Port lists never match a protocol without ports.
    any.local_ports = {0};
    CHECK_FALSE(classify(icmp, host(), {any}));
}

TEST_CASE("an excluded client does not match the rule, a later rule may still take it") {
    auto r = imap();
    r.exclude = {prefix("10.0.0.0/8")};
    auto catch_all = rule("catch-all");
    CHECK_FALSE(classify(inbound(1, "10.1.2.3", 993, 10), host(), {r}));
    auto c = classify(inbound(1, "10.1.2.3", 993, 10), host(), {r, catch_all});
    REQUIRE(c);
    CHECK(c->rule == 1);
    CHECK(classify(inbound(2, "11.1.2.3", 993, 10), host(), {r, catch_all})->rule == 0);
}

TEST_CASE("the first matching rule in policy order wins") {
    auto a = rule("a");
    a.local_ports = {993};
    auto b = rule("b");  // any port
    std::vector<policy::Detect> rules = {b, a};
    CHECK(classify(inbound(1, "203.0.113.7", 993, 10), host(), rules)->rule == 0);
    rules = {a, b};
    CHECK(classify(inbound(1, "203.0.113.7", 993, 10), host(), rules)->rule == 0);
    CHECK(classify(inbound(2, "203.0.113.7", 80, 10), host(), rules)->rule == 1);
}

TEST_CASE("a rule with clients prefixes needs the client inside one") {
    auto r = rule("customers");
    r.clients = {prefix("203.0.113.0/24"), prefix("2001:db8:7::/64")};
    CHECK(classify(inbound(1, "203.0.113.200", 80, 10), host(), {r}));
    CHECK_FALSE(classify(inbound(2, "198.51.100.1", 80, 10), host(), {r}));
    CHECK(classify(inbound(3, "2001:db8:7::42", 80, 10), host(), {r}));
    CHECK_FALSE(classify(inbound(4, "2001:db8:8::42", 80, 10), host(), {r}));
}

TEST_CASE("forwarded traffic: the client is the endpoint inside the rule's clients prefixes") {
    auto r = rule("lan");
    r.clients = {prefix("10.9.0.0/16")};
    FlowSample out_from_lan;  // a LAN client downloads from the internet through us
    out_from_lan.id = 1;
    out_from_lan.l4proto = kTcp;
    out_from_lan.orig_src = addr("10.9.1.2");
    out_from_lan.orig_dst = addr("93.184.216.34");
    out_from_lan.orig_dport = 443;
    out_from_lan.orig_bytes = 1'000;
    out_from_lan.reply_bytes = 90'000;
    auto c = classify(out_from_lan, host(), {r});
    REQUIRE(c);
    CHECK(c->client == addr("10.9.1.2"));
    CHECK(c->client_opened);
    CHECK(c->toward_client_bytes == 90'000);

    FlowSample into_lan = out_from_lan;  // someone outside opened a connection to a LAN host
    std::swap(into_lan.orig_src, into_lan.orig_dst);
    c = classify(into_lan, host(), {r});
    REQUIRE(c);
    CHECK(c->client == addr("10.9.1.2"));
    CHECK_FALSE(c->client_opened);
    CHECK(c->toward_client_bytes == 1'000);

    // Forwarded traffic outside the prefixes, or a rule without prefixes: no client.
    CHECK_FALSE(classify(out_from_lan, host(), {rule("no-prefixes")}));
    out_from_lan.orig_src = addr("10.10.1.2");
    CHECK_FALSE(classify(out_from_lan, host(), {r}));
}

TEST_CASE("traffic between two addresses of this host has no client") {
    FlowSample f = inbound(1, "192.0.2.1", 80, 10);
    CHECK_FALSE(classify(f, host(), {rule("any")}));
}

TEST_CASE("IPv6 flows are classified like IPv4 ones") {
    auto c = classify(inbound(1, "2001:db8:7::9", 993, 4'242), host(), {imap()});
    REQUIRE(c);
    CHECK(c->client == addr("2001:db8:7::9"));
    CHECK(c->toward_client_bytes == 4'242);
    auto o = classify(outbound(2, "2001:db8:9::1", 5301, 77), host(), {upload()});
    REQUIRE(o);
    CHECK(o->client == addr("2001:db8:9::1"));
    CHECK(o->toward_client_bytes == 77);
}
