// The IPFIX encoder against byte sequences written out by hand from RFC 7011 (message and set
// headers, template records), RFC 5103 (reverse elements: enterprise bit + PEN 29305) and the
// IANA registry (element ids and lengths).
#include <catch2/catch.hpp>

#include <vector>

#include "flowshaper/flowrec/ipfix.hpp"

using namespace flowshaper;
using namespace flowshaper::flowrec;

namespace {

net::Address v4(const char* text) {
    return *net::Address::parse(text);
}

// A NATed HTTPS download: 10.0.0.2:40000 -> 192.0.2.1:443, leaving as 198.51.100.1:61000.
FlowRecord sample_v4() {
    FlowRecord r;
    r.family = net::Family::V4;
    r.l4proto = 6;
    r.tos = 8 << 2;  // DSCP CS1
    r.reason = EndReason::ActiveTimeout;
    r.src = v4("10.0.0.2");
    r.dst = v4("192.0.2.1");
    r.sport = 40000;
    r.dport = 443;
    r.post_src = v4("198.51.100.1");
    r.post_dst = v4("192.0.2.1");
    r.post_sport = 61000;
    r.post_dport = 443;
    r.start_ms = 1700000000000;
    r.end_ms = 1700000060000;
    r.octets = 1000;
    r.packets = 10;
    r.rev_octets = 5000000;
    r.rev_packets = 3500;
    return r;
}

// clang-format off
const std::vector<uint8_t> kRecordV4 = {
    10, 0, 0, 2,                                     // sourceIPv4Address (8)
    192, 0, 2, 1,                                    // destinationIPv4Address (12)
    0x9c, 0x40,                                      // sourceTransportPort (7) 40000
    0x01, 0xbb,                                      // destinationTransportPort (11) 443
    6,                                               // protocolIdentifier (4)
    0x20,                                            // postIpClassOfService (55): CS1 << 2
    2,                                               // flowEndReason (136): active timeout
    0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00,  // flowStartMilliseconds (152) 1700000000000
    0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe6, 0x52, 0x60,  // flowEndMilliseconds (153) 1700000060000
    0, 0, 0, 0, 0, 0, 0x03, 0xe8,                    // octetDeltaCount (1) 1000
    0, 0, 0, 0, 0, 0, 0, 10,                         // packetDeltaCount (2) 10
    0, 0, 0, 0, 0, 0x4c, 0x4b, 0x40,                 // reverse octetDeltaCount 5000000
    0, 0, 0, 0, 0, 0, 0x0d, 0xac,                    // reverse packetDeltaCount 3500
    198, 51, 100, 1,                                 // postNATSourceIPv4Address (225)
    192, 0, 2, 1,                                    // postNATDestinationIPv4Address (226)
    0xee, 0x48,                                      // postNAPTSourceTransportPort (227) 61000
    0x01, 0xbb,                                      // postNAPTDestinationTransportPort (228) 443
};

const std::vector<uint8_t> kTemplateSet = {
    0x00, 0x02, 0x00, 0xa4,  // set id 2 (templates), length 164
    0x01, 0x00, 0x00, 0x11,  // template 256 (IPv4), 17 fields
    0x00, 0x08, 0x00, 0x04,  0x00, 0x0c, 0x00, 0x04,  0x00, 0x07, 0x00, 0x02,  0x00, 0x0b, 0x00, 0x02,
    0x00, 0x04, 0x00, 0x01,  0x00, 0x37, 0x00, 0x01,  0x00, 0x88, 0x00, 0x01,
    0x00, 0x98, 0x00, 0x08,  0x00, 0x99, 0x00, 0x08,  0x00, 0x01, 0x00, 0x08,  0x00, 0x02, 0x00, 0x08,
    0x80, 0x01, 0x00, 0x08,  0x00, 0x00, 0x72, 0x79,  // reverse octetDeltaCount, PEN 29305
    0x80, 0x02, 0x00, 0x08,  0x00, 0x00, 0x72, 0x79,  // reverse packetDeltaCount, PEN 29305
    0x00, 0xe1, 0x00, 0x04,  0x00, 0xe2, 0x00, 0x04,  0x00, 0xe3, 0x00, 0x02,  0x00, 0xe4, 0x00, 0x02,
    0x01, 0x01, 0x00, 0x11,  // template 257 (IPv6), 17 fields
    0x00, 0x1b, 0x00, 0x10,  0x00, 0x1c, 0x00, 0x10,  0x00, 0x07, 0x00, 0x02,  0x00, 0x0b, 0x00, 0x02,
    0x00, 0x04, 0x00, 0x01,  0x00, 0x37, 0x00, 0x01,  0x00, 0x88, 0x00, 0x01,
    0x00, 0x98, 0x00, 0x08,  0x00, 0x99, 0x00, 0x08,  0x00, 0x01, 0x00, 0x08,  0x00, 0x02, 0x00, 0x08,
    0x80, 0x01, 0x00, 0x08,  0x00, 0x00, 0x72, 0x79,
    0x80, 0x02, 0x00, 0x08,  0x00, 0x00, 0x72, 0x79,
    0x01, 0x19, 0x00, 0x10,  0x01, 0x1a, 0x00, 0x10,  0x00, 0xe3, 0x00, 0x02,  0x00, 0xe4, 0x00, 0x02,
};
// clang-format on

std::vector<uint8_t> header(uint16_t length, uint32_t time, uint32_t seq, uint32_t domain) {
    return {0x00,
            0x0a,
            static_cast<uint8_t>(length >> 8),
            static_cast<uint8_t>(length),
            static_cast<uint8_t>(time >> 24),
            static_cast<uint8_t>(time >> 16),
            static_cast<uint8_t>(time >> 8),
            static_cast<uint8_t>(time),
            static_cast<uint8_t>(seq >> 24),
            static_cast<uint8_t>(seq >> 16),
            static_cast<uint8_t>(seq >> 8),
            static_cast<uint8_t>(seq),
            static_cast<uint8_t>(domain >> 24),
            static_cast<uint8_t>(domain >> 16),
            static_cast<uint8_t>(domain >> 8),
            static_cast<uint8_t>(domain)};
}

std::vector<uint8_t> cat(std::initializer_list<std::vector<uint8_t>> parts) {
    std::vector<uint8_t> out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}

}  // namespace

