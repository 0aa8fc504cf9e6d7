#include "nl_socket.hpp"

#include <linux/rtnetlink.h>
#include <netlink/errno.h>

#include <cerrno>
#include <cstring>
#include <iterator>

namespace flowshaper::kernel::detail {

namespace {

const char* hint_for(int err, ObjectKind kind, bool removing) {
    switch (err) {
        case EBUSY:
            if (kind == ObjectKind::Class && removing) return "still referenced by a filter or child class";
            if (kind == ObjectKind::U32 && removing) return "a link node still points at this hash table";
            return "the object is in use";
        case ENOENT:
            if (kind == ObjectKind::Fw || kind == ObjectKind::Leaf)
                return "no such object / kind not available in this kernel";
            if (kind == ObjectKind::Class && !removing)
                return "no such object / parent class or qdisc missing";
            return "no such object / kind not available";
        case EEXIST:
            return "already exists";
        case EINVAL:
            if (kind == ObjectKind::U32)
                return "invalid u32 node: its hash table, bucket or handle does not fit what the kernel has";
            if (kind == ObjectKind::Leaf) return "invalid leaf qdisc: the parent class must be a leaf class";
            return "invalid parameters for this kind";
        case EPERM:
        case EACCES:
            return "needs CAP_NET_ADMIN";
        case ENODEV:
            return "no such device";
        case EOPNOTSUPP:
            return "not supported by this kernel or kind";
        case ENOSPC:
            return "no free handle in that hash table bucket";
        case ENOMEM:
        case ENOBUFS:
            return "out of kernel memory or netlink buffer space";
        default:
            return nullptr;
    }
}

}  // namespace

std::string errno_detail(int err, ObjectKind kind, bool removing) {
    std::string text = std::strerror(err);
    if (const char* hint = hint_for(err, kind, removing)) text += std::string(" (") + hint + ")";
    return text;
}

namespace {

struct NleErrno {
    int nle;
    int err;
};

// Every code of libnl 3.7's netlink/errno.h, in order. Where libnl turns an errno into its own code
// (nl_syserr2nlerr), the errno is the one it came from; the rest say what the libnl text says.
constexpr NleErrno kNleErrno[] = {
    {NLE_SUCCESS, 0},
    {NLE_FAILURE, EIO},  // "Unspecific failure"
    {NLE_INTR, EINTR},
    {NLE_BAD_SOCK, EBADF},
    {NLE_AGAIN, EAGAIN},
    {NLE_NOMEM, ENOMEM},  // also ENOBUFS: a netlink socket buffer overrun
    {NLE_EXIST, EEXIST},
    {NLE_INVAL, EINVAL},
    {NLE_RANGE, ERANGE},
    {NLE_MSGSIZE, EMSGSIZE},
    {NLE_OPNOTSUPP, EOPNOTSUPP},
    {NLE_AF_NOSUPPORT, EAFNOSUPPORT},
    {NLE_OBJ_NOTFOUND, ENOENT},
    {NLE_NOATTR, ENODATA},            // "Attribute not available"
    {NLE_MISSING_ATTR, EINVAL},       // "Missing attribute": an incomplete request
    {NLE_AF_MISMATCH, EAFNOSUPPORT},  // "Address family mismatch"
    {NLE_SEQ_MISMATCH, EPROTO},       // "Message sequence number mismatch"
    {NLE_MSG_OVERFLOW, ENOBUFS},      // "Kernel reported message overflow"
    {NLE_MSG_TRUNC, EMSGSIZE},        // "Kernel reported truncated message"
    {NLE_NOADDR, EADDRNOTAVAIL},
    {NLE_SRCRT_NOSUPPORT, EOPNOTSUPP},    // "Source based routing not supported"
    {NLE_MSG_TOOSHORT, EBADMSG},          // "Netlink message is too short"
    {NLE_MSGTYPE_NOSUPPORT, EOPNOTSUPP},  // "Netlink message type is not supported"
    {NLE_OBJ_MISMATCH, EINVAL},           // "Object type does not match cache"
    {NLE_NOCACHE, ENOENT},                // "Unknown or invalid cache type"
    {NLE_BUSY, EBUSY},
    {NLE_PROTO_MISMATCH, EPROTONOSUPPORT},
    {NLE_NOACCESS, EACCES},
    {NLE_PERM, EPERM},
    {NLE_PKTLOC_FILE, ENOENT},  // "Unable to open packet location file"
    {NLE_PARSE_ERR, EBADMSG},   // "Unable to parse object"
    {NLE_NODEV, ENODEV},
    {NLE_IMMUTABLE, EINVAL},  // "Immutable attribute": not a permission problem
    {NLE_DUMP_INTR, EINTR},   // "Dump inconsistency detected, interrupted": retry
    {NLE_ATTRSIZE, ERANGE},   // "Attribute max length exceeded"
};

constexpr bool in_order() {
    for (size_t i = 0; i < std::size(kNleErrno); ++i)
        if (kNleErrno[i].nle != static_cast<int>(i)) return false;
    return true;
}
static_assert(std::size(kNleErrno) == NLE_MAX + 1, "a libnl error code without an errno: extend kNleErrno");
static_assert(in_order(), "kNleErrno is indexed by the NLE_* code");

}  // namespace

int nle_to_errno(int nle) {
    int code = nle < 0 ? -nle : nle;
    if (code > NLE_MAX) return EIO;
    return kNleErrno[code].err;
}

Error libnl_error(std::string operation, std::string object, int nle, ObjectKind kind, bool removing) {
    int err = nle_to_errno(nle);
    std::string detail = errno_detail(err, kind, removing);
    detail += std::string(" [libnl: ") + nl_geterror(nle < 0 ? -nle : nle) + "]";
    return make_error(std::move(operation), std::move(object), err, std::move(detail));
}

Error kernel_error(std::string operation, std::string object, int err, ObjectKind kind, bool removing) {
    return make_error(std::move(operation), std::move(object), err, errno_detail(err, kind, removing));
}

Result<std::unique_ptr<NlSocket>> NlSocket::open() {
    SockPtr sock(nl_socket_alloc());
    if (!sock) return make_error("open netlink socket", "NETLINK_ROUTE", ENOMEM, std::strerror(ENOMEM));
    if (int err = nl_connect(sock.get(), NETLINK_ROUTE); err < 0)
        return libnl_error("open netlink socket", "NETLINK_ROUTE", err);
    if (int err = nl_socket_set_buffer_size(sock.get(), kSocketBufferBytes, kSocketBufferBytes); err < 0)
        return libnl_error("size netlink socket buffers", "NETLINK_ROUTE", err);
    // No MSG_PEEK round trip per message: a receive buffer large enough for the kernel's
    // biggest dump batch (it fills at most what the reader offers, 32 KiB) instead.
    nl_socket_disable_msg_peek(sock.get());
    if (int err = nl_socket_set_msg_buf_size(sock.get(), kMessageBufferBytes); err < 0)
        return libnl_error("size netlink message buffer", "NETLINK_ROUTE", err);
    std::unique_ptr<NlSocket> self(new NlSocket(std::move(sock)));
    // Every request of this socket keeps the kernel's errno (libnl only returns its own codes).
    nl_socket_modify_err_cb(self->get(), NL_CB_CUSTOM, &NlSocket::on_error, self.get());
    return self;
}

int NlSocket::on_error(sockaddr_nl*, nlmsgerr* err, void* self) {
    static_cast<NlSocket*>(self)->last_errno_ = -err->error;
    return -nl_syserr2nlerr(err->error);
}

int NlSocket::send_sync(MsgPtr msg) {
    last_errno_ = 0;
    int err = nl_send_sync(sock_.get(), msg.release());
    if (err >= 0) return 0;
    return errno_for(err);
}

namespace {

struct DumpContext {
    const std::function<void(nlmsghdr*)>* each;
};

int on_dump_message(nl_msg* msg, void* arg) {
    (*static_cast<DumpContext*>(arg)->each)(nlmsg_hdr(msg));
    return NL_OK;
}

}  // namespace

int NlSocket::dump_tc(int rtm_type, int ifindex, uint32_t parent,
                      const std::function<void(nlmsghdr*)>& each) {
    last_errno_ = 0;
    tcmsg request{};
    request.tcm_family = AF_UNSPEC;
    request.tcm_ifindex = ifindex;
    request.tcm_parent = parent;
    if (int err = nl_send_simple(sock_.get(), rtm_type, NLM_F_DUMP, &request, sizeof request); err < 0)
        return nle_to_errno(err);
    // nl_socket_get_cb takes a reference: the clone is ours, the socket's callbacks are released.
    nl_cb* base = nl_socket_get_cb(sock_.get());
    std::unique_ptr<nl_cb, NlFree<nl_cb_put>> cb(nl_cb_clone(base));
    nl_cb_put(base);
    if (!cb) return ENOMEM;
    DumpContext context{&each};
    nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, on_dump_message, &context);
    int err = nl_recvmsgs(sock_.get(), cb.get());
    if (err >= 0) return 0;
    return errno_for(err);
}

}  // namespace flowshaper::kernel::detail
