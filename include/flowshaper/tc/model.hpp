// Value types for the tc objects flowshaper owns on one device: what plan produces, what the
// kernel port reads back and applies. No kernel access here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace flowshaper::tc {

// A tc handle: major in the high 16 bits, minor in the low 16 ("f5:1a").
using Handle = uint32_t;

constexpr Handle make_handle(uint16_t major, uint16_t minor) {
    return (static_cast<uint32_t>(major) << 16) | minor;
}
constexpr uint16_t major_of(Handle h) {
    return static_cast<uint16_t>(h >> 16);
}
constexpr uint16_t minor_of(Handle h) {
    return static_cast<uint16_t>(h & 0xffff);
}

// flowshaper's root qdisc handle on every device it shapes. The major is how flowshaper
// recognises its own qdisc: nothing else is ever replaced.
inline constexpr uint16_t kMajor = 0xf5;
inline constexpr Handle kRootQdisc = make_handle(kMajor, 0);
inline constexpr Handle kRootClass = make_handle(kMajor, 1);
inline constexpr Handle kTcRoot = 0xffffffffu;  // TC_H_ROOT

// "f5:1a", "f5:", "root"
std::string format_handle(Handle h);

// u32 handles: 12-bit table id, 8-bit bucket, 12-bit node ("100:2a:3").
constexpr uint32_t u32_handle(uint32_t table, uint32_t bucket, uint32_t node) {
    return (table << 20) | (bucket << 12) | node;
}
constexpr uint32_t u32_table_of(uint32_t h) {
    return h >> 20;
}
constexpr uint32_t u32_bucket_of(uint32_t h) {
    return (h >> 12) & 0xff;
}
constexpr uint32_t u32_node_of(uint32_t h) {
    return h & 0xfff;
}
std::string format_u32_handle(uint32_t h);  // "100:2a:3", "100:" for a table

struct HtbQdisc {
    Handle handle = kRootQdisc;
    Handle default_class = 0;  // full classid; the kernel keeps only the minor
    uint32_t r2q = 10;

    bool operator==(const HtbQdisc&) const = default;
};

struct HtbClass {
    Handle classid = 0;
    Handle parent = 0;  // kRootQdisc for top level classes
    uint64_t rate_bytes_per_s = 0;
    uint64_t ceil_bytes_per_s = 0;
    uint32_t burst_bytes = 0;    // bucket at rate
    uint32_t cburst_bytes = 0;   // bucket at ceil
    uint32_t quantum_bytes = 0;  // 0: let the kernel derive it from r2q
    uint32_t prio = 0;
    std::string label;  // for humans only ("cap customer-42 203.0.113.7"); not in the kernel

    bool same_config(const HtbClass& o) const;  // ignores label; tolerant of burst rounding
};

// The qdisc under a leaf class.
struct LeafQdisc {
    Handle parent = 0;  // the leaf class
    Handle handle = 0;
    std::string kind;            // "fq_codel", "sfq", "bfifo", "pfifo"
    uint32_t limit_packets = 0;  // pfifo, fq_codel, sfq; 0: kernel default (pfifo: txqueuelen)
    uint32_t limit_bytes = 0;    // bfifo; 0: kernel default (txqueuelen * mtu)

    bool operator==(const LeafQdisc&) const = default;
    bool same_config(const LeafQdisc& o) const;  // a planned limit of 0 accepts any limit
};

// Leaf queues sized by time: a bfifo holds about `queue_ms` of traffic at the class's ceil, and
// never less than kMinLeafQueueBytes: the largest GSO/GRO packet the stack hands a qdisc with
// the kernel's default gso_max_size / gro_max_size (64 KiB of packet, which the qdisc counts as
// the wire bytes of its up to 45 segments: ~69 KB), plus three full-size frames, so that the
// two segments a delayed ACK releases plus one in service fit beside it. A bfifo smaller than
// one such packet drops every one of them whole, 44 segments at a time: each new TCP
// connection's first bursts are lost and it waits for retransmission timeouts (20 downloads of
// 256 KB under a 4/5 Mbit/s cap ran at 0.55 Mbit/s with a 62,500-byte bfifo, 4.8 with this floor).
inline constexpr uint32_t kFullFrameBytes = 1514;
inline constexpr uint32_t kMaxGsoWireBytes = 65'536 + 45 * 86;  // + each segment's Ethernet/IPv6/TCP headers
inline constexpr uint32_t kMinLeafQueueBytes = kMaxGsoWireBytes + 3 * kFullFrameBytes;  // 73,948
uint32_t leaf_queue_bytes(uint64_t ceil_bytes_per_s, uint64_t queue_ms);
// The longest a full queue of `queue_bytes` takes to drain when the class gets only its
// guaranteed rate (it may borrow up to its ceil, but nothing promises it): the most the wire
// lags behind what entered the queue. Rounded up to whole milliseconds.
uint64_t leaf_queue_drain_ms(uint32_t queue_bytes, uint64_t rate_bytes_per_s);

