// Flow records from REAL conntrack to REAL collectors: connections between two namespaces (one
// SNATed, one IPv6, one heavy), read with the conntrack port, kept by the ledger and exported over
// UDP to nfcapd (nfdump 1.7) on loopback and into an RFC 5655 file. Checked with independent tools:
// `conntrack -E` for the final counters, `nfdump` for what the collector decoded, `tshark` for the
// packets on the wire, `ipfixDump` (libfixbuf) for the file.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "background.hpp"
#include "conntrack_text.hpp"
#include "flowshaper/flowrec/exporter.hpp"
#include "flowshaper/flowrec/ledger.hpp"
#include "flowshaper/kernel/conntrack_port.hpp"
#include "netns.hpp"
#include "wait.hpp"

using namespace flowshaper;
using namespace flowshaper::flowrec;
using flowshaper::testing::Background;
using flowshaper::testing::CtEnd;
using flowshaper::testing::destroy_events;
using flowshaper::testing::EnterNetns;
using flowshaper::testing::Netns;
using flowshaper::testing::sh;
using flowshaper::testing::sh_ok;
using flowshaper::testing::VethPair;

namespace {

const std::string kTraffic = FLOWREC_SCRIPTS_DIR "/traffic.py";
constexpr int kCollectorPort = 4739;

uint64_t wall_ms() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
}

uint64_t mono_ms() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
}

// "yyyy/MM/dd.hh:mm:ss-yyyy/MM/dd.hh:mm:ss" (local time, as nfdump -t reads it) around [from, to].
std::string nfdump_window(uint64_t from_ms, uint64_t to_ms) {
    auto fmt = [](uint64_t ms) {
        time_t t = static_cast<time_t>(ms / 1000);
        tm local{};
        localtime_r(&t, &local);
        char buf[32];
        strftime(buf, sizeof buf, "%Y/%m/%d.%H:%M:%S", &local);
        return std::string(buf);
    };
    return fmt(from_ms - 1000) + "-" + fmt(to_ms + 1000);
}

// One record as nfdump printed it.
struct NfRecord {
    std::string src, dst, xsrc;
    int sport = 0, dport = 0, xsport = 0;
    uint64_t in_bytes = 0, out_bytes = 0, in_packets = 0, out_packets = 0;
    std::string end_reason;
};

std::vector<NfRecord> nfdump_records(const std::string& args) {
    const std::string fmt = "fmt:%sa;%sp;%da;%dp;%xsa;%xsp;%ibyt;%obyt;%ipkt;%opkt";
    std::istringstream lines(sh_ok("nfdump -q -N -o '" + fmt + "' " + args));
    std::vector<NfRecord> out;
    for (std::string line; std::getline(lines, line);) {
        std::vector<std::string> f;
        std::istringstream fields(line);
        for (std::string x; std::getline(fields, x, ';');) f.push_back(x.substr(x.find_first_not_of(' ')));
        if (f.size() < 10) continue;
        NfRecord r;
        r.src = f[0];
        r.sport = std::stoi(f[1]);
        r.dst = f[2];
        r.dport = std::stoi(f[3]);
        r.xsrc = f[4];
        r.xsport = std::stoi(f[5]);
        r.in_bytes = std::stoull(f[6]);
        r.out_bytes = std::stoull(f[7]);
        r.in_packets = std::stoull(f[8]);
        r.out_packets = std::stoull(f[9]);
        out.push_back(r);
    }
    return out;
}

// Two namespaces: "client" (10.200.0.2 SNATed to 10.200.0.3, 10.200.0.4 not, fd00:200::2) where
// conntrack, the exporter and the collectors run, and "server" answering on port 5001.
struct Lab {
    VethPair pair{"fr"};
    std::string dir;
    std::unique_ptr<Background> server;

    Lab() {
        testing::require_netns_privileges();
        dir = "/tmp/fst-flowrec-" + std::to_string(getpid());
        sh_ok("rm -rf " + dir + " && mkdir -p " + dir);
        pair.add_client_address("10.200.0.3/24");
        pair.add_client_address("10.200.0.4/24");
        const Netns& c = pair.client;
        c.exec_ok(
            "iptables-legacy -t nat -A POSTROUTING -s 10.200.0.2 -o veth-c -p tcp -j SNAT --to-source "
            "10.200.0.3:20000-20099");
        c.exec_ok("iptables-legacy -t raw -A OUTPUT -o lo -j NOTRACK");
        c.exec_ok("ip6tables-legacy -t raw -A OUTPUT -o lo -j NOTRACK");
        c.exec_ok("ip6tables-legacy -t mangle -A POSTROUTING -j CONNMARK --restore-mark");
        c.exec_ok("sysctl -qw net.netfilter.nf_conntrack_acct=1 net.netfilter.nf_conntrack_timestamp=1");
        for (const char* s : {"time_wait", "fin_wait", "close_wait", "last_ack", "close"})
            c.exec_ok(std::string("sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_") + s + "=1");
        server = std::make_unique<Background>(pair.server, "python3 " + kTraffic + " server 5001",
                                              dir + "/server.log");
    }
    ~Lab() {
        if (!std::getenv("FLOWREC_KEEP")) sh("rm -rf " + dir);  // FLOWREC_KEEP=1: keep captures and logs
    }

