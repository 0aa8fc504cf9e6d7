// Internal to the kernel module: RAII over libnl handles, the one NETLINK_ROUTE socket of the tc
// port (synchronous request/ACK, errno kept), and the mapping of errno to actionable text.
#pragma once

#include <netlink/cache.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/class.h>
#include <netlink/route/classifier.h>
#include <netlink/route/link.h>
#include <netlink/route/qdisc.h>
#include <netlink/socket.h>

#include <functional>
#include <memory>
#include <string>

#include "flowshaper/common/result.hpp"

namespace flowshaper::kernel::detail {

template <auto Free>
struct NlFree {
    template <typename T>
    void operator()(T* p) const {
        Free(p);
    }
};

using SockPtr = std::unique_ptr<nl_sock, NlFree<nl_socket_free>>;
using CachePtr = std::unique_ptr<nl_cache, NlFree<nl_cache_free>>;
using MsgPtr = std::unique_ptr<nl_msg, NlFree<nlmsg_free>>;
using QdiscPtr = std::unique_ptr<rtnl_qdisc, NlFree<rtnl_qdisc_put>>;
using ClassPtr = std::unique_ptr<rtnl_class, NlFree<rtnl_class_put>>;
using ClsPtr = std::unique_ptr<rtnl_cls, NlFree<rtnl_cls_put>>;
using LinkPtr = std::unique_ptr<rtnl_link, NlFree<rtnl_link_put>>;

// What kind of object an error is about: the same errno means different things for each.
enum class ObjectKind { Device, RootQdisc, Class, Leaf, U32, Fw };

// "Device or resource busy (still referenced by a filter or child class)"
std::string errno_detail(int err, ObjectKind kind, bool removing);

// The errno for a libnl error code (NLE_*, negative as libnl returns it, or positive): the one
// mapping of every code of libnl 3.7's netlink/errno.h (unknown codes: EIO). Only NLE_PERM and
// NLE_NOACCESS become EPERM / EACCES. Never store -nle where an errno is expected: NLE_PERM is 28,
// which as an errno reads ENOSPC.
int nle_to_errno(int nle);

// Error for a libnl call that failed with `nle`: Error::code is nle_to_errno(nle), the detail its
// text with the hint for `kind` (EPERM: "needs CAP_NET_ADMIN") and libnl's own words.
Error libnl_error(std::string operation, std::string object, int nle, ObjectKind kind = ObjectKind::Device,
                  bool removing = false);

// Error for a failed kernel request: keeps the errno in Error::code.
Error kernel_error(std::string operation, std::string object, int err, ObjectKind kind, bool removing);

// Receive and send buffers of the socket: large enough for a dump of thousands of classes and for
// one request at a time (the port never has more than one request in flight).
inline constexpr int kSocketBufferBytes = 1 << 20;
// What one recvmsg() offers: the kernel sizes dump batches to the reader (32 KiB at most).
inline constexpr size_t kMessageBufferBytes = 64 * 1024;

class NlSocket {
public:
    // Connects one NETLINK_ROUTE socket in the calling thread's network namespace.
    static Result<std::unique_ptr<NlSocket>> open();

    nl_sock* get() const { return sock_.get(); }

    // Sends one request and waits for its ACK. Returns 0 or the (positive) errno.
    int send_sync(MsgPtr msg);

    // Dumps RTM_GET{QDISC,TCLASS,TFILTER} of one device (and one parent, 0 for all) and calls
    // `each` with every message. Returns 0 or the errno.
    int dump_tc(int rtm_type, int ifindex, uint32_t parent, const std::function<void(nlmsghdr*)>& each);

    // The errno of the last error ACK (0 when the last failure was local to libnl).
    int last_errno() const { return last_errno_; }
    // The errno of a failed libnl call on this socket that returned `nle`: the kernel's own errno
    // when an error ACK arrived since reset_errno(), else nle_to_errno(nle).
    int errno_for(int nle) const { return last_errno_ != 0 ? last_errno_ : nle_to_errno(nle); }
    void reset_errno() { last_errno_ = 0; }

private:
    explicit NlSocket(SockPtr sock) : sock_(std::move(sock)) {}
    static int on_error(sockaddr_nl* addr, nlmsgerr* err, void* self);

    SockPtr sock_;
    int last_errno_ = 0;
};

}  // namespace flowshaper::kernel::detail
