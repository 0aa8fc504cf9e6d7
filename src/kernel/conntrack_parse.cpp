#include "conntrack_parse.hpp"

#include <arpa/inet.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <sys/socket.h>

#include <cstring>

namespace flowshaper::kernel {
namespace {

// The attributes in [begin, end), each handed to `fn(type, payload, payload_len)`. Returns false
// when an attribute header is inconsistent.
template <typename Fn>
bool for_each_attr(const uint8_t* begin, const uint8_t* end, Fn&& fn) {
    const uint8_t* p = begin;
    while (end - p >= static_cast<ptrdiff_t>(NLA_HDRLEN)) {
        nlattr a;
        std::memcpy(&a, p, sizeof a);
        if (a.nla_len < NLA_HDRLEN || a.nla_len > end - p) return false;
        fn(a.nla_type & NLA_TYPE_MASK, p + NLA_HDRLEN, static_cast<size_t>(a.nla_len - NLA_HDRLEN));
        p += NLA_ALIGN(a.nla_len);
    }
    return true;
}

uint16_t be16(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, sizeof v);
    return ntohs(v);
}

uint32_t be32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return ntohl(v);
}

uint64_t be64(const uint8_t* p) {
    return (uint64_t{be32(p)} << 32) | be32(p + 4);
}

void copy_address(net::Address& to, net::Family family, const uint8_t* p, size_t len) {
    to.family = family;
    if (len >= static_cast<size_t>(to.byte_width())) std::memcpy(to.bytes.data(), p, to.byte_width());
}

// One tuple's addresses and ports (the original or the reply tuple); l4proto when given.
struct TupleFields {
    net::Address& src;
    net::Address& dst;
    uint16_t& sport;
    uint16_t& dport;
    uint8_t* l4proto;
};

bool parse_tuple(const uint8_t* p, size_t len, net::Family family, const TupleFields& out) {
    return for_each_attr(p, p + len, [&](int type, const uint8_t* v, size_t n) {
        if (type == CTA_TUPLE_IP) {
            for_each_attr(v, v + n, [&](int t, const uint8_t* a, size_t an) {
                if (t == CTA_IP_V4_SRC || t == CTA_IP_V6_SRC) copy_address(out.src, family, a, an);
                if (t == CTA_IP_V4_DST || t == CTA_IP_V6_DST) copy_address(out.dst, family, a, an);
            });
        } else if (type == CTA_TUPLE_PROTO) {
            for_each_attr(v, v + n, [&](int t, const uint8_t* a, size_t an) {
                if (t == CTA_PROTO_NUM && an >= 1 && out.l4proto) *out.l4proto = a[0];
                if (t == CTA_PROTO_SRC_PORT && an >= 2) out.sport = be16(a);
                if (t == CTA_PROTO_DST_PORT && an >= 2) out.dport = be16(a);
            });
        }
    });
}

void parse_timestamps(const uint8_t* p, size_t len, FlowSample& out) {
    for_each_attr(p, p + len, [&](int type, const uint8_t* v, size_t n) {
        if (type == CTA_TIMESTAMP_START && n >= 8) out.start_ns = be64(v);
        if (type == CTA_TIMESTAMP_STOP && n >= 8) out.stop_ns = be64(v);
    });
}

void parse_counters(const uint8_t* p, size_t len, uint64_t& bytes, uint64_t& packets) {
    for_each_attr(p, p + len, [&](int type, const uint8_t* v, size_t n) {
        if (type == CTA_COUNTERS_BYTES && n >= 8) bytes = be64(v);
        if (type == CTA_COUNTERS_PACKETS && n >= 8) packets = be64(v);
        if (type == CTA_COUNTERS32_BYTES && n >= 4) bytes = be32(v);
        if (type == CTA_COUNTERS32_PACKETS && n >= 4) packets = be32(v);
    });
}

}  // namespace

CtMessageKind conntrack_message_kind(const nlmsghdr* nlh) {
    if ((nlh->nlmsg_type >> 8) != NFNL_SUBSYS_CTNETLINK) return CtMessageKind::Other;
    switch (nlh->nlmsg_type & 0xff) {
        case IPCTNL_MSG_CT_NEW:
            return (nlh->nlmsg_flags & (NLM_F_CREATE | NLM_F_EXCL)) ? CtMessageKind::New
                                                                    : CtMessageKind::Update;
        case IPCTNL_MSG_CT_DELETE:
            return CtMessageKind::Destroy;
        default:
            return CtMessageKind::Other;
    }
}

bool parse_conntrack_message(const nlmsghdr* nlh, FlowSample& out, bool* assured) {
    constexpr size_t kAttrOffset = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg));
    if (nlh->nlmsg_len < kAttrOffset || (nlh->nlmsg_type >> 8) != NFNL_SUBSYS_CTNETLINK) return false;
    const auto* base = reinterpret_cast<const uint8_t*>(nlh);
    nfgenmsg gen;
    std::memcpy(&gen, base + NLMSG_HDRLEN, sizeof gen);
    if (gen.nfgen_family != AF_INET && gen.nfgen_family != AF_INET6) return false;

    out = FlowSample{};
    out.family = gen.nfgen_family == AF_INET ? net::Family::V4 : net::Family::V6;
    out.orig_src.family = out.orig_dst.family = out.family;
    out.reply_src.family = out.reply_dst.family = out.family;
    bool tuple_ok = false;
    uint32_t status = 0;
    bool attrs_ok =
        for_each_attr(base + kAttrOffset, base + nlh->nlmsg_len, [&](int type, const uint8_t* v, size_t n) {
            switch (type) {
                case CTA_TUPLE_ORIG:
                    tuple_ok = parse_tuple(
                        v, n, out.family,
                        {out.orig_src, out.orig_dst, out.orig_sport, out.orig_dport, &out.l4proto});
                    break;
                case CTA_TUPLE_REPLY:
                    parse_tuple(v, n, out.family,
                                {out.reply_src, out.reply_dst, out.reply_sport, out.reply_dport, nullptr});
                    break;
                case CTA_TIMESTAMP:
                    parse_timestamps(v, n, out);
                    break;
                case CTA_COUNTERS_ORIG:
                    parse_counters(v, n, out.orig_bytes, out.orig_packets);
                    break;
                case CTA_COUNTERS_REPLY:
                    parse_counters(v, n, out.reply_bytes, out.reply_packets);
                    break;
                case CTA_MARK:
                    if (n >= 4) out.mark = be32(v);
                    break;
                case CTA_ID:
                    if (n >= 4) out.id = be32(v);
                    break;
                case CTA_STATUS:
                    if (n >= 4) status = be32(v);
                    break;
                default:
                    break;
            }
        });
    if (assured) *assured = (status & IPS_ASSURED) != 0;
    return attrs_ok && tuple_ok;
}

}  // namespace flowshaper::kernel