    std::unique_ptr<Background> client(const std::string& host, const std::string& src, double seconds,
                                       uint64_t bytes, const std::string& name) {
        return std::make_unique<Background>(pair.client,
                                            "python3 " + kTraffic + " client " + host + " 5001 " + src + " " +
                                                std::to_string(seconds) + " " + std::to_string(bytes),
                                            dir + "/" + name + ".log");
    }
    // Whether nfcapd has read every datagram sent to it (ss's Recv-Q): it stops without reading
    // the rest.
    bool collected() const {
        return testing::wait_until([&] { return pair.client.receive_queue("udp", kCollectorPort) == 0; });
    }
    std::unique_ptr<Background> nfcapd(const std::string& sub) {
        sh_ok("mkdir -p " + dir + "/" + sub);
        return std::make_unique<Background>(
            pair.client,
            "nfcapd -w " + dir + "/" + sub + " -p " + std::to_string(kCollectorPort) + " -b 127.0.0.1 -t 60",
            dir + "/" + sub + ".log");
    }
};

// The daemon's part, as the lead will wire it: one poll a second (dump, DESTROY events, ledger),
// the records handed to every exporter.
struct Pipeline {
    std::unique_ptr<kernel::ConntrackPort> port;
    Ledger ledger;
    std::vector<std::unique_ptr<Exporter>> exporters;
    std::vector<FlowRecord> records;
    uint64_t destroys = 0;
    uint64_t last_poll_ms = 0, longest_poll_gap_ms = 0;  // wall clock: how late a busy machine polled

    Pipeline(const Lab& lab, const std::vector<policy::Export>& targets, uint64_t active_timeout_ms)
        : ledger(LedgerOptions{active_timeout_ms, 1000, 100000}) {
        EnterNetns in(lab.pair.client);
        auto p = kernel::make_nfct_conntrack_port();
        REQUIRE(p.ok());
        port = std::move(*p);
        for (const auto& t : targets) {
            auto e = Exporter::open(t, {}, mono_ms());
            INFO(t.target);
            REQUIRE(e.ok());
            exporters.push_back(std::move(*e));
        }
    }

    void poll() {
        const uint64_t now = wall_ms();
        if (last_poll_ms) longest_poll_gap_ms = std::max(longest_poll_gap_ms, now - last_poll_ms);
        last_poll_ms = now;
        ledger.begin_poll(now);
        REQUIRE(port->dump({}, [&](const kernel::FlowSample& s) { ledger.observe(s, 0, records); }).ok());
        auto lost = port->drain_events([&](const kernel::FlowEvent& ev) {
            if (ev.type != kernel::FlowEventType::Destroy) return;
            ++destroys;
            ledger.destroyed(ev.flow, now, 0, records);
        });
        REQUIRE(lost.ok());
        CHECK_FALSE(*lost);
        ledger.end_poll(true, records);
        send();
    }
    void send() {
        for (auto& e : exporters) {
            e->submit(records, mono_ms());
            if (auto d = e->next_deadline_ms(); d && *d <= mono_ms()) e->on_timer(mono_ms());
        }
        records.clear();
    }
    // Polls once a second for `seconds` seconds: the daemon's cadence, a duration (the grid is kept:
    // a late poll does not shift the next).
    void run(int seconds) {
        auto next = std::chrono::steady_clock::now();
        for (int i = 0; i < seconds; ++i) {
            poll();
            next += std::chrono::seconds(1);
            std::this_thread::sleep_until(next);
        }
    }
    void finish() {
        ledger.flush(wall_ms(), records);
        send();
        for (auto& e : exporters) CHECK(e->flush(mono_ms()));
    }
};

