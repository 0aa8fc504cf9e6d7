// Memory per tracked flow, measured with a counting global operator new in this test binary.
#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>

#include <catch2/catch.hpp>

#include "detect_support.hpp"

namespace {
std::atomic<int64_t> live_heap_bytes{0};  // test-only counter of the replaced operator new
}

void* operator new(std::size_t n) {
    void* p = std::malloc(n == 0 ? 1 : n);
    if (!p) throw std::bad_alloc();
    live_heap_bytes += static_cast<int64_t>(malloc_usable_size(p));
    return p;
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    void* p = std::malloc(n == 0 ? 1 : n);
    if (p) live_heap_bytes += static_cast<int64_t>(malloc_usable_size(p));
    return p;
}
void operator delete(void* p) noexcept {
    if (!p) return;
    live_heap_bytes -= static_cast<int64_t>(malloc_usable_size(p));
    std::free(p);
}
// The other forms too, so that every new/delete pair of this binary meets the same malloc/free.
void operator delete(void* p, std::size_t) noexcept {
    operator delete(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
    operator delete(p);
}
void* operator new[](std::size_t n) {
    return operator new(n);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept {
    return operator new(n, t);
}
void operator delete[](void* p) noexcept {
    operator delete(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    operator delete(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
    operator delete(p);
}

using namespace flowshaper;
using namespace flowshaper::detect;
using namespace flowshaper::detect::testing;

TEST_CASE("a hundred thousand tracked flows cost under 64 bytes each (32-byte records, load at most 3/4)") {
    CHECK(Detector::flow_record_bytes() == 32);
    auto r = rule("imap");
    r.local_ports = {993};
    r.flow_bytes = 500'000'000;
    std::vector<FlowSample> samples;
    samples.reserve(100'000);
    for (uint32_t i = 0; i < 100'000; ++i) {
        uint32_t client = i % 1000;
        std::string a = "10.1." + std::to_string(client / 256) + "." + std::to_string(client % 256);
        samples.push_back(inbound(i + 1, a.c_str(), 993, 1000 + i));
        samples.back().orig_sport = static_cast<uint16_t>(1024 + i / 1000);
    }
    int64_t before = live_heap_bytes.load();
    int64_t per_flow = 0;
    {
        Detector det({r}, host_addresses());
        det.observe(1'000, samples);
        for (auto& s : samples) s.reply_bytes += 5000;
        det.observe(2'000, samples);  // steady state: the table is sized from the previous poll
        REQUIRE(det.tracked_flows() == 100'000);
        REQUIRE(det.tracked_clients() == 1'000);
        per_flow = (live_heap_bytes.load() - before) / 100'000;
    }
    int64_t after = live_heap_bytes.load();
    CHECK(after == before);  // everything freed with the detector
    WARN("detector heap per tracked flow (100,000 flows, 1,000 clients): " << per_flow << " bytes");
    CHECK(per_flow >= 32);
    CHECK(per_flow < 64);
}
