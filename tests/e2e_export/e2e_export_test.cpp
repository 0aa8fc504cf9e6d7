// `flowshaper run` with [[export]] end to end: the daemon in the server namespace of a veth pair
// exports IPFIX to a real nfcapd on that namespace's loopback while clients in the other
// namespace talk to a server on port 5001. Checked with tools that are not flowshaper's: nfdump
// (what the collector decoded, its sequence checks) and `conntrack -E` (each connection's final
// counters in both directions).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "background.hpp"
#include "conntrack_text.hpp"
#include "daemon_fixture.hpp"
#include "status_socket.hpp"

using namespace flowshaper::testing;

namespace {

constexpr int kReasonActiveTimeout = 2, kReasonEndOfFlow = 3, kReasonForcedEnd = 4;  // flowEndReason
constexpr int kCs1Tos = 8 << 2;  // postIpClassOfService of DSCP CS1

// One record of a connection to port 5001 as nfdump printed it.
struct NfRecord {
    std::string end, src;  // end: "yyyy-mm-dd hh:mm:ss.mmm" (sorts as text)
    int sport = 0;
    uint64_t in_bytes = 0, out_bytes = 0, in_packets = 0, out_packets = 0;
    int tos = 0, reason = 0;
};

std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(' ');
    return b == std::string::npos ? "" : s.substr(b, s.find_last_not_of(' ') - b + 1);
}

std::vector<NfRecord> nfdump_records(const std::string& dir) {
    const std::string fmt = "fmt:%te;%sa;%sp;%dp;%ibyt;%obyt;%ipkt;%opkt;%dtos;%end";
    std::istringstream lines(sh_ok("nfdump -q -N -R " + dir + " -o '" + fmt + "'"));
    std::vector<NfRecord> out;
    for (std::string line; std::getline(lines, line);) {
        std::vector<std::string> f;
        std::istringstream fields(line);
        for (std::string x; std::getline(fields, x, ';');) f.push_back(trim(x));
        if (f.size() < 10 || f[3] != "5001") continue;
        NfRecord r{f[0],
                   f[1],
                   std::stoi(f[2]),
                   std::stoull(f[4]),
                   std::stoull(f[5]),
                   std::stoull(f[6]),
                   std::stoull(f[7]),
                   std::stoi(f[8]),
                   std::stoi(f[9])};
        out.push_back(r);
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.end < b.end; });
    return out;
}

// The records of one connection, in the order they ended.
std::vector<NfRecord> records_of(const std::vector<NfRecord>& all, const std::string& src, int sport) {
    std::vector<NfRecord> out;
    for (const auto& r : all)
        if (r.src == src && r.sport == sport) out.push_back(r);
    return out;
}

// Every record's bytes and packets, both directions, add up to conntrack's final counters.
void check_totals(const std::vector<NfRecord>& records, const CtEnd& end) {
    INFO(end.src << ":" << end.sport << ", " << records.size() << " records");
    REQUIRE_FALSE(records.empty());
    uint64_t in_b = 0, out_b = 0, in_p = 0, out_p = 0;
    for (const auto& r : records)
        in_b += r.in_bytes, out_b += r.out_bytes, in_p += r.in_packets, out_p += r.out_packets;
    CHECK(in_b == end.bytes[0]);
    CHECK(out_b == end.bytes[1]);
    CHECK(in_p == end.packets[0]);
    CHECK(out_p == end.packets[1]);
}

// nfdump's exporter statistics of every file nfcapd wrote (one a minute): no sequence failure.
void check_no_sequence_failures(const std::string& dir) {
    const std::string stats =
        sh_ok("for f in " + dir + "/nfcapd.*; do nfdump -E $f; done | grep 'Sequence failures'");
    INFO(stats);
    CHECK(stats.find("Sequence failures: 0,") != std::string::npos);
    CHECK_FALSE(std::regex_search(stats, std::regex("Sequence failures: [1-9]")));
}

// The server namespace of a veth pair runs the daemon, nfcapd on 127.0.0.1:4739, `conntrack -E`
// and a server on port 5001; clients talk to it from the client namespace. TCP entries leave
// conntrack 1 s after the close (not after TIME_WAIT's 120 s), so their DESTROY comes soon. The
// daemon's status socket tells how many polls it did: "two polls later" is the same amount of its
// work on any machine.
struct Lab {
    VethPair net{"exp"};
    std::string dir;
    StatusSocketPath status;
    std::unique_ptr<Background> events, collector, server;

