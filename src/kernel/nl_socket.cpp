#include "nl_socket.hpp"

#include <linux/rtnetlink.h>
#include <netlink/errno.h>

#include <cerrno>
#include <cstring>

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

int nle_to_errno(int nle) {
    switch (nle < 0 ? -nle : nle) {
        case NLE_SUCCESS:
            return 0;
        case NLE_INTR:
            return EINTR;
        case NLE_BAD_SOCK:
            return EBADF;
        case NLE_AGAIN:
            return EAGAIN;
        case NLE_NOMEM:
            return ENOMEM;
        case NLE_EXIST:
            return EEXIST;
        case NLE_INVAL:
            return EINVAL;
        case NLE_RANGE:
            return ERANGE;
        case NLE_MSGSIZE:
            return EMSGSIZE;
        case NLE_OPNOTSUPP:
            return EOPNOTSUPP;
        case NLE_AF_NOSUPPORT:
            return EAFNOSUPPORT;
        case NLE_OBJ_NOTFOUND:
            return ENOENT;
        case NLE_NOATTR:
            return ENOENT;
        case NLE_MISSING_ATTR:
            return EINVAL;
        case NLE_AF_MISMATCH:
            return EAFNOSUPPORT;
        case NLE_SEQ_MISMATCH:
            return EPROTO;
        case NLE_MSG_OVERFLOW:
            return EOVERFLOW;
        case NLE_MSG_TRUNC:
            return EMSGSIZE;
        case NLE_NOADDR:
            return EADDRNOTAVAIL;
        case NLE_SRCRT_NOSUPPORT:
            return EOPNOTSUPP;
        case NLE_MSG_TOOSHORT:
            return EPROTO;
        case NLE_MSGTYPE_NOSUPPORT:
            return EOPNOTSUPP;
        case NLE_OBJ_MISMATCH:
            return EINVAL;
        case NLE_NOCACHE:
            return ENOENT;
        case NLE_BUSY:
            return EBUSY;
        case NLE_PROTO_MISMATCH:
            return EPROTONOSUPPORT;
        case NLE_NOACCESS:
            return EACCES;
        case NLE_PERM:
            return EPERM;
        case NLE_PKTLOC_FILE:
            return ENOENT;
        case NLE_PARSE_ERR:
            return EPROTO;
        case NLE_NODEV:
            return ENODEV;
        case NLE_IMMUTABLE:
            return EPERM;
        case NLE_DUMP_INTR:
            return EINTR;
        case NLE_ATTRSIZE:
            return ERANGE;
        default:
            return EIO;
    }
}

Error kernel_error(std::string operation, std::string object, int err, ObjectKind kind, bool removing) {
    return make_error(std::move(operation), std::move(object), err, errno_detail(err, kind, removing));
}

Result<std::unique_ptr<NlSocket>> NlSocket::open() {
    SockPtr sock(nl_socket_alloc());
    if (!sock) return make_error("open netlink socket", "NETLINK_ROUTE", ENOMEM, std::strerror(ENOMEM));
    if (int err = nl_connect(sock.get(), NETLINK_ROUTE); err < 0)
        return make_error("open netlink socket", "NETLINK_ROUTE", nle_to_errno(err), nl_geterror(err));
    if (int err = nl_socket_set_buffer_size(sock.get(), kSocketBufferBytes, kSocketBufferBytes); err < 0)
        return make_error("size netlink socket buffers", "NETLINK_ROUTE", nle_to_errno(err),
                          nl_geterror(err));
    // No MSG_PEEK round trip per message: a receive buffer large enough for the kernel's
    // biggest dump batch (it fills at most what the reader offers, 32 KiB) instead.
    nl_socket_disable_msg_peek(sock.get());
    if (int err = nl_socket_set_msg_buf_size(sock.get(), kMessageBufferBytes); err < 0)
        return make_error("size netlink message buffer", "NETLINK_ROUTE", nle_to_errno(err),
                          nl_geterror(err));
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
    return last_errno_ != 0 ? last_errno_ : nle_to_errno(err);
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
    return last_errno_ != 0 ? last_errno_ : nle_to_errno(err);
}

}  // namespace flowshaper::kernel::detail
