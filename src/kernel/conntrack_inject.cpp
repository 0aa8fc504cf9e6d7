#include "conntrack_inject.hpp"

#include <arpa/inet.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack_tcp.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace flowshaper::kernel {
namespace {

struct NfctClose {
    void operator()(nfct_handle* h) const { nfct_close(h); }
};
struct CtDestroy {
    void operator()(nf_conntrack* ct) const { nfct_destroy(ct); }
};

net::Address plus(net::Address a, uint32_t n) {
    size_t last = static_cast<size_t>(a.byte_width()) - 4;
    uint32_t low = (uint32_t{a.bytes[last]} << 24) | (uint32_t{a.bytes[last + 1]} << 16) |
                   (uint32_t{a.bytes[last + 2]} << 8) | a.bytes[last + 3];
    low += n;
    for (int i = 0; i < 4; ++i) a.bytes[last + i] = static_cast<uint8_t>(low >> (24 - 8 * i));
    return a;
}

}  // namespace

Status insert_synthetic_flows(const SyntheticFlows& spec) {
    std::unique_ptr<nfct_handle, NfctClose> h(nfct_open(CONNTRACK, 0));
    if (!h) return make_error("insert conntrack entries", "socket", errno, std::strerror(errno));
    std::unique_ptr<nf_conntrack, CtDestroy> ct(nfct_new());
    bool v4 = spec.dst.family == net::Family::V4;
    for (uint32_t i = 0; i < spec.count; ++i) {
        net::Address src = plus(spec.first_src, i);
        nfct_set_attr_u8(ct.get(), ATTR_L3PROTO, v4 ? AF_INET : AF_INET6);
        nfct_set_attr(ct.get(), v4 ? ATTR_IPV4_SRC : ATTR_IPV6_SRC, src.bytes.data());
        nfct_set_attr(ct.get(), v4 ? ATTR_IPV4_DST : ATTR_IPV6_DST, spec.dst.bytes.data());
        nfct_set_attr_u8(ct.get(), ATTR_L4PROTO, IPPROTO_TCP);
        nfct_set_attr_u16(ct.get(), ATTR_PORT_SRC, htons(static_cast<uint16_t>(1024 + i % 60000)));
        nfct_set_attr_u16(ct.get(), ATTR_PORT_DST, htons(spec.dport));
        nfct_setobjopt(ct.get(), NFCT_SOPT_SETUP_REPLY);
        nfct_set_attr_u8(ct.get(), ATTR_TCP_STATE, TCP_CONNTRACK_ESTABLISHED);
        nfct_set_attr_u32(ct.get(), ATTR_STATUS, IPS_SEEN_REPLY | IPS_ASSURED);
        nfct_set_attr_u32(ct.get(), ATTR_TIMEOUT, spec.timeout_s);
        if (spec.mark != 0) nfct_set_attr_u32(ct.get(), ATTR_MARK, spec.mark);
        if (nfct_query(h.get(), NFCT_Q_CREATE, ct.get()) < 0) {
            int err = errno;
            return make_error("insert conntrack entry", src.str(), err, std::strerror(err));
        }
    }
    return {};
}

}  // namespace flowshaper::kernel