    Lab() {
        require_netns_privileges();
        dir = "/tmp/fst-e2e-export-" + std::to_string(getpid());
        sh_ok("rm -rf " + dir + " && mkdir -p " + dir + "/nfcapd");
        net.add_client_address("10.200.0.3/24");
        for (const char* s : {"time_wait", "fin_wait", "close_wait", "last_ack", "close"})
            net.server.exec_ok(std::string("sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_") + s + "=1");
        events = std::make_unique<Background>(net.server, "stdbuf -oL conntrack -E -e DESTROY -o extended",
                                              dir + "/events.txt");
        collector = nfcapd("nfcapd", 4739);
        server = std::make_unique<Background>(net.server, "python3 " TRAFFIC_PY " server 5001",
                                              dir + "/server.log");
        REQUIRE(conntrack_events_heard(net.server, dir + "/events.txt"));
        REQUIRE(
            wait_until([&] { return net.server.listens("udp", 4739) && net.server.listens("tcp", 5001); }));
    }
    ~Lab() {
        if (!std::getenv("E2E_EXPORT_KEEP")) sh("rm -rf " + dir);  // E2E_EXPORT_KEEP=1 keeps logs and files
    }
    // A collector on 127.0.0.1:`port` writing into dir/`sub`.
    std::unique_ptr<Background> nfcapd(const std::string& sub, int port) const {
        sh_ok("mkdir -p " + dir + "/" + sub);
        return std::make_unique<Background>(
            net.server,
            "nfcapd -w " + dir + "/" + sub + " -p " + std::to_string(port) + " -b 127.0.0.1 -t 60",
            dir + "/" + sub + ".log");
    }
    // One connection from `src` that sends `bytes` over `seconds` (the server answers half).
    std::unique_ptr<Background> client(const std::string& host, const std::string& src, double seconds,
                                       uint64_t bytes, const std::string& name) const {
        return std::make_unique<Background>(net.client,
                                            "python3 " TRAFFIC_PY " client " + host + " 5001 " + src + " " +
                                                std::to_string(seconds) + " " + std::to_string(bytes),
                                            dir + "/" + name + ".log");
    }
    // Waits until `conntrack -E` printed `n` DESTROY events of port 5001.
    std::vector<CtEnd> wait_for_destroys(size_t n) const {
        wait_until([&] { return destroy_events(dir + "/events.txt", 5001).size() >= n; }, kWaitMs, 100);
        return destroy_events(dir + "/events.txt", 5001);
    }
    // Waits until the daemon has done `n` more polls.
    void wait_for_polls(uint64_t n) const { REQUIRE(flowshaper::testing::wait_for_polls(status.path(), n)); }
    // Waits until the collector on `port` has read every datagram sent to it (ss's Recv-Q).
    void wait_collected(int port) const {
        CHECK(wait_until([&] { return net.server.receive_queue("udp", port) == 0; }));
    }
    // Stops the daemon (SIGTERM: its last records go out before it exits), then nfcapd once it
    // has read them (it writes its file at SIGTERM).
    void stop(flowshaper::testing::Daemon& daemon) {
        CHECK(daemon.stop(SIGTERM) == 0);
        wait_collected(4739);
        collector->stop();
        events->stop();
    }
};

std::string export_table(int port, const std::string& active) {
    return "[[export]]\ntarget = \"udp://127.0.0.1:" + std::to_string(port) + "\"\nactive_timeout = \"" +
           active + "\"\n";
}

std::string policy_text(const Lab& lab, const std::string& rules, const std::string& poll,
                        const std::string& active) {
    return "[settings]\npoll_interval = \"" + poll + "\"\n" + lab.status.setting() + "\n" + rules +
           export_table(4739, active);
}

}  // namespace

