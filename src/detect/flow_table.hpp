// The detector's per-flow records: an open-addressing table (linear probing, load <= 3/4) keyed by
// conntrack id + tuple fingerprint. It is rebuilt from every dump, so it never deletes: flows
// absent from a dump simply are not copied into the next table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "flowshaper/detect/classify.hpp"

namespace flowshaper::detect::internal {

// 32 bytes per tracked flow.
struct FlowRecord {
    static constexpr uint32_t kSlotMask = 0x1fffffff;  // client slot: 29 bits
    static constexpr uint32_t kOpened = 1u << 29;      // the client opened the connection

    uint64_t fingerprint = 0;  // tuple hash; 0: empty slot of the table
    uint64_t last_bytes = 0;   // toward-client counter at the last poll
    uint64_t base_bytes = 0;   // counter value flow_bytes counts from (raised at a release)
    uint32_t id = 0;           // conntrack id
    uint32_t bits = 0;         // client slot | flags

    uint32_t client() const { return bits & kSlotMask; }
    bool has(uint32_t flag) const { return (bits & flag) != 0; }
    uint64_t flow_bytes() const { return last_bytes - base_bytes; }
};
static_assert(sizeof(FlowRecord) == 32);

// A hash of the original tuple (family, protocol, addresses, ports); never 0.
uint64_t fingerprint(const FlowSample& flow);

class FlowTable {
public:
    explicit FlowTable(size_t expected = 0);

    FlowRecord* find(uint32_t id, uint64_t fingerprint);
    const FlowRecord* find(uint32_t id, uint64_t fingerprint) const;
    // The key must be absent. The reference stays valid until the next insert.
    FlowRecord& insert(uint32_t id, uint64_t fingerprint);

    size_t size() const { return size_; }
    size_t memory_bytes() const { return slots_.capacity() * sizeof(FlowRecord); }

    template <typename F>
    void for_each(F&& f) {
        for (auto& r : slots_)
            if (r.fingerprint != 0) f(r);
    }

private:
    size_t home(uint32_t id, uint64_t fingerprint) const;
    void grow();

    std::vector<FlowRecord> slots_;
    size_t size_ = 0;
};

}  // namespace flowshaper::detect::internal
