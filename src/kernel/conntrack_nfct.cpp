// NfctConntrackPort: the ConntrackPort over libnetfilter_conntrack. Three sockets, one per job:
// dumps, ctmark updates (never sent from inside a dump) and NEW/DESTROY events.
#include <arpa/inet.h>
#include <fcntl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "conntrack_parse.hpp"
#include "conntrack_replies.hpp"
#include "flowshaper/kernel/conntrack_port.hpp"

namespace flowshaper::kernel {
namespace {

struct NfctClose {
    void operator()(nfct_handle* h) const { nfct_close(h); }
};
struct CtDestroy {
    void operator()(nf_conntrack* ct) const { nfct_destroy(ct); }
};
struct FilterDestroy {
    void operator()(nfct_filter_dump* f) const { nfct_filter_dump_destroy(f); }
};
using HandlePtr = std::unique_ptr<nfct_handle, NfctClose>;
using CtPtr = std::unique_ptr<nf_conntrack, CtDestroy>;
using FilterPtr = std::unique_ptr<nfct_filter_dump, FilterDestroy>;

// The kernel fills at most 32 KiB per read of a dump; events are single small messages.
constexpr size_t kRecvBufBytes = 64 * 1024;
// Bounds one drain_events() call, so a flood cannot starve the caller's event loop.
constexpr int kMaxEventReads = 4096;

using detail::read_netlink_once;
using detail::read_netlink_replies;

// libnetfilter_conntrack and libnfnetlink fail with -1 (or NULL) and errno: the errno is read
// right after the call, before anything else can change it.
Error errno_error(const char* operation, const std::string& object, int err) {
    return detail::conntrack_error(operation, object, err);
}

Result<HandlePtr> open_handle(unsigned groups, const char* what) {
    errno = 0;
    HandlePtr h(nfct_open(CONNTRACK, groups));
    if (!h) return errno_error("open conntrack netlink socket", what, errno);
    return h;
}

bool has_ports(uint8_t l4proto) {
    return l4proto == IPPROTO_TCP || l4proto == IPPROTO_UDP || l4proto == IPPROTO_SCTP ||
           l4proto == IPPROTO_DCCP || l4proto == IPPROTO_UDPLITE;
}

std::string tuple_text(const FlowSample& f) {
    return std::to_string(f.l4proto) + " " + f.orig_src.str() + ":" + std::to_string(f.orig_sport) + " -> " +
           f.orig_dst.str() + ":" + std::to_string(f.orig_dport);
}

// The original tuple of `flow` as a libnetfilter_conntrack object (what identifies the entry).
CtPtr tuple_object(const FlowSample& flow) {
    CtPtr ct(nfct_new());
    if (!ct) return ct;
    bool v4 = flow.family == net::Family::V4;
    nfct_set_attr_u8(ct.get(), ATTR_L3PROTO, v4 ? AF_INET : AF_INET6);
    nfct_set_attr(ct.get(), v4 ? ATTR_IPV4_SRC : ATTR_IPV6_SRC, flow.orig_src.bytes.data());
    nfct_set_attr(ct.get(), v4 ? ATTR_IPV4_DST : ATTR_IPV6_DST, flow.orig_dst.bytes.data());
    nfct_set_attr_u8(ct.get(), ATTR_L4PROTO, flow.l4proto);
    nfct_set_attr_u16(ct.get(), ATTR_PORT_SRC, htons(flow.orig_sport));
    nfct_set_attr_u16(ct.get(), ATTR_PORT_DST, htons(flow.orig_dport));
    return ct;
}

void append_u32_attr(nlmsghdr* nlh, uint16_t type, uint32_t host_value) {
    auto* attr = reinterpret_cast<nlattr*>(reinterpret_cast<uint8_t*>(nlh) + NLMSG_ALIGN(nlh->nlmsg_len));
    attr->nla_type = type;
    attr->nla_len = NLA_HDRLEN + sizeof(uint32_t);
    uint32_t be = htonl(host_value);
    std::memcpy(reinterpret_cast<uint8_t*>(attr) + NLA_HDRLEN, &be, sizeof be);
    nlh->nlmsg_len = NLMSG_ALIGN(nlh->nlmsg_len) + NLA_ALIGN(attr->nla_len);
}

class NfctConntrackPort final : public ConntrackPort {
public:
    NfctConntrackPort(HandlePtr dump, HandlePtr update, HandlePtr events)
        : dump_(std::move(dump)),
          update_(std::move(update)),
          events_(std::move(events)),
          buf_(kRecvBufBytes) {}

    Status dump(const DumpFilter& filter, const FlowSink& sink) override;
    Status set_mark(const FlowSample& flow, uint32_t value, uint32_t mask) override;
    int event_fd() override { return events_ ? nfct_fd(events_.get()) : -1; }
    Result<bool> drain_events(const EventSink& sink) override;

private:
    Status send_dump_request(const DumpFilter& filter);

