// Structural checks of encoded IPFIX messages without a record decoder (shared by the property
// test and fuzz/fuzz_ipfix.cpp): headers, set tiling, padding, budget, sequence numbers, and the
// data bytes equal to the records' own encodings in order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "flowshaper/flowrec/ipfix.hpp"

namespace flowshaper::flowrec::check {

inline uint32_t be(const std::vector<uint8_t>& m, size_t at, int bytes) {
    uint32_t v = 0;
    for (int i = 0; i < bytes; ++i) v = v << 8 | m[at + static_cast<size_t>(i)];
    return v;
}

// Checks messages that should carry `records` in order, the first one with the template set.
inline std::string check_messages(std::span<const FlowRecord> records,
                                  const std::vector<std::vector<uint8_t>>& msgs, size_t budget,
                                  uint32_t domain) {
    std::vector<uint8_t> expected_data, data;
    for (const FlowRecord& r : records) ipfix::append_record(expected_data, r);
    size_t done = 0;
    for (size_t m = 0; m < msgs.size(); ++m) {
        const std::vector<uint8_t>& msg = msgs[m];
        if (msg.size() < ipfix::kHeaderBytes || msg.size() > budget) return "message size outside its budget";
        if (be(msg, 0, 2) != 10 || be(msg, 2, 2) != msg.size()) return "bad version or length";
        if (be(msg, 8, 4) != static_cast<uint32_t>(done) || be(msg, 12, 4) != domain)
            return "bad sequence or domain";
        size_t at = ipfix::kHeaderBytes;
        while (at < msg.size()) {
            if (msg.size() - at < 4) return "trailing bytes after the last set";
            const uint32_t id = be(msg, at, 2), len = be(msg, at + 2, 2);
            if (len < 4 || at + len > msg.size() || len % 4 != 0) return "bad set length";
            if (id == ipfix::kTemplateSetId) {
                if (m != 0 || len != ipfix::template_set_bytes()) return "unexpected template set";
                at += len;
                continue;
            }
            if (id != ipfix::kTemplateIdV4 && id != ipfix::kTemplateIdV6) return "unknown set id";
            const net::Family fam = id == ipfix::kTemplateIdV4 ? net::Family::V4 : net::Family::V6;
            const size_t rec = ipfix::record_bytes(fam), body = len - 4, k = body / rec;
            if (k == 0 || body - k * rec >= 4) return "padding of 4 bytes or more, or an empty set";
            if (done + k > records.size()) return "more records than were encoded";
            for (size_t i = 0; i < k; ++i)
                if (records[done + i].family != fam) return "record in the wrong set";
            data.insert(data.end(), msg.begin() + static_cast<ptrdiff_t>(at + 4),
                        msg.begin() + static_cast<ptrdiff_t>(at + 4 + k * rec));
            for (size_t i = at + 4 + k * rec; i < at + len; ++i)
                if (msg[i] != 0) return "non-zero padding";
            done += k;
            at += len;
        }
    }
    if (done != records.size()) return "records missing";
    if (data != expected_data) return "data records differ from the records' encodings";
    return "";
}

// Encodes `records` into messages the way a transport does (templates in the first only).
inline std::vector<std::vector<uint8_t>> encode_all(std::span<const FlowRecord> records, size_t budget,
                                                    uint32_t domain, std::string* error) {
    ipfix::MessageEncoder enc(domain, budget);
    std::vector<std::vector<uint8_t>> msgs;
    size_t done = 0;
    for (bool first = true; first || done < records.size(); first = false) {
        msgs.emplace_back();
        const size_t n = enc.encode(records.subspan(done), 42, first, msgs.back());
        if (n == 0 && !(first && records.empty())) {
            *error = "no progress at record " + std::to_string(done);
            break;
        }
        done += n;
    }
    return msgs;
}

inline std::string encode_and_check(std::span<const FlowRecord> records, size_t budget, uint32_t domain) {
    std::string error;
    auto msgs = encode_all(records, budget, domain, &error);
    if (!error.empty()) return error;
    return check_messages(records, msgs, std::clamp(budget, ipfix::kMinMessageBytes, ipfix::kMaxMessageBytes),
                          domain);
}

}  // namespace flowshaper::flowrec::check
