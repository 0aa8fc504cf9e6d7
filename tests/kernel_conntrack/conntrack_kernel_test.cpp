// The libnetfilter_conntrack port against the real kernel, in throwaway namespaces; every
// observation is checked against the independent tool `conntrack -L`.
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <vector>

#include "conntrack_inject.hpp"
#include "conntrack_parse.hpp"
#include "flowshaper/kernel/conntrack_port.hpp"
#include "netns.hpp"
#include "wait.hpp"

using namespace flowshaper;
using namespace flowshaper::kernel;
using flowshaper::testing::EnterNetns;
using flowshaper::testing::Netns;
using flowshaper::testing::VethPair;

namespace {

// One line of `conntrack -L -o extended`, the fields the tests compare.
struct CliEntry {
    std::string src, dst;
    uint16_t sport = 0, dport = 0;
    uint64_t orig_bytes = 0, reply_bytes = 0;
    uint32_t mark = 0;
};

std::vector<CliEntry> conntrack_cli(const Netns& ns, const std::string& args = "") {
    std::string out = ns.exec_ok("conntrack -L -o extended " + args + " 2>/dev/null");
    std::vector<CliEntry> entries;
    std::istringstream lines(out);
    std::string line;
    while (std::getline(lines, line)) {
        std::istringstream words(line);
        std::string w;
        CliEntry e;
        int src_seen = 0, bytes_seen = 0;
        while (words >> w) {
            auto eq = w.find('=');
            if (eq == std::string::npos) continue;
            std::string k = w.substr(0, eq), v = w.substr(eq + 1);
            if (k == "src" && src_seen++ == 0) e.src = v;
            if (k == "dst" && e.dst.empty()) e.dst = v;
            if (k == "sport" && e.sport == 0) e.sport = static_cast<uint16_t>(std::stoul(v));
            if (k == "dport" && e.dport == 0) e.dport = static_cast<uint16_t>(std::stoul(v));
            if (k == "bytes") (bytes_seen++ == 0 ? e.orig_bytes : e.reply_bytes) = std::stoull(v);
            if (k == "mark") e.mark = static_cast<uint32_t>(std::stoul(v));
        }
        if (!e.src.empty()) entries.push_back(e);
    }
    return entries;
}

// Conntrack on (a CONNMARK rule needs it) and byte accounting on, in `ns`.
void track_connections(const Netns& ns, bool ipv6) {
    ns.exec_ok("iptables-legacy -t mangle -A POSTROUTING -j CONNMARK --restore-mark");
    if (ipv6) ns.exec_ok("ip6tables-legacy -t mangle -A POSTROUTING -j CONNMARK --restore-mark");
    ns.exec_ok("sysctl -qw net.netfilter.nf_conntrack_acct=1");
}

// A bounded transfer of exactly 5,000,000 payload bytes over one TCP connection from the client
// namespace to `server_addr`:`port` (the server reads to EOF, then closes).
void transfer_5mb(const VethPair& pair, const char* server_addr, int port) {
    const std::string dir = "/tmp/fst-ct-" + std::to_string(getpid());
    testing::sh_ok("mkdir -p " + dir);
    std::ofstream(dir + "/srv.py") << "import socket, sys\n"
                                      "s = socket.socket(socket.AF_INET6)\n"
                                      "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                                      "s.bind(('::', int(sys.argv[1]))); s.listen(1); s.settimeout(120)\n"
                                      "c, _ = s.accept()\n"
                                      "while c.recv(65536): pass\n"
                                      "c.close()\n";
    std::ofstream(dir + "/cli.py")
        << "import socket, sys\n"
           "c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=120)\n"
           "c.sendall(b'x' * 5000000); c.shutdown(socket.SHUT_WR)\n"
           "c.recv(1); c.close()\n";
    const std::string p = std::to_string(port);
    pair.server.exec_ok("sh -c 'timeout 300 python3 " + dir + "/srv.py " + p + " >/dev/null 2>&1 &'");
    REQUIRE(testing::wait_until([&] { return pair.server.listens("tcp", port); }));
    pair.client.exec_ok("timeout 300 python3 " + dir + "/cli.py " + server_addr + " " + p);
    testing::sh("rm -rf " + dir);
}

std::unique_ptr<ConntrackPort> open_port(NfctOptions options = {}) {
    auto port = make_nfct_conntrack_port(options);
    if (!port) FAIL(port.error().text());
    return std::move(*port);
}

// The flow of the data connection: the one to `port` with the most bytes.
FlowSample biggest_to_port(ConntrackPort& port, uint16_t dport) {
    auto flows = port.dump_all();
    REQUIRE(flows);
    FlowSample best;
    for (const FlowSample& f : *flows)
        if (f.orig_dport == dport && f.orig_bytes >= best.orig_bytes) best = f;
    return best;
}

bool wait_readable(int fd, int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, timeout_ms) == 1;
}

}  // namespace