policy::Export udp_target(uint64_t refresh_ms) {
    policy::Export t;
    t.target = "udp://127.0.0.1:" + std::to_string(kCollectorPort);
    t.host = "127.0.0.1";
    t.port = kCollectorPort;
    t.template_refresh_ms = refresh_ms;
    t.observation_domain = 11;
    return t;
}

}  // namespace

TEST_CASE("nfcapd decodes every connection with conntrack's final counters in both directions",
          "[kernel][collector]") {
    Lab lab;
    Background events(lab.pair.client, "stdbuf -oL conntrack -E -e DESTROY -o extended",
                      lab.dir + "/events.txt");
    Background capture(lab.pair.client, "tcpdump -U -i lo -w " + lab.dir + "/export.pcap udp port 4739",
                       lab.dir + "/tcpdump.log");
    auto collector = lab.nfcapd("nfcapd");
    REQUIRE(testing::conntrack_events_heard(lab.pair.client, lab.dir + "/events.txt"));
    REQUIRE(testing::wait_until([&] {
        return lab.pair.client.listens("udp", kCollectorPort) && lab.pair.server.listens("tcp", 5001) &&
               sh("grep -q 'listening on' " + lab.dir + "/tcpdump.log") == 0;
    }));

    policy::Export file;
    file.target = "file:" + lab.dir + "/flows.ipfix";
    file.transport = policy::ExportTransport::File;
    file.path = lab.dir + "/flows.ipfix";
    file.observation_domain = 11;
    Pipeline pipe(lab, {udp_target(600000), file}, 2000);

    const uint64_t t0 = wall_ms();
    auto nat = lab.client("10.200.0.1", "10.200.0.2", 7.0, 140000, "nat");       // SNATed, 7 s
    auto six = lab.client("fd00:200::1", "fd00:200::2", 1.0, 100000, "six");     // IPv6
    auto heavy = lab.client("10.200.0.1", "10.200.0.4", 2.0, 4000000, "heavy");  // the top talker
    pipe.run(13);
    pipe.finish();
    const uint64_t t1 = wall_ms();
    pipe.exporters.clear();
    CHECK(lab.collected());
    collector->stop();
    capture.stop();
    // Every connection's DESTROY printed (the kernel's garbage collection may take a moment after
    // the last close) before conntrack -E stops.
    CHECK(testing::wait_until([&] { return destroy_events(lab.dir + "/events.txt", 5001).size() >= 3; }));
    events.stop();

    const auto ends = destroy_events(lab.dir + "/events.txt", 5001);
    REQUIRE(ends.size() == 3);
    CHECK(pipe.destroys >= 3);
    const auto records = nfdump_records("-R " + lab.dir + "/nfcapd");
    for (const CtEnd& e : ends) {
        INFO(e.src << ":" << e.sport << " -> " << e.dst << ":" << e.dport);
        uint64_t in_b = 0, out_b = 0, in_p = 0, out_p = 0;
        int n = 0;
        for (const NfRecord& r : records) {
            if (r.src != e.src || r.sport != e.sport || r.dport != e.dport) continue;
            in_b += r.in_bytes, out_b += r.out_bytes, in_p += r.in_packets, out_p += r.out_packets, ++n;
        }
        CHECK(n >= 1);
        CHECK(in_b == e.bytes[0]);
        CHECK(out_b == e.bytes[1]);
        CHECK(in_p == e.packets[0]);
        CHECK(out_p == e.packets[1]);
        if (e.src == "10.200.0.2") {
            // About 7 s with traffic all along, active_timeout 2 s: ceil(D / 2) records for a lifetime
            // D, less one when D mod 2 falls below the phase of the poll grid (under 1 s). The kernel
            // reports D in whole seconds, so D is in [delta, delta + 1).
            REQUIRE(e.seconds >= 6);
            CHECK(n >= (e.seconds - 1 + 1) / 2);
            CHECK(n <= (e.seconds + 1 + 1) / 2);
            CHECK(e.reply_dst == "10.200.0.3");
            // "Which inside client used 10.200.0.3:P at time T?"
            const auto by_nat =
                nfdump_records("-R " + lab.dir + "/nfcapd -t " + nfdump_window(t0, t1) +
                               " 'src xip 10.200.0.3 and src xport " + std::to_string(e.reply_dport) + "'");
            CHECK(by_nat.size() == static_cast<size_t>(n));
            for (const auto& r : by_nat) CHECK(r.src == "10.200.0.2");
        }
    }
    bool six_seen = false;
    for (const auto& r : records) six_seen = six_seen || r.src == "fd00:200::2";
    CHECK(six_seen);

    // The top talker by nfdump's own statistics.
    const std::string top = sh_ok("nfdump -q -N -R " + lab.dir + "/nfcapd -s srcip/bytes -n 1");
    CHECK(top.find("10.200.0.4") != std::string::npos);
    // No sequence failures at the collector.
    // (nfcapd starts a new file every minute: each file has its own exporter statistics.)
    const std::string exporters =
        sh_ok("for f in " + lab.dir + "/nfcapd/nfcapd.*; do nfdump -E $f; done | grep 'Sequence failures'");
    INFO(exporters);
    CHECK(exporters.find("Sequence failures: 0,") != std::string::npos);
    CHECK(std::regex_search(exporters, std::regex("Sequence failures: [1-9]")) == false);

    // tshark decodes every export datagram as IPFIX, none malformed.
    const std::string tshark = "tshark -n -r " + lab.dir + "/export.pcap";
    const std::string all = sh_ok(tshark + " 2>/dev/null | wc -l");
    const std::string ipfix = sh_ok(tshark + " -Y cflow 2>/dev/null | wc -l");
    const std::string bad =
        sh_ok(tshark + " -Y '_ws.malformed || _ws.expert.severity >= warning' 2>/dev/null | wc -l");
    CHECK(std::stoi(all) > 3);
    CHECK(ipfix == all);
    CHECK(std::stoi(bad) == 0);

    // ipfixDump reads the file without a warning.
    std::string dump;
    CHECK(sh("ipfixDump --in " + lab.dir + "/flows.ipfix > " + lab.dir + "/dump.txt 2> " + lab.dir +
                 "/dump.err",
             nullptr) == 0);
    CHECK(sh_ok("cat " + lab.dir + "/dump.err") == "");
    CHECK(sh_ok("grep -ci warn " + lab.dir + "/dump.txt; true").substr(0, 1) == "0");
    CHECK(sh_ok("grep -c 'tid:.*256' " + lab.dir + "/dump.txt; true") != "0");
}