    HandlePtr dump_, update_, events_;
    std::vector<uint8_t> buf_;
};

Status NfctConntrackPort::send_dump_request(const DumpFilter& filter) {
    int rc;
    if (filter.empty()) {
        uint32_t family = AF_UNSPEC;
        rc = nfct_send(dump_.get(), NFCT_Q_DUMP, &family);
    } else {
        FilterPtr f(nfct_filter_dump_create());
        if (!f) return errno_error("dump conntrack", "filter", ENOMEM);
        if (filter.family)
            nfct_filter_dump_set_attr_u8(f.get(), NFCT_FILTER_DUMP_L3NUM,
                                         *filter.family == net::Family::V4 ? AF_INET : AF_INET6);
        if (filter.mark) {
            nfct_filter_dump_mark m{filter.mark->value, filter.mark->mask};
            nfct_filter_dump_set_attr(f.get(), NFCT_FILTER_DUMP_MARK, &m);
        }
        if (filter.assured_only) {
            nfct_filter_dump_mark s{IPS_ASSURED, IPS_ASSURED};
            nfct_filter_dump_set_attr(f.get(), NFCT_FILTER_DUMP_STATUS, &s);
        }
        rc = nfct_send(dump_.get(), NFCT_Q_DUMP_FILTER, f.get());
    }
    if (rc < 0) return errno_error("dump conntrack", "request", errno);
    return {};
}

Status NfctConntrackPort::dump(const DumpFilter& filter, const FlowSink& sink) {
    if (Status s = send_dump_request(filter); !s) return s;
    FlowSample flow;
    Status s =
        read_netlink_replies(nfct_fd(dump_.get()), buf_, "dump conntrack", "table", [&](const nlmsghdr* nlh) {
            if (parse_conntrack_message(nlh, flow)) sink(flow);
        });
    if (!s) {
        // The rest of the interrupted dump may still be queued: start over on a fresh socket.
        auto fresh = open_handle(0, "dump");
        if (fresh) dump_ = std::move(*fresh);
    }
    return s;
}

Status NfctConntrackPort::set_mark(const FlowSample& flow, uint32_t value, uint32_t mask) {
    const std::string object = tuple_text(flow);
    if (!has_ports(flow.l4proto)) return errno_error("set ctmark", object, EPROTONOSUPPORT);
    CtPtr ct = tuple_object(flow);
    if (!ct) return errno_error("set ctmark", object, ENOMEM);
    nfct_set_attr_u32(ct.get(), ATTR_MARK, value & mask);

    alignas(nlmsghdr) uint8_t req[1024] = {};
    auto* nlh = reinterpret_cast<nlmsghdr*>(req);
    nlh->nlmsg_len = NLMSG_LENGTH(sizeof(nfgenmsg));
    nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;  // NEW without CREATE: update
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    auto* gen = static_cast<nfgenmsg*>(NLMSG_DATA(nlh));
    gen->nfgen_family = flow.family == net::Family::V4 ? AF_INET : AF_INET6;
    gen->version = NFNETLINK_V0;
    if (nfct_nlmsg_build(nlh, ct.get()) < 0) return errno_error("set ctmark", object, errno);
    // The kernel computes (mark & ~mask) ^ value itself: no read-modify-write race with others.
    append_u32_attr(nlh, CTA_MARK_MASK, mask);

    int fd = nfct_fd(update_.get());
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (sendto(fd, req, nlh->nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
        return errno_error("set ctmark", object, errno);
    return read_netlink_replies(fd, buf_, "set ctmark", object, [](const nlmsghdr*) {});
}

Result<bool> NfctConntrackPort::drain_events(const EventSink& sink) {
    if (!events_) return false;
    int fd = nfct_fd(events_.get());
    bool lost = false;
    FlowEvent event;
    for (int reads = 0; reads < kMaxEventReads; ++reads) {
        ssize_t n = read_netlink_once(fd, buf_, MSG_DONTWAIT);
        if (n == -ENOBUFS) {
            lost = true;  // the kernel dropped events; the socket keeps working
            continue;
        }
        if (n < 0) return errno_error("read conntrack events", "", static_cast<int>(-n));
        if (n == 0) break;
        size_t left = static_cast<size_t>(n);
        for (auto* nlh = reinterpret_cast<nlmsghdr*>(buf_.data()); NLMSG_OK(nlh, left);
             nlh = NLMSG_NEXT(nlh, left)) {
            CtMessageKind kind = conntrack_message_kind(nlh);
            if (kind != CtMessageKind::New && kind != CtMessageKind::Destroy) continue;
            if (!parse_conntrack_message(nlh, event.flow)) continue;
            event.type = kind == CtMessageKind::New ? FlowEventType::New : FlowEventType::Destroy;
            sink(event);
        }
    }
    return lost;
}

}  // namespace

Result<std::unique_ptr<ConntrackPort>> make_nfct_conntrack_port(const NfctOptions& options) {
    auto dump = open_handle(0, "dump");
    if (!dump) return dump.error();
    auto update = open_handle(0, "update");
    if (!update) return update.error();
    HandlePtr events;
    if (options.events) {
        auto ev = open_handle(NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_DESTROY, "events");
        if (!ev) return ev.error();
        events = std::move(*ev);
        nfnl_rcvbufsiz(nfct_nfnlh(events.get()), options.event_rcvbuf_bytes);
        int fd = nfct_fd(events.get());
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
            return errno_error("open conntrack netlink socket", "events", errno);
    }
    return std::unique_ptr<ConntrackPort>(
        new NfctConntrackPort(std::move(*dump), std::move(*update), std::move(events)));
}

}  // namespace flowshaper::kernel
