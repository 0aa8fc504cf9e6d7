// Flow-record costs on one core, no kernel: (1) the IPFIX encoder's throughput into 1472-byte
// messages (a 1500-byte UDP path) and 65535-byte ones (file, TCP); (2) the ledger's cost per
// dumped connection in a poll of 100,000 connections (the work export adds to a poll cycle) and
// its memory per tracked connection. Prints each figure; medians of 5.
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "flowshaper/flowrec/ipfix.hpp"
#include "flowshaper/flowrec/ledger.hpp"

using namespace flowshaper;
using namespace flowshaper::flowrec;
using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

kernel::FlowSample sample(uint32_t i) {
    kernel::FlowSample s;
    s.id = i + 1;
    s.family = i % 2 ? net::Family::V6 : net::Family::V4;
    s.l4proto = 6;
    s.orig_src.family = s.orig_dst.family = s.reply_src.family = s.reply_dst.family = s.family;
    s.orig_src.bytes[0] = 10;
    s.orig_src.bytes[2] = static_cast<uint8_t>(i >> 8);
    s.orig_src.bytes[3] = static_cast<uint8_t>(i);
    s.orig_sport = static_cast<uint16_t>(1024 + i % 60000);
    s.orig_dport = 443;
    return s;
}

double encode_rate(size_t budget) {
    std::vector<FlowRecord> records(1000000);
    for (size_t i = 0; i < records.size(); ++i)
        records[i] =
            make_record(sample(static_cast<uint32_t>(i)), {i, i, i, i}, 1, 2, EndReason::ActiveTimeout, 0);
    std::vector<double> rates;
    std::vector<uint8_t> out;
    for (int round = 0; round < 5; ++round) {
        ipfix::MessageEncoder enc(1, budget);
        size_t bytes = 0;
        auto t0 = Clock::now();
        for (size_t done = 0; done < records.size();) {
            done += enc.encode(std::span(records).subspan(done), 0, done == 0, out);
            bytes += out.size();
        }
        double s = std::chrono::duration<double>(Clock::now() - t0).count();
        rates.push_back(static_cast<double>(records.size()) / s);
        if (round == 0)
            std::printf("  %zu-byte messages: %.1f MB of IPFIX\n", budget, static_cast<double>(bytes) / 1e6);
    }
    return median(rates);
}

void ledger_poll() {
    constexpr uint32_t kConns = 100000;
    std::vector<kernel::FlowSample> dump(kConns);
    for (uint32_t i = 0; i < kConns; ++i) dump[i] = sample(i);
    const size_t heap_before = mallinfo2().uordblks;
    Ledger ledger(LedgerOptions{60000, 1000, 1000000});
    std::vector<FlowRecord> out;
    std::vector<double> ms;
    uint64_t now = 1700000000000;
    for (int poll = 0; poll < 70; ++poll) {  // 70 polls: one crosses the 60 s active timeout
        for (auto& s : dump)
            s.orig_bytes += 1500, s.reply_bytes += 3000, ++s.orig_packets, s.reply_packets += 2;
        auto t0 = Clock::now();
        ledger.begin_poll(now += 1000);
        for (const auto& s : dump) ledger.observe(s, 0, out);
        ledger.end_poll(true, out);
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        if (poll == 0) {
            const size_t heap = mallinfo2().uordblks - heap_before;
            std::printf("ledger memory: %.0f bytes per tracked connection (sizeof Entry %zu)\n",
                        static_cast<double>(heap) / kConns, sizeof(Ledger::Entry));
        }
        out.clear();
    }
    std::sort(ms.begin(), ms.end());
    std::printf(
        "ledger poll of %u connections (observe + end_poll): median %.1f ms, max %.1f ms (%.0f ns each)\n",
        kConns, ms[ms.size() / 2], ms.back(), ms[ms.size() / 2] * 1e6 / kConns);
}

}  // namespace

int main() {
    std::printf("IPFIX encoder, 1,000,000 records (half IPv4, half IPv6), one core:\n");
    const double small = encode_rate(1472);
    const double large = encode_rate(65535);
    std::printf("encoder: %.2f M records/s (1472-byte messages), %.2f M records/s (65535-byte messages)\n",
                small / 1e6, large / 1e6);
    ledger_poll();
    return 0;
}