TEST_CASE("a dump reports a finished transfer's counters exactly as conntrack -L does",
          "[conntrack][kernel]") {
    testing::require_netns_privileges();
    VethPair pair("ctdump");
    track_connections(pair.server, true);
    bool v6 = GENERATE(false, true);
    const char* server = v6 ? VethPair::kServerV6 : VethPair::kServerV4;
    transfer_5mb(pair, server, 5201);

    EnterNetns inside(pair.server);
    auto port = open_port({.events = false});
    FlowSample data = biggest_to_port(*port, 5201);
    CHECK(data.family == (v6 ? net::Family::V6 : net::Family::V4));
    CHECK(data.l4proto == 6);
    CHECK(data.orig_src.str() == (v6 ? VethPair::kClientV6 : VethPair::kClientV4));
    CHECK(data.orig_dst.str() == server);
    // 5 MB of payload went client -> server (original direction), ACKs came back.
    CHECK(data.orig_bytes > 5'000'000);  // payload plus IP and TCP headers
    CHECK(data.orig_bytes < 5'500'000);
    CHECK(data.reply_bytes < data.orig_bytes / 10);
    CHECK(data.orig_packets >= 5'000'000 / 65'536);  // veth passes GSO skbs: up to 64 KiB per packet

    bool found = false;
    for (const CliEntry& e : conntrack_cli(pair.server, v6 ? "-f ipv6" : "")) {
        if (e.sport != data.orig_sport || e.dport != 5201) continue;
        found = true;
        CHECK(e.src == data.orig_src.str());
        CHECK(e.orig_bytes == data.orig_bytes);  // the connection is closed: nothing moves any more
        CHECK(e.reply_bytes == data.reply_bytes);
    }
    CHECK(found);
}

TEST_CASE("the fast parser reads every entry as libnetfilter_conntrack's own parser does",
          "[conntrack][kernel]") {
    testing::require_netns_privileges();
    VethPair pair("ctparse");
    track_connections(pair.server, true);
    transfer_5mb(pair, VethPair::kServerV4, 5202);
    EnterNetns inside(pair.server);
    REQUIRE(insert_synthetic_flows({.count = 50,
                                    .first_src = *net::Address::parse("198.51.100.1"),
                                    .dst = *net::Address::parse("192.0.2.1"),
                                    .mark = 0x00110022}));
    REQUIRE(insert_synthetic_flows({.count = 50,
                                    .first_src = *net::Address::parse("2001:db8:1::1"),
                                    .dst = *net::Address::parse("2001:db8::1"),
                                    .dport = 143}));

    nfct_handle* h = nfct_open(CONNTRACK, 0);
    REQUIRE(h != nullptr);
    uint32_t family = AF_UNSPEC;
    REQUIRE(nfct_send(h, NFCT_Q_DUMP, &family) > 0);
    std::vector<uint8_t> buf(64 * 1024);
    nf_conntrack* ct = nfct_new();
    int compared = 0;
    for (bool done = false; !done;) {
        ssize_t n = recv(nfct_fd(h), buf.data(), buf.size(), 0);
        REQUIRE(n > 0);
        size_t left = static_cast<size_t>(n);
        for (auto* nlh = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(nlh, left);
             nlh = NLMSG_NEXT(nlh, left)) {
            if (nlh->nlmsg_type == NLMSG_DONE || nlh->nlmsg_type == NLMSG_ERROR) {
                done = true;
                break;
            }
            FlowSample fast;
            REQUIRE(parse_conntrack_message(nlh, fast));
            REQUIRE(nfct_nlmsg_parse(nlh, ct) == 0);
            bool v4 = nfct_get_attr_u8(ct, ATTR_L3PROTO) == AF_INET;
            CHECK(fast.family == (v4 ? net::Family::V4 : net::Family::V6));
            CHECK(std::memcmp(fast.orig_src.bytes.data(),
                              nfct_get_attr(ct, v4 ? ATTR_IPV4_SRC : ATTR_IPV6_SRC), v4 ? 4 : 16) == 0);
            CHECK(std::memcmp(fast.orig_dst.bytes.data(),
                              nfct_get_attr(ct, v4 ? ATTR_IPV4_DST : ATTR_IPV6_DST), v4 ? 4 : 16) == 0);
            CHECK(fast.l4proto == nfct_get_attr_u8(ct, ATTR_L4PROTO));
            CHECK(fast.orig_sport == ntohs(nfct_get_attr_u16(ct, ATTR_PORT_SRC)));
            CHECK(fast.orig_dport == ntohs(nfct_get_attr_u16(ct, ATTR_PORT_DST)));
            CHECK(fast.orig_bytes == nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_BYTES));
            CHECK(fast.reply_bytes == nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_BYTES));
            CHECK(fast.orig_packets == nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_PACKETS));
            CHECK(fast.reply_packets == nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_PACKETS));
            CHECK(fast.mark == nfct_get_attr_u32(ct, ATTR_MARK));
            CHECK(fast.id == nfct_get_attr_u32(ct, ATTR_ID));
            ++compared;
        }
    }
    nfct_destroy(ct);
    nfct_close(h);
    CHECK(compared == 101);  // 100 synthetic entries + the transfer's connection
}

