// Fills the current network namespace's conntrack table with synthetic established TCP entries
// through ctnetlink (for bench/latency_bench.sh; run it under `ip netns exec`).
//   bench_ct_fill COUNT [FIRST_SRC]   (default FIRST_SRC 10.50.0.1, destination 10.200.0.1:993)
#include <cstdio>
#include <cstdlib>
#include <string>

#include "conntrack_inject.hpp"

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s COUNT [FIRST_SRC]\n", argv[0]);
        return 2;
    }
    flowshaper::kernel::SyntheticFlows spec;
    spec.count = static_cast<uint32_t>(std::strtoul(argv[1], nullptr, 10));
    auto src = flowshaper::net::Address::parse(argc > 2 ? argv[2] : "10.50.0.1");
    auto dst = flowshaper::net::Address::parse("10.200.0.1");
    if (!src || !dst) {
        std::fprintf(stderr, "%s: bad address\n", argv[0]);
        return 2;
    }
    spec.first_src = *src;
    spec.dst = *dst;
    if (auto st = flowshaper::kernel::insert_synthetic_flows(spec); !st) {
        std::fprintf(stderr, "%s: %s\n", argv[0], st.error().text().c_str());
        return 1;
    }
    std::printf("%u conntrack entries inserted\n", spec.count);
    return 0;
}
