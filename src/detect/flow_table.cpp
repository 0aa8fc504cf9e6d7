#include "flow_table.hpp"

#include <cstring>

namespace flowshaper::detect::internal {

namespace {

uint64_t mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

uint64_t combine(uint64_t h, uint64_t v) {
    return mix(h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6)));
}

uint64_t load64(const uint8_t* p) {
    uint64_t v = 0;
    std::memcpy(&v, p, sizeof v);
    return v;
}

size_t capacity_for(size_t expected) {
    size_t cap = expected + expected / 3 + 1;
    return cap < 16 ? 16 : cap;
}

}  // namespace

uint64_t fingerprint(const FlowSample& flow) {
    uint64_t h = (static_cast<uint64_t>(flow.family) << 56) | (static_cast<uint64_t>(flow.l4proto) << 48) |
                 (static_cast<uint64_t>(flow.orig_sport) << 16) | flow.orig_dport;
    h = combine(h, load64(flow.orig_src.bytes.data()));
    h = combine(h, load64(flow.orig_src.bytes.data() + 8));
    h = combine(h, load64(flow.orig_dst.bytes.data()));
    h = combine(h, load64(flow.orig_dst.bytes.data() + 8));
    return h == 0 ? 1 : h;
}

FlowTable::FlowTable(size_t expected) : slots_(capacity_for(expected)) {}

size_t FlowTable::home(uint32_t id, uint64_t fingerprint) const {
    uint64_t h = mix(fingerprint ^ (static_cast<uint64_t>(id) * 0x9e3779b97f4a7c15ULL));
    // Lemire's reduction: capacity need not be a power of two.
    return static_cast<size_t>((static_cast<unsigned __int128>(h) * slots_.size()) >> 64);
}

FlowRecord* FlowTable::find(uint32_t id, uint64_t fingerprint) {
    return const_cast<FlowRecord*>(static_cast<const FlowTable*>(this)->find(id, fingerprint));
}

const FlowRecord* FlowTable::find(uint32_t id, uint64_t fingerprint) const {
    size_t n = slots_.size();
    for (size_t i = home(id, fingerprint);; i = (i + 1 == n) ? 0 : i + 1) {
        const FlowRecord& r = slots_[i];
        if (r.fingerprint == 0) return nullptr;
        if (r.fingerprint == fingerprint && r.id == id) return &r;
    }
}

FlowRecord& FlowTable::insert(uint32_t id, uint64_t fingerprint) {
    if ((size_ + 1) * 4 > slots_.size() * 3) grow();
    size_t n = slots_.size();
    size_t i = home(id, fingerprint);
    while (slots_[i].fingerprint != 0) i = (i + 1 == n) ? 0 : i + 1;
    FlowRecord& r = slots_[i];
    r = FlowRecord{};
    r.fingerprint = fingerprint;
    r.id = id;
    ++size_;
    return r;
}

void FlowTable::grow() {
    std::vector<FlowRecord> old(slots_.size() + slots_.size() / 2);
    old.swap(slots_);
    size_ = 0;
    for (const auto& r : old) {
        if (r.fingerprint == 0) continue;
        insert(r.id, r.fingerprint) = r;
    }
}

}  // namespace flowshaper::detect::internal