TEST_CASE("the template set is the RFC 7011 layout of both templates with RFC 5103 reverse counters",
          "[ipfix]") {
    std::vector<uint8_t> out;
    ipfix::append_template_set(out);
    CHECK(out == kTemplateSet);
    CHECK(ipfix::template_set_bytes() == kTemplateSet.size());
}

TEST_CASE("an IPv4 record is 75 bytes in template order, big-endian", "[ipfix]") {
    std::vector<uint8_t> out;
    ipfix::append_record(out, sample_v4());
    CHECK(out == kRecordV4);
    CHECK(ipfix::record_bytes(net::Family::V4) == 75);
    CHECK(ipfix::record_bytes(net::Family::V6) == 123);
}

TEST_CASE("a message with templates and one record: header, template set, data set padded to 4 bytes",
          "[ipfix]") {
    ipfix::MessageEncoder enc(7, 1400);
    std::vector<FlowRecord> records{sample_v4()};
    std::vector<uint8_t> out;
    REQUIRE(enc.encode(records, 1700000060, true, out) == 1);
    // 16 header + 164 templates + 4 set header + 75 record + 1 padding = 260 = 0x104
    auto expected =
        cat({header(260, 0x6553f13c, 0, 7), kTemplateSet, {0x01, 0x00, 0x00, 0x50}, kRecordV4, {0}});
    CHECK(out == expected);
    CHECK(enc.sequence() == 1);
}

