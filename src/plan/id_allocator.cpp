#include "id_allocator.hpp"

#include "flowshaper/plan/planner.hpp"

namespace flowshaper::plan {

namespace {

uint64_t bucket_key(uint16_t prio, uint32_t table, uint32_t bucket) {
    return (uint64_t{prio} << 40) | (uint64_t{table} << 8) | bucket;
}

}  // namespace

IdAllocator::IdAllocator(const tc::DeviceState& observed) {
    for (const auto& c : observed.classes) observed_minors_.insert(tc::minor_of(c.classid));
    for (const auto& f : observed.u32) {
        if (f.role != tc::U32Filter::Role::Match) continue;
        uint32_t table = tc::u32_table_of(f.handle);
        observed_nodes_[bucket_key(f.prio, table, tc::u32_bucket_of(f.handle))].insert(
            tc::u32_node_of(f.handle));
        if (auto id = identity_of(f)) by_identity_.emplace(*id, Observed{f.classid, f.handle, f.prio});
    }
    for (const auto& f : observed.fw) by_mark_.emplace(f.handle, f.classid);
    next_minor_ = kFirstClientMinor;
}

std::optional<tc::Handle> IdAllocator::reuse_class(const MatchIdentity& id) {
    auto it = by_identity_.find(id);
    if (it == by_identity_.end()) return std::nullopt;
    uint16_t minor = tc::minor_of(it->second.classid);
    if (tc::major_of(it->second.classid) != tc::kMajor || minor < kFirstClientMinor) return std::nullopt;
    if (!claimed_minors_.insert(minor).second) return std::nullopt;
    return it->second.classid;
}

std::optional<tc::Handle> IdAllocator::reuse_class_for_mark(uint32_t mark) {
    auto it = by_mark_.find(mark);
    if (it == by_mark_.end()) return std::nullopt;
    uint16_t minor = tc::minor_of(it->second);
    if (tc::major_of(it->second) != tc::kMajor || minor < kFirstClientMinor) return std::nullopt;
    if (!claimed_minors_.insert(minor).second) return std::nullopt;
    return it->second;
}

Result<tc::Handle> IdAllocator::new_class() {
    // First pass: minors the kernel does not use, so no new class lands on an id that is about
    // to be removed. Second pass: any unclaimed minor.
    for (int pass = 0; pass < 2; ++pass) {
        for (uint32_t m = pass == 0 ? next_minor_ : kFirstClientMinor; m <= 0xffff; ++m) {
            auto minor = static_cast<uint16_t>(m);
            if (claimed_minors_.count(minor)) continue;
            if (pass == 0 && observed_minors_.count(minor)) continue;
            claimed_minors_.insert(minor);
            if (pass == 0) next_minor_ = m + 1;
            return tc::make_handle(tc::kMajor, minor);
        }
    }
    return make_error("plan", "client classes", 0,
                      "more than 65,280 client classes on one device; split the clients into shared caps");
}

Result<uint32_t> IdAllocator::node(const MatchIdentity& id, const MatchPlace& place, uint32_t first,
                                   uint32_t last) {
    uint64_t key = bucket_key(place.prio, place.table, place.bucket);
    auto& claimed = claimed_nodes_[key];
    auto it = by_identity_.find(id);
    if (it != by_identity_.end() && it->second.prio == place.prio &&
        tc::u32_table_of(it->second.handle) == place.table &&
        tc::u32_bucket_of(it->second.handle) == place.bucket) {
        uint32_t n = tc::u32_node_of(it->second.handle);
        if (n >= first && n <= last && claimed.insert(n).second)
            return tc::u32_handle(place.table, place.bucket, n);
    }
    const auto& seen = observed_nodes_[key];
    for (int pass = 0; pass < 2; ++pass) {
        for (uint32_t n = first; n <= last; ++n) {
            if (claimed.count(n) || (pass == 0 && seen.count(n))) continue;
            claimed.insert(n);
            return tc::u32_handle(place.table, place.bucket, n);
        }
    }
    return make_error(
        "plan", "u32 bucket " + std::to_string(place.bucket), 0,
        "more than " + std::to_string(last - first + 1) +
            " clients share one hash bucket (same last address byte); use shared caps or prefixes");
}

}  // namespace flowshaper::plan
