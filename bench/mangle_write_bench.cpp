// Time to write flowshaper's mangle rules for 10 [[detect]] rules (both families), libiptc
// against nftables, in a private network namespace (unshare: nothing of the host is touched).
// Each round removes everything and writes it again; medians of 21 rounds, alternating.
// Run as root: sudo build/bench/bench_mangle_write
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "flowshaper/kernel/mangle_backend.hpp"

using namespace flowshaper;

namespace {

kernel::MangleSpec ten_rules() {
    kernel::MangleSpec spec;
    spec.mark_mask = 0x00ff0000;
    for (uint32_t i = 1; i <= 10; ++i) {
        spec.dscp_rules.push_back({i << 16, 0x000f0000, 8, "rule-" + std::to_string(i)});
    }
    spec.candidate = kernel::MangleSpec::Candidate{500'000'000, 0x01000000};
    return spec;
}

// One full write (both families) after removing everything; microseconds.
double write_once(kernel::ManglePort& port, const kernel::MangleSpec& spec) {
    for (auto f : {net::Family::V4, net::Family::V6})
        if (!port.remove_all(f)) return -1;
    auto t0 = std::chrono::steady_clock::now();
    for (auto f : {net::Family::V4, net::Family::V6})
        if (auto st = port.ensure(f, spec); !st) {
            std::fprintf(stderr, "%s\n", st.error().text().c_str());
            return -1;
        }
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main() {
    if (unshare(CLONE_NEWNET) != 0) {
        std::perror("unshare(CLONE_NEWNET) (run as root)");
        return 1;
    }
    auto nft = kernel::make_nft_mangle_port({.events = false});
    if (!nft) {
        std::fprintf(stderr, "%s\n", nft.error().text().c_str());
        return 1;
    }
    auto iptc = kernel::make_iptc_mangle_port();
    const auto spec = ten_rules();
    std::vector<double> t_iptc, t_nft;
    for (int round = 0; round < 21; ++round) {
        t_iptc.push_back(write_once(*iptc, spec));
        t_nft.push_back(write_once(**nft, spec));
        if (t_iptc.back() < 0 || t_nft.back() < 0) return 1;
    }
    for (auto f : {net::Family::V4, net::Family::V6}) (void)iptc->remove_all(f), (void)(*nft)->remove_all(f);
    const double a = median(t_iptc), b = median(t_nft);
    std::printf("mangle write, 10 rules, IPv4 + IPv6, median of 21:\n");
    std::printf("  libiptc  (2 commits, chain FLOWSHAPER)      %8.0f us\n", a);
    std::printf("  nftables (2 transactions, table inet, JSON read) %8.0f us\n", b);
    std::printf("  ratio nftables / libiptc: %.2f\n", b / a);
    return 0;
}