TEST_CASE("kernel-side dump filters return only entries of that mark or family", "[conntrack][kernel]") {
    testing::require_netns_privileges();
    Netns ns("ctfilt");
    ns.exec_ok("sysctl -qw net.netfilter.nf_conntrack_acct=1");
    EnterNetns inside(ns);
    REQUIRE(insert_synthetic_flows({.count = 30,
                                    .first_src = *net::Address::parse("198.51.100.1"),
                                    .dst = *net::Address::parse("192.0.2.1"),
                                    .mark = 0x00050000}));
    REQUIRE(insert_synthetic_flows({.count = 20,
                                    .first_src = *net::Address::parse("2001:db8:1::1"),
                                    .dst = *net::Address::parse("2001:db8::1")}));
    auto port = open_port({.events = false});
    CHECK(port->dump_all()->size() == 50);
    DumpFilter by_mark;
    by_mark.mark = DumpFilter::MarkMatch{0x00050000, 0x00ff0000};
    auto marked = port->dump_all(by_mark);
    REQUIRE(marked);
    CHECK(marked->size() == 30);
    for (const FlowSample& f : *marked) CHECK(f.mark == 0x00050000);
    DumpFilter v6;
    v6.family = net::Family::V6;
    auto v6_flows = port->dump_all(v6);
    REQUIRE(v6_flows);
    CHECK(v6_flows->size() == 20);
    for (const FlowSample& f : *v6_flows) CHECK(f.family == net::Family::V6);
    DumpFilter nothing;
    nothing.mark = DumpFilter::MarkMatch{0x7e000000, 0xff000000};
    CHECK(port->dump_all(nothing)->empty());
}

TEST_CASE("set_mark changes only the ctmark bits within the mask, as conntrack -L shows",
          "[conntrack][kernel]") {
    testing::require_netns_privileges();
    Netns ns("ctmark");
    EnterNetns inside(ns);
    bool v6 = GENERATE(false, true);
    const char* src = v6 ? "2001:db8:1::7" : "198.51.100.7";
    REQUIRE(insert_synthetic_flows({.count = 2,
                                    .first_src = *net::Address::parse(src),
                                    .dst = *net::Address::parse(v6 ? "2001:db8::1" : "192.0.2.1"),
                                    .mark = 0xaa0000bb}));
    auto port = open_port({.events = false});
    auto flows = port->dump_all();
    REQUIRE(flows->size() == 2);
    const FlowSample& target = flows->at(0).orig_src.str() == src ? flows->at(0) : flows->at(1);
    REQUIRE(port->set_mark(target, 0x00420000, 0x00ff0000));

    std::map<std::string, uint32_t> marks;
    for (const CliEntry& e : conntrack_cli(ns, v6 ? "-f ipv6" : "")) marks[e.src] = e.mark;
    REQUIRE(marks.size() == 2);
    CHECK(marks[src] == 0xaa4200bbu);
    for (const auto& [addr, mark] : marks)
        if (addr != src) CHECK(mark == 0xaa0000bbu);  // the other connection is untouched

    // Bits outside `value`'s mask are ignored; within it, a second write replaces the first.
    REQUIRE(port->set_mark(target, 0xff130000, 0x00ff0000));
    CHECK(conntrack_cli(ns, std::string(v6 ? "-f ipv6 " : "") + "-s " + src).at(0).mark == 0xaa1300bbu);
}