TEST_CASE("after nfcapd restarts, records decode again within one template refresh", "[kernel][collector]") {
    Lab lab;
    auto first = lab.nfcapd("before");
    REQUIRE(testing::wait_until([&] {
        return lab.pair.client.listens("udp", kCollectorPort) && lab.pair.server.listens("tcp", 5001);
    }));
    Pipeline pipe(lab, {udp_target(3000)}, 1000);
    auto conn = lab.client("10.200.0.1", "10.200.0.4", 10.0, 200000, "long");
    pipe.run(3);
    first->stop();
    auto second = lab.nfcapd("after");  // knows no templates
    REQUIRE(testing::wait_until([&] { return lab.pair.client.listens("udp", kCollectorPort); }));
    const uint64_t restarted = wall_ms();
    pipe.run(9);
    pipe.finish();
    pipe.exporters.clear();
    CHECK(lab.collected());
    second->stop();
    // The collector learns the templates at the next refresh: the first record it decodes ends at
    // most one refresh (3 s) and one poll after the restart, and from then on none is missing.
    std::istringstream ends(sh_ok("nfdump -q -N -R " + lab.dir + "/after -o 'fmt:%te' 'src ip 10.200.0.4'"));
    std::vector<uint64_t> end_ms;
    for (std::string line; std::getline(ends, line);) {
        tm local{};
        const char* rest = strptime(line.c_str() + line.find_first_not_of(' '), "%Y-%m-%d %H:%M:%S", &local);
        REQUIRE(rest != nullptr);
        local.tm_isdst = -1;
        end_ms.push_back(static_cast<uint64_t>(mktime(&local)) * 1000 + std::stoul(std::string(rest + 1)));
    }
    // The bounds are in polls: a period is the longest gap between two polls as this run had
    // them (1 s on a quick machine, more where the test itself was late), and a missing record
    // would leave a gap of two.
    const uint64_t period = std::max<uint64_t>(1000, pipe.longest_poll_gap_ms);
    INFO("restart at " << restarted << ", polls at most " << pipe.longest_poll_gap_ms << " ms apart");
    REQUIRE(end_ms.size() >= 4);
    std::sort(end_ms.begin(), end_ms.end());
    CHECK(end_ms.front() <= restarted + 3000 + period + 200);
    for (size_t i = 1; i < end_ms.size(); ++i)
        CHECK(end_ms[i] - end_ms[i - 1] <= period + 600);  // one a poll
    const std::string log = sh_ok("cat " + lab.dir + "/after.log");
    CHECK(log.find("Sequence Errors: 0") != std::string::npos);
}
