// bench_detect: milliseconds per Detector::observe() of 100,000 conntrack samples, and the heap it
// keeps per tracked flow (mallinfo2). Scenarios: 1,000 clients x 100 connections; 100,000 clients
// with one connection each; 100,000 samples of which 10% match a rule. In the middle poll 1% of the
// connections pass flow_bytes (the poll that decides: its time is in "max").
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "flowshaper/detect/detector.hpp"

using namespace flowshaper;
using namespace flowshaper::detect;

namespace {

net::Address v4(uint32_t host_order) {
    return net::Address::from_v4(host_order);
}

std::vector<policy::Detect> rules() {
    policy::Detect imap;
    imap.name = "imap-sync-loop";
    imap.protocol = policy::Protocol::Tcp;
    imap.local_ports = {143, 993};
    imap.flow_bytes = 500'000'000;
    imap.limit.rate_bits_per_s = 2'000'000;
    policy::Detect web;
    web.name = "web-window";
    web.protocol = policy::Protocol::Tcp;
    web.local_ports = {443};
    web.client_bytes = 10'000'000'000;
    web.window_ms = 600'000;
    web.client_rate_bits_per_s = 500'000'000;
    web.for_ms = 30'000;
    web.limit.rate_bits_per_s = 5'000'000;
    return {imap, web};
}

std::vector<FlowSample> make_samples(uint32_t flows, uint32_t clients, uint32_t matching_per_10) {
    std::vector<FlowSample> out(flows);
    for (uint32_t i = 0; i < flows; ++i) {
        FlowSample& f = out[i];
        f.id = 0x10000000u + i * 7919u;
        f.l4proto = 6;
        f.orig_src = v4(0x0a000000u + i % clients);  // 10.x.y.z
        f.orig_dst = v4(0xc0000201u);                // 192.0.2.1, this host
        f.orig_sport = static_cast<uint16_t>(1024 + i / clients);
        uint32_t kind = i % 10;
        f.orig_dport = kind >= matching_per_10 ? 8080 : (kind % 2 ? 443 : 993);
        f.orig_bytes = 100 + i % 1000;
        f.reply_bytes = 1000 + i;
    }
    return out;
}

size_t heap_in_use() {
    return mallinfo2().uordblks;
}

void run(const char* name, uint32_t flows, uint32_t clients, uint32_t matching_per_10, int polls) {
    auto samples = make_samples(flows, clients, matching_per_10);
    size_t heap_before = heap_in_use();
    Detector det(rules(), {v4(0xc0000201u)});
    det.observe(0, samples);  // the baseline
    std::vector<double> ms;
    size_t decisions = 0;
    for (int p = 1; p <= polls; ++p) {
        for (auto& f : samples) f.reply_bytes += 12'500;  // 100 kbit/s per connection
        if (p == polls / 2)  // one poll in which 1% of the connections pass flow_bytes: Mark decisions
            for (size_t i = 0; i < samples.size(); i += 100) samples[i].reply_bytes += 600'000'000;
        auto t0 = std::chrono::steady_clock::now();
        decisions += det.observe(static_cast<uint64_t>(p) * 1000, samples).size();
        auto t1 = std::chrono::steady_clock::now();
        ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    size_t heap = heap_in_use() - heap_before;
    std::sort(ms.begin(), ms.end());
    double median = ms[ms.size() / 2];
    std::printf(
        "%-38s samples=%u tracked_flows=%zu clients=%zu  observe: median %.2f ms (min %.2f, max %.2f), "
        "%.2f M samples/s; heap %.1f bytes/tracked flow; decisions=%zu\n",
        name, flows, det.tracked_flows(), det.tracked_clients(), median, ms.front(), ms.back(),
        flows / median / 1000.0, static_cast<double>(heap) / std::max<size_t>(1, det.tracked_flows()),
        decisions);
}

}  // namespace

int main() {
    std::printf("FlowRecord: %zu bytes\n", Detector::flow_record_bytes());
    run("1,000 clients x 100 connections", 100'000, 1'000, 10, 21);
    run("100,000 clients x 1 connection", 100'000, 100'000, 10, 21);
    run("100,000 samples, 10% match a rule", 100'000, 1'000, 1, 21);
    return 0;
}
