// A pure IPFIX encoder (RFC 7011 messages, RFC 5103 biflow records): records in, bytes out.
// No sockets, no clock: the caller supplies the export time and decides when templates go out.
//
// Message: 16-byte header (version 10, length, export time, sequence number, observation domain),
// then optionally the template set (set id 2, both templates), then data sets (set id = template
// id), each padded with zeros to a multiple of 4 bytes (padding is shorter than any record, as
// RFC 7011 3.3.1 requires). Consecutive records of one family share a set.
//
// The sequence number of a message is the number of data records sent before it in this stream
// and observation domain, modulo 2^32 (RFC 7011 3.1); template records do not count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "flowshaper/flowrec/record.hpp"

namespace flowshaper::flowrec::ipfix {

constexpr uint16_t kVersion = 10;
constexpr size_t kHeaderBytes = 16;
constexpr size_t kSetHeaderBytes = 4;
constexpr uint16_t kTemplateSetId = 2;
constexpr uint16_t kTemplateIdV4 = 256;
constexpr uint16_t kTemplateIdV6 = 257;
constexpr uint32_t kReversePen = 29305;  // RFC 5103: reverse information elements
// A message must hold its header, the template set and one set with one IPv6 record.
constexpr size_t kMinMessageBytes = 512;
constexpr size_t kMaxMessageBytes = 65535;  // the header's length field

// One field of a template: information element id, length and whether it is the RFC 5103
// reverse element (enterprise bit set, PEN 29305).
struct Field {
    uint16_t id = 0;
    uint16_t length = 0;
    bool reverse = false;
};

std::span<const Field> template_fields(net::Family family);
uint16_t template_id(net::Family family);
size_t record_bytes(net::Family family);  // 75 (IPv4), 123 (IPv6)
size_t template_set_bytes();              // both templates in one set

// Appends the template set (both templates).
void append_template_set(std::vector<uint8_t>& out);
// Appends one data record (no set header) in its family's template.
void append_record(std::vector<uint8_t>& out, const FlowRecord& record);

// Cuts records into messages of at most `max_message_bytes` and numbers them.
class MessageEncoder {
public:
    // `max_message_bytes` is clamped to [kMinMessageBytes, kMaxMessageBytes].
    MessageEncoder(uint32_t observation_domain, size_t max_message_bytes);

    // Encodes the longest prefix of `records` that fits into one message (replacing `out`) and
    // returns how many it took: at least one when `records` is not empty. With `templates` the
    // template set comes first (a message of templates alone when `records` is empty).
    size_t encode(std::span<const FlowRecord> records, uint32_t export_time_s, bool templates,
                  std::vector<uint8_t>& out);

    uint32_t sequence() const { return sequence_; }
    // A new transport session (TCP reconnect, new file) starts counting at 0.
    void reset_sequence() { sequence_ = 0; }
    uint32_t observation_domain() const { return domain_; }
    size_t max_message_bytes() const { return max_bytes_; }

private:
    uint32_t domain_;
    size_t max_bytes_;
    uint32_t sequence_ = 0;
};

}  // namespace flowshaper::flowrec::ipfix
