// IPFIX encoding: templates, records, sets and message headers (see ipfix.hpp).
#include "flowshaper/flowrec/ipfix.hpp"

#include <algorithm>
#include <array>

namespace flowshaper::flowrec::ipfix {
namespace {

// IANA IPFIX information elements used here.
enum Ie : uint16_t {
    kOctetDeltaCount = 1,
    kPacketDeltaCount = 2,
    kProtocolIdentifier = 4,
    kSourceTransportPort = 7,
    kSourceIPv4Address = 8,
    kDestinationTransportPort = 11,
    kDestinationIPv4Address = 12,
    kSourceIPv6Address = 27,
    kDestinationIPv6Address = 28,
    kPostIpClassOfService = 55,
    kFlowEndReason = 136,
    kFlowStartMilliseconds = 152,
    kFlowEndMilliseconds = 153,
    kPostNATSourceIPv4Address = 225,
    kPostNATDestinationIPv4Address = 226,
    kPostNAPTSourceTransportPort = 227,
    kPostNAPTDestinationTransportPort = 228,
    kPostNATSourceIPv6Address = 281,
    kPostNATDestinationIPv6Address = 282,
};

// Both templates list the same fields in the same order; only the address widths differ.
constexpr std::array<Field, 17> fields_for(uint16_t src, uint16_t dst, uint16_t post_src, uint16_t post_dst,
                                           uint16_t addr_len) {
    return {{{src, addr_len},
             {dst, addr_len},
             {kSourceTransportPort, 2},
             {kDestinationTransportPort, 2},
             {kProtocolIdentifier, 1},
             {kPostIpClassOfService, 1},
             {kFlowEndReason, 1},
             {kFlowStartMilliseconds, 8},
             {kFlowEndMilliseconds, 8},
             {kOctetDeltaCount, 8},
             {kPacketDeltaCount, 8},
             {kOctetDeltaCount, 8, true},
             {kPacketDeltaCount, 8, true},
             {post_src, addr_len},
             {post_dst, addr_len},
             {kPostNAPTSourceTransportPort, 2},
             {kPostNAPTDestinationTransportPort, 2}}};
}

constexpr auto kFieldsV4 = fields_for(kSourceIPv4Address, kDestinationIPv4Address, kPostNATSourceIPv4Address,
                                      kPostNATDestinationIPv4Address, 4);
constexpr auto kFieldsV6 = fields_for(kSourceIPv6Address, kDestinationIPv6Address, kPostNATSourceIPv6Address,
                                      kPostNATDestinationIPv6Address, 16);

constexpr size_t sum_lengths(const std::array<Field, 17>& fields) {
    size_t n = 0;
    for (const Field& f : fields) n += f.length;
    return n;
}

constexpr size_t template_record_bytes(const std::array<Field, 17>& fields) {
    size_t n = 4;  // template id, field count
    for (const Field& f : fields) n += f.reverse ? 8 : 4;
    return n;
}

void put16(std::vector<uint8_t>& out, uint16_t v) {
    out.push_back(static_cast<uint8_t>(v >> 8));
    out.push_back(static_cast<uint8_t>(v));
}

void put32(std::vector<uint8_t>& out, uint32_t v) {
    put16(out, static_cast<uint16_t>(v >> 16));
    put16(out, static_cast<uint16_t>(v));
}

void put64(std::vector<uint8_t>& out, uint64_t v) {
    put32(out, static_cast<uint32_t>(v >> 32));
    put32(out, static_cast<uint32_t>(v));
}

void set16(std::vector<uint8_t>& out, size_t at, uint16_t v) {
    out[at] = static_cast<uint8_t>(v >> 8);
    out[at + 1] = static_cast<uint8_t>(v);
}

void put_address(std::vector<uint8_t>& out, const net::Address& a, net::Family family) {
    const size_t width = family == net::Family::V4 ? 4 : 16;
    out.insert(out.end(), a.bytes.begin(), a.bytes.begin() + static_cast<ptrdiff_t>(width));
}

void append_template(std::vector<uint8_t>& out, net::Family family) {
    std::span<const Field> fields = template_fields(family);
    put16(out, template_id(family));
    put16(out, static_cast<uint16_t>(fields.size()));
    for (const Field& f : fields) {
        put16(out, static_cast<uint16_t>(f.id | (f.reverse ? 0x8000 : 0)));
        put16(out, f.length);
        if (f.reverse) put32(out, kReversePen);
    }
}

size_t padding_for(size_t set_bytes) {
    return (4 - set_bytes % 4) % 4;
}

size_t align4(size_t bytes) {
    return bytes + padding_for(bytes);
}

uint16_t set_id_at(const std::vector<uint8_t>& out, size_t at) {
    return static_cast<uint16_t>(out[at] << 8 | out[at + 1]);
}

// Ends the open data set at `set_start`: zero padding, then its length.
void close_set(std::vector<uint8_t>& out, size_t set_start) {
    out.resize(out.size() + padding_for(out.size() - set_start), 0);
    set16(out, set_start + 2, static_cast<uint16_t>(out.size() - set_start));
}

}  // namespace

std::span<const Field> template_fields(net::Family family) {
    return family == net::Family::V4 ? std::span<const Field>(kFieldsV4) : std::span<const Field>(kFieldsV6);
}

uint16_t template_id(net::Family family) {
    return family == net::Family::V4 ? kTemplateIdV4 : kTemplateIdV6;
}

size_t record_bytes(net::Family family) {
    return family == net::Family::V4 ? sum_lengths(kFieldsV4) : sum_lengths(kFieldsV6);
}

size_t template_set_bytes() {
    return kSetHeaderBytes + template_record_bytes(kFieldsV4) + template_record_bytes(kFieldsV6);
}

void append_template_set(std::vector<uint8_t>& out) {
    put16(out, kTemplateSetId);
    put16(out, static_cast<uint16_t>(template_set_bytes()));
    append_template(out, net::Family::V4);
    append_template(out, net::Family::V6);
}

void append_record(std::vector<uint8_t>& out, const FlowRecord& r) {
    put_address(out, r.src, r.family);
    put_address(out, r.dst, r.family);
    put16(out, r.sport);
    put16(out, r.dport);
    out.push_back(r.l4proto);
    out.push_back(r.tos);
    out.push_back(static_cast<uint8_t>(r.reason));
    put64(out, r.start_ms);
    put64(out, r.end_ms);
    put64(out, r.octets);
    put64(out, r.packets);
    put64(out, r.rev_octets);
    put64(out, r.rev_packets);
    put_address(out, r.post_src, r.family);
    put_address(out, r.post_dst, r.family);
    put16(out, r.post_sport);
    put16(out, r.post_dport);
}

MessageEncoder::MessageEncoder(uint32_t observation_domain, size_t max_message_bytes)
    : domain_(observation_domain),
      max_bytes_(std::clamp(max_message_bytes, kMinMessageBytes, kMaxMessageBytes)) {}

size_t MessageEncoder::encode(std::span<const FlowRecord> records, uint32_t export_time_s, bool templates,
                              std::vector<uint8_t>& out) {
    out.clear();
    out.reserve(max_bytes_);
    put16(out, kVersion);
    put16(out, 0);  // length, below
    put32(out, export_time_s);
    put32(out, sequence_);
    put32(out, domain_);
    if (templates) append_template_set(out);

    size_t taken = 0;
    size_t set_start = 0;  // 0: no data set open
    for (const FlowRecord& r : records) {
        const bool same_set = set_start != 0 && set_id_at(out, set_start) == template_id(r.family);
        const size_t closed = set_start ? set_start + align4(out.size() - set_start) : out.size();
        const size_t after = same_set ? set_start + align4(out.size() - set_start + record_bytes(r.family))
                                      : closed + align4(kSetHeaderBytes + record_bytes(r.family));
        if (after > max_bytes_) break;
        if (!same_set) {
            if (set_start) close_set(out, set_start);
            set_start = out.size();
            put16(out, template_id(r.family));
            put16(out, 0);  // length, when the set is closed
        }
        append_record(out, r);
        ++taken;
    }
    if (set_start) close_set(out, set_start);
    set16(out, 2, static_cast<uint16_t>(out.size()));
    sequence_ += static_cast<uint32_t>(taken);
    return taken;
}

}  // namespace flowshaper::flowrec::ipfix
