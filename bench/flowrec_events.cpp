// Records lost at a rate of new connections: 10,000 short-lived conntrack entries a second for
// 10 s (synthetic, through ctnetlink, each expiring after 1 s) in a throwaway namespace. The
// DESTROY events are drained every 100 ms (as the daemon's loop does when the event fd is
// readable) into the ledger, a whole-table poll runs every second, and every record goes to an
// exporter sending UDP to a local socket. A connection is lost when no record names it.
// Run as root: [EVENT_RCVBUF_MB=N] build/bench/bench_flowrec_events [connections_per_s] [seconds]
// (N: the event socket's receive buffer in MiB; default the port's 4 MiB).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

#include "conntrack_inject.hpp"
#include "flowshaper/flowrec/exporter.hpp"
#include "flowshaper/flowrec/ledger.hpp"
#include "flowshaper/kernel/conntrack_port.hpp"

using namespace flowshaper;
using Clock = std::chrono::steady_clock;

namespace {

uint64_t wall_ms() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
}

uint64_t mono_ms() {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count());
}

// This process inside a namespace of its own ("fst-bench-ev-PID"), removed again on every exit path.
class OwnNetns {
public:
    OwnNetns() : name_("fst-bench-ev-" + std::to_string(getpid())) {
        if (std::system(("ip netns add " + name_ + " && ip -n " + name_ + " link set lo up").c_str()) != 0)
            throw std::runtime_error("cannot create namespace " + name_);
        int fd = open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) throw std::runtime_error("cannot enter " + name_);
        close(fd);
    }
    ~OwnNetns() { (void)std::system(("ip netns del " + name_).c_str()); }
    OwnNetns(const OwnNetns&) = delete;
    OwnNetns& operator=(const OwnNetns&) = delete;

private:
    std::string name_;
};

struct Counts {
    std::set<uint32_t> named;  // last 32 bits of the source of every record
    uint64_t records = 0, lost_event_reports = 0, vanished = 0;
};

int run(uint32_t per_s, int seconds) {
    OwnNetns ns;
    if (std::system("sysctl -qw net.netfilter.nf_conntrack_acct=1") != 0) return 1;
    int collector = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(4739);
    int rcv = 8 << 20;
    setsockopt(collector, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv);
    if (bind(collector, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return 1;
    kernel::NfctOptions options;
    if (const char* mb = std::getenv("EVENT_RCVBUF_MB")) options.event_rcvbuf_bytes = std::atoi(mb) << 20;
    auto port = kernel::make_nfct_conntrack_port(options);
    policy::Export target;
    target.target = "udp://127.0.0.1:4739";
    target.host = "127.0.0.1";
    auto exporter = flowrec::Exporter::open(target, {}, mono_ms());
    if (!port || !exporter) return 1;
    flowrec::Ledger ledger(flowrec::LedgerOptions{60000, 1000, 1000000});
    Counts c;
    std::vector<flowrec::FlowRecord> out;
    auto take = [&] {
        for (const auto& r : out) {
            uint32_t low;
            std::memcpy(&low, r.src.bytes.data() + (r.family == net::Family::V4 ? 0 : 12), 4);
            c.named.insert(ntohl(low));
        }
        c.records += out.size();
        (*exporter)->submit(out, mono_ms());
        out.clear();
    };
    auto drain = [&](uint64_t now) {
        auto lost = (*port)->drain_events([&](const kernel::FlowEvent& ev) {
            if (ev.type == kernel::FlowEventType::Destroy) ledger.destroyed(ev.flow, now, 0, out);
        });
        if (lost && *lost) ++c.lost_event_reports;
    };
    const uint32_t batch = per_s / 10;
    const uint32_t total = per_s * static_cast<uint32_t>(seconds);
    const uint32_t base = 0x0a000001;  // 10.0.0.1
    auto start = Clock::now();
    int quiet_polls = 0;
    for (int tick = 0;; ++tick) {
        const uint32_t inserted = std::min<uint32_t>(total, batch * static_cast<uint32_t>(tick));
        if (inserted < total) {
            Status s = kernel::insert_synthetic_flows(
                kernel::SyntheticFlows{.count = batch,
                                       .first_src = net::Address::from_v4(base + inserted),
                                       .dst = net::Address::from_v4(0xc0000201),
                                       .dport = 993,
                                       .timeout_s = 1});
            if (!s) std::fprintf(stderr, "insert: %s\n", s.error().text().c_str());
        }
        const uint64_t now = wall_ms();
        drain(now);
        if (tick % 10 == 0) {
            ledger.begin_poll(now);
            uint64_t live = 0;
            (void)(*port)->dump({}, [&](const kernel::FlowSample& s) {
                ++live;
                ledger.observe(s, 0, out);
            });
            drain(now);
            ledger.end_poll(true, out);
            // Done when nothing is left and 5 s of late DESTROY events were waited for.
            if (inserted >= total && live == 0 && ledger.size() == 0 && ++quiet_polls > 5) break;
            if (tick > (seconds + 40) * 10) break;
        }
        take();
        std::this_thread::sleep_until(start + std::chrono::milliseconds(100 * (tick + 1)));
    }
    for (int i = 0; i < 20 && !(*exporter)->flush(mono_ms()); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const auto& st = (*exporter)->stats();
    uint64_t missing = 0;
    for (uint32_t i = 0; i < total; ++i) missing += c.named.count(base + i) == 0;
    std::printf(
        "%u new connections/s for %d s: %u connections, %llu records, %llu connections without a record "
        "(%.3f%%), event loss reported %llu times, closed as lack of resources %llu\n",
        per_s, seconds, total, static_cast<unsigned long long>(c.records),
        static_cast<unsigned long long>(missing), 100.0 * static_cast<double>(missing) / total,
        static_cast<unsigned long long>(c.lost_event_reports),
        static_cast<unsigned long long>(ledger.stats().vanished));
    std::printf("exporter: %llu records sent in %llu messages, %llu dropped\n",
                static_cast<unsigned long long>(st.records_sent),
                static_cast<unsigned long long>(st.messages_sent),
                static_cast<unsigned long long>(st.records_dropped));
    close(collector);
    return missing == 0 ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
    const uint32_t per_s = argc > 1 ? static_cast<uint32_t>(std::atoi(argv[1])) : 10000;
    const int seconds = argc > 2 ? std::atoi(argv[2]) : 10;
    return run(per_s, seconds);
}