TEST_CASE("set_mark on a connection that does not exist fails with ENOENT", "[conntrack][kernel]") {
    testing::require_netns_privileges();
    Netns ns("ctnoent");
    EnterNetns inside(ns);
    auto port = open_port({.events = false});
    FlowSample ghost;
    ghost.orig_src = *net::Address::parse("198.51.100.9");
    ghost.orig_dst = *net::Address::parse("192.0.2.9");
    ghost.l4proto = 6;
    ghost.orig_sport = 1;
    ghost.orig_dport = 2;
    Status s = port->set_mark(ghost, 1, 1);
    REQUIRE_FALSE(s);
    CHECK(s.error().code == ENOENT);
}

TEST_CASE("events report a new connection and the destruction of a closed one", "[conntrack][kernel]") {
    testing::require_netns_privileges();
    VethPair pair("ctev");
    track_connections(pair.server, false);
    pair.server.exec_ok("sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_time_wait=1");
    EnterNetns inside(pair.server);
    auto port = open_port();
    transfer_5mb(pair, VethPair::kServerV4, 5203);

    // Counters of the closed connections as a dump sees them while they wait in TIME_WAIT.
    std::map<uint16_t, uint64_t> dumped_bytes;
    auto all = port->dump_all();  // named: a range over *temporary would dangle
    REQUIRE(all);
    for (const FlowSample& f : *all)
        if (f.orig_dport == 5203) dumped_bytes[f.orig_sport] = f.orig_bytes;

    std::vector<FlowEvent> events;
    auto collect = [&](const FlowEvent& e) {
        if (e.flow.orig_dport == 5203) events.push_back(e);
    };
    auto destroyed = [&] {
        int n = 0;
        for (const FlowEvent& e : events) n += e.type == FlowEventType::Destroy;
        return n;
    };
    // TIME_WAIT lasts 1 s here. An expired entry goes when the garbage collector finds it or when
    // a dump walks past it (the kernel evicts it then), so the loop dumps to make the timing
    // deterministic, as the daemon's periodic dumps do.
    for (int i = 0; i < 100 && destroyed() < 1; ++i) {
        wait_readable(port->event_fd(), 100);
        auto lost = port->drain_events(collect);
        REQUIRE(lost);
        CHECK_FALSE(*lost);
        REQUIRE(port->dump_all());
    }
    int news = 0;
    for (const FlowEvent& e : events) {
        CHECK(e.flow.orig_src.str() == VethPair::kClientV4);
        if (e.type == FlowEventType::New) ++news;
        if (e.type != FlowEventType::Destroy) continue;
        // DESTROY carries the final counters: what the dump saw, plus at most the closing packets.
        REQUIRE(dumped_bytes.count(e.flow.orig_sport) == 1);
        CHECK(e.flow.orig_bytes >= dumped_bytes[e.flow.orig_sport]);
        CHECK(e.flow.orig_bytes <= dumped_bytes[e.flow.orig_sport] + 1000);
    }
    CHECK(news == 1);
    CHECK(destroyed() == 1);
    uint64_t data_bytes = 0;
    for (const auto& [sport, bytes] : dumped_bytes) data_bytes = std::max(data_bytes, bytes);
    CHECK(data_bytes > 5'000'000);
    CHECK(conntrack_cli(pair.server, "-p tcp --dport 5203").empty());
}

TEST_CASE("a burst that overflows a small event buffer is reported as lost events", "[conntrack][kernel]") {
    testing::require_netns_privileges();
    Netns ns("ctovf");
    EnterNetns inside(ns);
    auto port = open_port({.events = true, .event_rcvbuf_bytes = 4096});
    REQUIRE(insert_synthetic_flows({.count = 500,
                                    .first_src = *net::Address::parse("198.51.100.1"),
                                    .dst = *net::Address::parse("192.0.2.1")}));
    int seen = 0;
    auto lost = port->drain_events([&](const FlowEvent&) { ++seen; });
    REQUIRE(lost);
    CHECK(*lost);
    CHECK(seen < 500);
    // The socket still works, and a resync dump sees everything.
    auto again = port->drain_events([&](const FlowEvent&) { ++seen; });
    REQUIRE(again);
    CHECK_FALSE(*again);
    CHECK(port->dump_all()->size() == 500);
}