TEST_CASE("the sequence number counts data records sent before the message, not templates", "[ipfix]") {
    ipfix::MessageEncoder enc(1, 1400);
    std::vector<FlowRecord> three(3, sample_v4());
    std::vector<uint8_t> out;
    REQUIRE(enc.encode({}, 100, true, out) == 0);  // templates alone
    CHECK(out == cat({header(180, 100, 0, 1), kTemplateSet}));
    REQUIRE(enc.encode(three, 101, false, out) == 3);
    // 3 x 75 = 225 + 4 = 229, padded to 232; message 248
    CHECK(out.size() == 248);
    CHECK(
        out ==
        cat({header(248, 101, 0, 1), {0x01, 0x00, 0x00, 0xe8}, kRecordV4, kRecordV4, kRecordV4, {0, 0, 0}}));
    REQUIRE(enc.encode(three, 102, false, out) == 3);
    CHECK(std::vector<uint8_t>(out.begin(), out.begin() + 16) == header(248, 102, 3, 1));
    enc.reset_sequence();
    REQUIRE(enc.encode(three, 103, false, out) == 3);
    CHECK(std::vector<uint8_t>(out.begin(), out.begin() + 16) == header(248, 103, 0, 1));
}

TEST_CASE("records of both families alternate sets, each with its own template id", "[ipfix]") {
    FlowRecord six = sample_v4();
    six.family = net::Family::V6;
    six.src = six.post_src = *net::Address::parse("2001:db8::2");
    six.dst = six.post_dst = *net::Address::parse("2001:db8::1");
    std::vector<FlowRecord> records{sample_v4(), six, six};
    ipfix::MessageEncoder enc(0, 1400);
    std::vector<uint8_t> out;
    REQUIRE(enc.encode(records, 5, false, out) == 3);
    // v4 set: 4 + 75 + 1 = 80; v6 set: 4 + 246 + 2 = 252; total 16 + 80 + 252 = 348
    REQUIRE(out.size() == 348);
    CHECK(out[16] == 0x01);
    CHECK(out[17] == 0x00);
    CHECK(out[19] == 80);
    CHECK(out[96] == 0x01);
    CHECK(out[97] == 0x01);
    CHECK((out[98] << 8 | out[99]) == 252);
    CHECK(out[96 + 4] == 0x20);  // 2001:db8::2 begins the first IPv6 record
    CHECK(out[96 + 5] == 0x01);
    CHECK(out[346] == 0);  // padding
    CHECK(out[347] == 0);
}

TEST_CASE("a message stops at the byte budget and the next one continues", "[ipfix]") {
    ipfix::MessageEncoder enc(0, 1472);  // a 1500-byte IPv4 path
    std::vector<FlowRecord> records(100, sample_v4());
    std::vector<uint8_t> out;
    // 16 + 164 + 4 = 184 before records; (1472 - 184) / 75 = 17 records -> 184 + 1275 = 1459, padded 1460
    REQUIRE(enc.encode(records, 1, true, out) == 17);
    CHECK(out.size() == 1460);
    // without templates: (1472 - 20) / 75 = 19 records -> 20 + 1425 = 1445, padded 1448
    REQUIRE(enc.encode(std::span(records).subspan(17), 1, false, out) == 19);
    CHECK(out.size() == 1448);
    CHECK(std::vector<uint8_t>(out.begin() + 8, out.begin() + 12) == std::vector<uint8_t>{0, 0, 0, 17});
}

TEST_CASE("the budget is clamped to what the header can say and what one IPv6 record needs", "[ipfix]") {
    CHECK(ipfix::MessageEncoder(0, 10).max_message_bytes() == ipfix::kMinMessageBytes);
    CHECK(ipfix::MessageEncoder(0, 1 << 20).max_message_bytes() == 65535);
    FlowRecord six = sample_v4();
    six.family = net::Family::V6;
    ipfix::MessageEncoder enc(0, 0);
    std::vector<FlowRecord> one{six};
    std::vector<uint8_t> out;
    CHECK(enc.encode(one, 0, true, out) == 1);
    CHECK(out.size() <= ipfix::kMinMessageBytes);
}
