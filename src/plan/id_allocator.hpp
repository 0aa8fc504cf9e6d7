// Stable ids: a client keeps the class minor and filter node it has in the kernel, so that
// re-planning an unchanged policy yields the same objects. New clients get free ids.
#pragma once

#include <map>
#include <optional>
#include <set>

#include "flowshaper/common/result.hpp"
#include "flowshaper/tc/model.hpp"
#include "u32_layout.hpp"

namespace flowshaper::plan {

class IdAllocator {
public:
    explicit IdAllocator(const tc::DeviceState& observed);

    // The classid the kernel already uses for this match identity, if it is a client class and
    // nobody in this plan has claimed it yet; claims it.
    std::optional<tc::Handle> reuse_class(const MatchIdentity& id);
    std::optional<tc::Handle> reuse_class_for_mark(uint32_t mark);
    // A client minor no observed class uses and nobody claimed; errors when all are taken.
    Result<tc::Handle> new_class();

    // The node handle the kernel already has for this identity in that bucket, else a free one
    // in [first, last] of the bucket.
    Result<uint32_t> node(const MatchIdentity& id, const MatchPlace& place, uint32_t first, uint32_t last);

private:
    struct Observed {
        tc::Handle classid;
        uint32_t handle;
        uint16_t prio;
    };
    std::map<MatchIdentity, Observed> by_identity_;
    std::map<uint32_t, tc::Handle> by_mark_;
    std::set<uint16_t> observed_minors_;
    std::set<uint16_t> claimed_minors_;
    uint32_t next_minor_ = 0;
    // Per (prio, table, bucket): node ids observed and claimed.
    std::map<uint64_t, std::set<uint32_t>> observed_nodes_;
    std::map<uint64_t, std::set<uint32_t>> claimed_nodes_;
};

}  // namespace flowshaper::plan