// One 32-bit match of a u32 selector, in host byte order (the port converts).
struct U32Key {
    uint32_t value = 0;
    uint32_t mask = 0;
    int32_t offset = 0;  // from the network header, multiple of 4

    bool operator==(const U32Key&) const = default;
};

inline constexpr uint16_t kEthPIp = 0x0800;
inline constexpr uint16_t kEthPIpv6 = 0x86dd;
inline constexpr uint16_t kEthPAll = 0x0003;

// A u32 filter node. Three roles share the type, as in the kernel:
//  - Table: a hash table (handle "t:", divisor set, no keys);
//  - Link: a node in table 800 whose match jumps into `link_table`, hashing on `hash_mask`
//    at `hash_offset`;
//  - Match: a node in a bucket whose keys select `classid` (terminal).
// Table 0 in a node's handle means "the root table of this prio": the kernel numbers root tables
// itself (800:, 801:, ... in creation order, cyclically), so the plan never names them; the port
// resolves them when writing and reports their nodes with table 0 when reading.
struct U32Filter {
    enum class Role : uint8_t { Table, Link, Match };
    Role role = Role::Match;
    uint16_t prio = 0;
    uint16_t protocol = kEthPIp;
    uint32_t handle = 0;
    uint32_t divisor = 0;      // Table
    uint32_t link_table = 0;   // Link: handle of the table ("t:")
    uint32_t hash_mask = 0;    // Link
    int32_t hash_offset = 0;   // Link
    std::vector<U32Key> keys;  // Link and Match
    Handle classid = 0;        // Match
    std::string label;         // for humans only

    bool same_config(const U32Filter& o) const;  // ignores label
};

// A fw filter node: packets whose (fwmark & mask) == handle go to classid.
struct FwFilter {
    uint16_t prio = 0;
    uint16_t protocol = kEthPAll;
    uint32_t handle = 0;  // the mark value
    uint32_t mask = 0xffffffff;
    Handle classid = 0;
    std::string label;

    bool same_config(const FwFilter& o) const;  // ignores label
};

// Everything flowshaper owns on one device. `root` empty: nothing of ours there.
struct DeviceState {
    std::string device;
    std::optional<HtbQdisc> root;
    std::vector<HtbClass> classes;
    std::vector<LeafQdisc> leaves;
    std::vector<U32Filter> u32;
    std::vector<FwFilter> fw;
};

// What a device's root qdisc is, as read from the kernel, to decide whether flowshaper may
// replace it: its own (major kMajor, kind htb), a kernel default (handle 0), or foreign.
struct RootInfo {
    enum class Owner : uint8_t { None, Ours, KernelDefault, Foreign };
    Owner owner = Owner::None;
    std::string kind;  // "noqueue", "htb", ...
    Handle handle = 0;
};

// Counters of one class, for `show`.
struct ClassStats {
    Handle classid = 0;
    uint64_t bytes = 0;
    uint64_t packets = 0;
    uint64_t drops = 0;
    uint64_t overlimits = 0;
    uint64_t rate_bytes_per_s = 0;  // the kernel's estimator when present, else 0
    uint32_t backlog_bytes = 0;
};

// What the kernel has on a device: flowshaper's objects plus what `show` needs.
struct ObservedDevice {
    int ifindex = 0;
    RootInfo root_info;
    DeviceState state;              // only flowshaper's objects (under kMajor)
    std::vector<ClassStats> stats;  // one per class in state.classes
};

// One change, in the order it must be sent.
struct Change {
    enum class Op : uint8_t { Add, Modify, Remove };
    Op op = Op::Add;
    std::variant<HtbQdisc, HtbClass, LeafQdisc, U32Filter, FwFilter> object;

    std::string describe() const;  // "add class f5:1a (cap customer-42 203.0.113.7) rate 5mbit"
};

}  // namespace flowshaper::tc
