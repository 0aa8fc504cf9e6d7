// libFuzzer target for flow records: the input drives (1) the IPFIX encoder with arbitrary records
// and budgets, every message checked structurally (tests/flowrec/message_check.hpp), and (2) the
// ledger with arbitrary dumps, DESTROY events and polls: it never tracks more than its bound, and
// for connections whose counters only grow, the records add up to their final totals (exactly,
// when the bound was never reached; never more).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

#include "flowshaper/flowrec/ledger.hpp"
#include "message_check.hpp"

using namespace flowshaper;
using namespace flowshaper::flowrec;

namespace {

struct Input {
    const uint8_t* p;
    size_t n;
    uint64_t take(size_t bytes) {
        uint64_t v = 0;
        for (size_t i = 0; i < bytes; ++i) v = v << 8 | (i < n ? p[i] : 0);
        size_t used = bytes < n ? bytes : n;
        p += used;
        n -= used;
        return v;
    }
};

void fuzz_encoder(Input& in) {
    const size_t budget = static_cast<size_t>(in.take(2));
    std::vector<FlowRecord> records(in.take(1) % 64);
    for (FlowRecord& r : records) {
        r.family = in.take(1) & 1 ? net::Family::V6 : net::Family::V4;
        for (net::Address* a : {&r.src, &r.dst, &r.post_src, &r.post_dst}) {
            a->family = r.family;
            a->bytes[0] = static_cast<uint8_t>(in.take(1));
        }
        r.octets = in.take(8);
        r.rev_packets = in.take(8);
        r.reason = static_cast<EndReason>(in.take(1));
    }
    if (!check::encode_and_check(records, budget, static_cast<uint32_t>(in.take(4))).empty()) std::abort();
}

// Connections 1..8 with counters that only grow, a ledger bound of 4.
void fuzz_ledger(Input& in) {
    Ledger ledger(LedgerOptions{2000, 1000, 4});
    std::map<uint32_t, kernel::FlowSample> live;
    std::map<uint32_t, uint64_t> exported, final_total;
    std::vector<FlowRecord> out;
    uint64_t now = 1000000;
    auto sum = [&](const FlowRecord& r) { exported[r.sport] += r.octets; };
    while (in.n > 0) {
        const uint8_t op = static_cast<uint8_t>(in.take(1));
        const uint32_t id = 1 + op % 8;
        kernel::FlowSample& s = live[id];
        s.id = id;
        s.orig_sport = static_cast<uint16_t>(id);
        s.l4proto = 6;
        if ((op >> 3) % 4 == 0) {  // traffic, then a poll that sees it (complete or not)
            s.orig_bytes += in.take(1);
            ledger.begin_poll(now += 1000);
            for (const auto& [k, v] : live) ledger.observe(v, 0, out);
            ledger.end_poll(op & 0x80, out);
        } else if ((op >> 3) % 4 == 1) {  // it ends
            s.orig_bytes += in.take(1);
            ledger.begin_poll(now += 10);
            ledger.destroyed(s, now, 0, out);
            final_total[id] += s.orig_bytes;
            live.erase(id);
            ledger.end_poll(false, out);
        }
        if (ledger.size() > 4) std::abort();
    }
    ledger.flush(now, out);
    for (const auto& [k, v] : live) final_total[k] += v.orig_bytes;
    for (const FlowRecord& r : out) sum(r);
    // Never counted twice; exactly once unless the bound left a connection untracked at shutdown.
    const bool bounded = ledger.stats().untracked > 0;
    for (const auto& [k, total] : final_total) {
        const uint64_t sent = exported[static_cast<uint16_t>(k)];
        if (sent > total || (!bounded && sent != total)) std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Input in{data, size};
    if (in.take(1) & 1)
        fuzz_encoder(in);
    else
        fuzz_ledger(in);
    return 0;
}