TEST_CASE(
    "an export-only daemon's records add up to conntrack's final counters, a long connection's end in "
    "active timeouts then one end of flow, with no sequence failure",
    "[kernel][export]") {
    Lab lab;
    TempPolicy policy(policy_text(lab, "", "1s", "2s"));
    flowshaper::testing::Daemon daemon(lab.net.server, policy.path());
    REQUIRE(daemon.wait_for_log("ready"));
    CHECK(daemon.wait_for_log("export only"));
    // Connections opened after this have start and end times (nf_conntrack_timestamp).
    CHECK(daemon.wait_for_log("conntrack timestamps"));

    auto lng = lab.client("10.200.0.1", "10.200.0.2", 7.0, 140000, "long");
    auto shrt = lab.client("10.200.0.1", "10.200.0.3", 1.0, 30000, "short");
    auto six = lab.client("fd00:200::1", "fd00:200::2", 1.0, 100000, "six");
    for (auto* c : {lng.get(), shrt.get(), six.get()}) REQUIRE(c->wait(std::chrono::milliseconds(kWaitMs)));
    const auto ends = lab.wait_for_destroys(3);
    lab.wait_for_polls(2);  // the last DESTROY events reach the ledger and go out as records
    lab.stop(daemon);

    REQUIRE(ends.size() == 3);
    const auto records = nfdump_records(lab.dir + "/nfcapd");
    for (const CtEnd& e : ends) {
        const auto mine = records_of(records, e.src, e.sport);
        check_totals(mine, e);
        if (mine.empty()) continue;
        // Each connection ended while the daemon ran: its last record says "end of flow", every
        // earlier one "active timeout".
        CHECK(mine.back().reason == kReasonEndOfFlow);
        for (size_t i = 0; i + 1 < mine.size(); ++i) CHECK(mine[i].reason == kReasonActiveTimeout);
        if (e.src == "10.200.0.2") {
            // About 7 s, active_timeout 2 s: ceil(D / 2) records for a lifetime D (delta-time is
            // whole seconds, so D is in [delta, delta + 1)), one fewer when D mod 2 falls below
            // the phase of the poll grid.
            REQUIRE(e.seconds >= 6);
            INFO("lifetime " << e.seconds << " s");
            CHECK(mine.size() >= static_cast<size_t>(e.seconds / 2));
            CHECK(mine.size() <= static_cast<size_t>((e.seconds + 2) / 2));
        }
    }
    check_no_sequence_failures(lab.dir + "/nfcapd");
}

TEST_CASE(
    "beside a heavy-client rule the heavy connection's records carry the rule's DSCP, a light one's "
    "none, and SIGTERM ends the open ones with forced end",
    "[kernel][export]") {
    Lab lab;
    const std::string rules =
        "[[interface]]\ndevice = \"veth-s\"\nrate = \"1gbit\"\n\n"
        "[[detect]]\nname = \"bulk\"\ndevice = \"veth-s\"\nprotocol = \"tcp\"\nlocal_ports = [5001]\n"
        "flow_bytes = \"600KB\"\ndscp = \"CS1\"\nlimit = { rate = \"20mbit\" }\nrelease_after = \"1m\"\n\n";
    TempPolicy policy(policy_text(lab, rules, "1s", "2s"));
    flowshaper::testing::Daemon daemon(lab.net.server, policy.path());
    REQUIRE(daemon.wait_for_log("ready"));
    CHECK(daemon.wait_for_log("conntrack timestamps"));

    // The heavy client gets 2 MB back in about 4 s (600 KB toward it within 1.5 s); the light one
    // 10 KB/s (a chunk every 100 ms) for the 10 s it is given before the daemon stops.
    auto light = lab.client("10.200.0.1", "10.200.0.3", 60.0, 1200000, "light");
    auto heavy = lab.client("10.200.0.1", "10.200.0.2", 4.0, 4000000, "heavy");
    REQUIRE(daemon.wait_for_log("mark client=10.200.0.2"));
    // The kernel's own view: the heavy connection carries a mark, the light one none.
    const auto marked = conntrack_lines(lab.net.server, {"src=10.200.0.2", "dport=5001"});
    REQUIRE(marked.size() == 1);
    CHECK(marked[0].find("mark=0 ") == std::string::npos);
    const auto unmarked = conntrack_lines(lab.net.server, {"src=10.200.0.3", "dport=5001"});
    REQUIRE(unmarked.size() == 1);
    CHECK(unmarked[0].find("mark=0 ") != std::string::npos);
    REQUIRE(heavy->wait(std::chrono::milliseconds(kWaitMs)));
    const auto ends = lab.wait_for_destroys(1);
    lab.wait_for_polls(2);      // the DESTROY reaches the ledger
    REQUIRE(light->running());  // still open when the daemon stops
    // Paused (its connection idle, its counters still), read by conntrack, then the daemon stops:
    // the light connection's records must add up to these counters, bytes since the last poll too.
    // Still: the same counters twice, 200 ms apart (the server's answer to the last chunk is in).
    light->pause();
    std::vector<std::string> light_ct;
    CHECK(wait_until(
        [&] {
            auto was = light_ct;
            light_ct = conntrack_lines(lab.net.server, {"src=10.200.0.3", "dport=5001"});
            return !was.empty() && light_ct == was;
        },
        kWaitMs, 200));
    REQUIRE(light_ct.size() == 1);
    lab.stop(daemon);
    light->stop();

    REQUIRE(ends.size() == 1);
    REQUIRE(ends[0].src == "10.200.0.2");
    const auto records = nfdump_records(lab.dir + "/nfcapd");
    const auto h = records_of(records, "10.200.0.2", ends[0].sport);
    check_totals(h, ends[0]);
    REQUIRE(h.size() >= 2);
    // From the poll that marked it on, every record of the heavy connection carries CS1.
    auto first = std::find_if(h.begin(), h.end(), [](const NfRecord& r) { return r.tos == kCs1Tos; });
    REQUIRE(first != h.end());
    for (auto it = h.begin(); it != h.end(); ++it) {
        INFO("record ending " << it->end);
        CHECK(it->tos == (it < first ? 0 : kCs1Tos));
    }
    CHECK(h.back().reason == kReasonEndOfFlow);

    std::vector<NfRecord> l;
    for (const auto& r : records)
        if (r.src == "10.200.0.3") l.push_back(r);
    check_totals(l, parse_ct_line(light_ct[0]));
    REQUIRE_FALSE(l.empty());
    for (const auto& r : l) CHECK(r.tos == 0);
    CHECK(l.back().reason == kReasonForcedEnd);  // closed at SIGTERM, not by its end
    for (size_t i = 0; i + 1 < l.size(); ++i) CHECK(l[i].reason == kReasonActiveTimeout);
    const std::string log = daemon.log();
    CHECK(log.find("records could not be sent") == std::string::npos);
    check_no_sequence_failures(lab.dir + "/nfcapd");
}

