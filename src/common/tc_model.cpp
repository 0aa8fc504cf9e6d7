#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "flowshaper/tc/model.hpp"

namespace flowshaper::tc {

std::string format_handle(Handle h) {
    if (h == kTcRoot) return "root";
    char buf[16];
    if (minor_of(h) == 0)
        std::snprintf(buf, sizeof buf, "%x:", major_of(h));
    else
        std::snprintf(buf, sizeof buf, "%x:%x", major_of(h), minor_of(h));
    return buf;
}

std::string format_u32_handle(uint32_t h) {
    char buf[24];
    if (u32_bucket_of(h) == 0 && u32_node_of(h) == 0)
        std::snprintf(buf, sizeof buf, "%x:", u32_table_of(h));
    else
        std::snprintf(buf, sizeof buf, "%x:%x:%x", u32_table_of(h), u32_bucket_of(h), u32_node_of(h));
    return buf;
}

namespace {

// The kernel keeps HTB buckets as transmission times, so a size read back can differ from the
// size sent by rounding. Within 1% (or 64 bytes) counts as the same.
bool close_enough(uint64_t a, uint64_t b) {
    uint64_t diff = a > b ? a - b : b - a;
    uint64_t larger = a > b ? a : b;
    return diff <= 64 || diff * 100 <= larger;
}

std::string rate_text(uint64_t bytes_per_s) {
    uint64_t bits = bytes_per_s * 8;
    char buf[32];
    if (bits % 1000000000 == 0 && bits >= 1000000000)
        std::snprintf(buf, sizeof buf, "%llugbit", static_cast<unsigned long long>(bits / 1000000000));
    else if (bits % 1000000 == 0 && bits >= 1000000)
        std::snprintf(buf, sizeof buf, "%llumbit", static_cast<unsigned long long>(bits / 1000000));
    else if (bits % 1000 == 0 && bits >= 1000)
        std::snprintf(buf, sizeof buf, "%llukbit", static_cast<unsigned long long>(bits / 1000));
    else
        std::snprintf(buf, sizeof buf, "%llubit", static_cast<unsigned long long>(bits));
    return buf;
}

const char* op_text(Change::Op op) {
    switch (op) {
        case Change::Op::Add:
            return "add";
        case Change::Op::Modify:
            return "change";
        case Change::Op::Remove:
            return "delete";
    }
    return "?";
}

std::string with_label(std::string text, const std::string& label) {
    if (!label.empty()) text += " (" + label + ")";
    return text;
}

}  // namespace

bool HtbClass::same_config(const HtbClass& o) const {
    return classid == o.classid && parent == o.parent && rate_bytes_per_s == o.rate_bytes_per_s &&
           ceil_bytes_per_s == o.ceil_bytes_per_s && close_enough(burst_bytes, o.burst_bytes) &&
           close_enough(cburst_bytes, o.cburst_bytes) &&
           (quantum_bytes == 0 || quantum_bytes == o.quantum_bytes) && prio == o.prio;
}

bool LeafQdisc::same_config(const LeafQdisc& o) const {
    return parent == o.parent && handle == o.handle && kind == o.kind &&
           (limit_packets == 0 || o.limit_packets == 0 || limit_packets == o.limit_packets) &&
           (limit_bytes == 0 || o.limit_bytes == 0 || limit_bytes == o.limit_bytes);
}

uint32_t leaf_queue_bytes(uint64_t ceil_bytes_per_s, uint64_t queue_ms) {
    unsigned __int128 bytes = static_cast<unsigned __int128>(ceil_bytes_per_s) * queue_ms / 1000;
    if (bytes > 0x7fffffff) return 0x7fffffff;
    return std::max<uint32_t>(static_cast<uint32_t>(bytes), kMinLeafQueueBytes);
}

uint64_t leaf_queue_drain_ms(uint32_t queue_bytes, uint64_t rate_bytes_per_s) {
    if (rate_bytes_per_s == 0) return 0;
    return (uint64_t{queue_bytes} * 1000 + rate_bytes_per_s - 1) / rate_bytes_per_s;
}

bool U32Filter::same_config(const U32Filter& o) const {
    return role == o.role && prio == o.prio && protocol == o.protocol && handle == o.handle &&
           divisor == o.divisor && link_table == o.link_table && hash_mask == o.hash_mask &&
           hash_offset == o.hash_offset && keys == o.keys && classid == o.classid;
}

bool FwFilter::same_config(const FwFilter& o) const {
    return prio == o.prio && protocol == o.protocol && handle == o.handle && mask == o.mask &&
           classid == o.classid;
}

std::string Change::describe() const {
    std::string verb = op_text(op);
    return std::visit(
        [&](const auto& obj) -> std::string {
            using T = std::decay_t<decltype(obj)>;
            if constexpr (std::is_same_v<T, HtbQdisc>) {
                return verb + " qdisc htb " + format_handle(obj.handle) + " default " +
                       format_handle(obj.default_class);
            } else if constexpr (std::is_same_v<T, HtbClass>) {
                std::string text = verb + " class " + format_handle(obj.classid);
                if (op != Op::Remove)
                    text += " rate " + rate_text(obj.rate_bytes_per_s) + " ceil " +
                            rate_text(obj.ceil_bytes_per_s);
                return with_label(text, obj.label);
            } else if constexpr (std::is_same_v<T, LeafQdisc>) {
                std::string text = verb + " qdisc " + obj.kind + " " + format_handle(obj.handle) + " under " +
                                   format_handle(obj.parent);
                if (op != Op::Remove && obj.limit_bytes)
                    text += " limit " + std::to_string(obj.limit_bytes) + "b";
                if (op != Op::Remove && obj.limit_packets)
                    text += " limit " + std::to_string(obj.limit_packets) + " packets";
                return text;
            } else if constexpr (std::is_same_v<T, U32Filter>) {
                std::string text = verb + " u32 filter " + format_u32_handle(obj.handle);
                if (obj.role == U32Filter::Role::Match && op != Op::Remove)
                    text += " -> " + format_handle(obj.classid);
                return with_label(text, obj.label);
            } else {
                std::string text = verb + " fw filter mark " + std::to_string(obj.handle);
                if (op != Op::Remove) text += " -> " + format_handle(obj.classid);
                return with_label(text, obj.label);
            }
        },
        object);
}

}  // namespace flowshaper::tc