TEST_CASE(
    "a reload adds and removes export targets: a kept target counts on without counting twice, a new one "
    "gets each open connection whole, a removed one ends them with forced end",
    "[kernel][export]") {
    Lab lab;
    auto second = lab.nfcapd("nfcapd2", 4740);
    REQUIRE(wait_until([&] { return lab.net.server.listens("udp", 4740); }));
    const std::string settings = "[settings]\npoll_interval = \"1s\"\n" + lab.status.setting() + "\n";
    TempPolicy policy(settings + export_table(4739, "2s"));
    flowshaper::testing::Daemon daemon(lab.net.server, policy.path());
    REQUIRE(daemon.wait_for_log("ready"));
    CHECK(daemon.wait_for_log("conntrack timestamps"));
    auto reload = [&](const std::string& text, const std::string& needle) {
        std::ofstream(policy.path()) << text;
        kill(daemon.pid(), SIGHUP);
        REQUIRE(daemon.wait_for_log(needle));
    };

    // 14 s of traffic; the reloads come after 3 polls each (~7 s in all on a quick machine, the
    // rest a margin for a slow one: the connection must outlive the second reload).
    auto conn = lab.client("10.200.0.1", "10.200.0.2", 14.0, 280000, "long");
    lab.wait_for_polls(3);  // the first target has counted it, an active timeout's record included
    reload(settings + export_table(4739, "2s") + export_table(4740, "2s"), "IPFIX to udp://127.0.0.1:4740");
    CHECK(daemon.log().find("export: IPFIX to udp://127.0.0.1:4739") ==
          daemon.log().rfind("export: IPFIX to udp://127.0.0.1:4739"));
    lab.wait_for_polls(3);  // both count it
    {
        INFO("the connection ended before the second reload: this machine is slower than the case allows");
        REQUIRE(conn->running());
    }
    reload(settings + export_table(4740, "2s"), "export udp://127.0.0.1:4739: removed");
    REQUIRE(conn->wait(std::chrono::milliseconds(kWaitMs)));
    const auto ends = lab.wait_for_destroys(1);
    lab.wait_for_polls(2);  // the DESTROY reaches the ledger and goes out
    lab.stop(daemon);
    lab.wait_collected(4740);
    second->stop();

    REQUIRE(ends.size() == 1);
    const CtEnd& e = ends[0];
    // The new target: the whole connection, from its start, ending in end of flow.
    const auto in_second = records_of(nfdump_records(lab.dir + "/nfcapd2"), e.src, e.sport);
    check_totals(in_second, e);
    REQUIRE_FALSE(in_second.empty());
    CHECK(in_second.back().reason == kReasonEndOfFlow);
    // The removed target: what it counted until the removal (never more), closed with forced end.
    const auto in_first = records_of(nfdump_records(lab.dir + "/nfcapd"), e.src, e.sport);
    REQUIRE(in_first.size() >= 2);
    CHECK(in_first.back().reason == kReasonForcedEnd);
    uint64_t first_in = 0, first_out = 0;
    for (const auto& r : in_first) first_in += r.in_bytes, first_out += r.out_bytes;
    CHECK(first_in > 0);
    CHECK(first_in < e.bytes[0]);
    CHECK(first_out < e.bytes[1]);
    check_no_sequence_failures(lab.dir + "/nfcapd");
    check_no_sequence_failures(lab.dir + "/nfcapd2");
}
