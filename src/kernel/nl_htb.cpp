// flowshaper's root htb qdisc, its classes and the leaf qdiscs below them, through libnl-route.
#include <linux/pkt_sched.h>
#include <netlink/route/qdisc/fifo.h>
#include <netlink/route/qdisc/fq_codel.h>
#include <netlink/route/qdisc/htb.h>
#include <netlink/route/qdisc/sfq.h>

#include <cerrno>
#include <cstring>

#include "nl_tc.hpp"

namespace flowshaper::kernel::detail {

using tc::Change;

namespace {

rtnl_tc* as_tc(rtnl_qdisc* q) {
    return TC_CAST(q);
}
rtnl_tc* as_tc(rtnl_class* c) {
    return TC_CAST(c);
}

std::string kind_of(rtnl_tc* tc) {
    const char* kind = rtnl_tc_get_kind(tc);
    return kind ? kind : "";
}

std::string object_name(const Target& t, tc::Handle h) {
    return t.device + " " + tc::format_handle(h);
}

std::string verb(Change::Op op, const std::string& what) {
    return (op == Change::Op::Add ? "create " : op == Change::Op::Modify ? "change " : "delete ") + what;
}

Result<CachePtr> qdisc_cache(const Target& t) {
    nl_cache* raw = nullptr;
    t.sock.reset_errno();
    if (int err = rtnl_qdisc_alloc_cache(t.sock.get(), &raw); err < 0)
        return kernel_error("read qdiscs", t.device, t.sock.errno_for(err), ObjectKind::RootQdisc, false);
    return CachePtr(raw);
}

// Sends a built request (or the libnl build error) and turns a failure into an Error.
Status send(const Target& t, int build_err, nl_msg* raw, const std::string& op, const std::string& object,
            ObjectKind kind, bool removing) {
    MsgPtr msg(raw);
    if (build_err < 0) return libnl_error(op, object, build_err, kind, removing);
    if (int err = t.sock.send_sync(std::move(msg)); err != 0)
        return kernel_error(op, object, err, kind, removing);
    return {};
}

int flags_for(Change::Op op, int add_flags) {
    return op == Change::Op::Add ? add_flags : 0;
}

}  // namespace

Result<tc::RootInfo> read_qdiscs(const Target& t, std::optional<tc::HtbQdisc>& ours,
                                 std::vector<tc::LeafQdisc>& below_ours) {
    auto cache = qdisc_cache(t);
    if (!cache) return cache.error();
    tc::RootInfo info;
    for (nl_object* o = nl_cache_get_first(cache->get()); o; o = nl_cache_get_next(o)) {
        auto* q = reinterpret_cast<rtnl_qdisc*>(o);
        if (rtnl_tc_get_ifindex(as_tc(q)) != t.ifindex) continue;
        uint32_t parent = rtnl_tc_get_parent(as_tc(q));
        uint32_t handle = rtnl_tc_get_handle(as_tc(q));
        std::string kind = kind_of(as_tc(q));
        if (parent == TC_H_ROOT) {
            info.kind = kind;
            info.handle = handle;
            if (kind == "htb" && tc::major_of(handle) == tc::kMajor && tc::minor_of(handle) == 0) {
                info.owner = tc::RootInfo::Owner::Ours;
                uint32_t defcls = rtnl_htb_get_defcls(q);
                ours = tc::HtbQdisc{handle, defcls ? tc::make_handle(tc::kMajor, tc::minor_of(defcls)) : 0,
                                    rtnl_htb_get_rate2quantum(q)};
            } else {
                info.owner = handle == 0 ? tc::RootInfo::Owner::KernelDefault : tc::RootInfo::Owner::Foreign;
            }
        } else if (tc::major_of(parent) == tc::kMajor && tc::minor_of(parent) != 0 && handle != 0) {
            tc::LeafQdisc leaf{parent, handle, kind, 0};
            if (kind == "pfifo")
                leaf.limit_packets = static_cast<uint32_t>(rtnl_qdisc_fifo_get_limit(q));
            else if (kind == "bfifo")
                leaf.limit_bytes = static_cast<uint32_t>(rtnl_qdisc_fifo_get_limit(q));
            else if (kind == "fq_codel")
                leaf.limit_packets = static_cast<uint32_t>(rtnl_qdisc_fq_codel_get_limit(q));
            else if (kind == "sfq")
                leaf.limit_packets = static_cast<uint32_t>(rtnl_sfq_get_limit(q));
            below_ours.push_back(std::move(leaf));
        }
    }
    return info;
}

Status read_classes(const Target& t, tc::DeviceState& state, std::vector<tc::ClassStats>& stats) {
    nl_cache* raw = nullptr;
    t.sock.reset_errno();
    if (int err = rtnl_class_alloc_cache(t.sock.get(), t.ifindex, &raw); err < 0)
        return kernel_error("read classes", t.device, t.sock.errno_for(err), ObjectKind::Class, false);
    CachePtr cache(raw);
    for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
        auto* c = reinterpret_cast<rtnl_class*>(o);
        uint32_t classid = rtnl_tc_get_handle(as_tc(c));
        if (kind_of(as_tc(c)) != "htb" || tc::major_of(classid) != tc::kMajor) continue;
        tc::HtbClass hc;
        hc.classid = classid;
        uint32_t parent = rtnl_tc_get_parent(as_tc(c));
        hc.parent = parent == TC_H_ROOT ? tc::kRootQdisc : parent;
        rtnl_htb_get_rate64(c, &hc.rate_bytes_per_s);
        rtnl_htb_get_ceil64(c, &hc.ceil_bytes_per_s);
        hc.burst_bytes = rtnl_htb_get_rbuffer(c);
        hc.cburst_bytes = rtnl_htb_get_cbuffer(c);
        hc.quantum_bytes = rtnl_htb_get_quantum(c);
        hc.prio = rtnl_htb_get_prio(c);
        state.classes.push_back(hc);
        tc::ClassStats st;
        st.classid = classid;
        st.bytes = rtnl_tc_get_stat(as_tc(c), RTNL_TC_BYTES);
        st.packets = rtnl_tc_get_stat(as_tc(c), RTNL_TC_PACKETS);
        st.drops = rtnl_tc_get_stat(as_tc(c), RTNL_TC_DROPS);
        st.overlimits = rtnl_tc_get_stat(as_tc(c), RTNL_TC_OVERLIMITS);
        st.rate_bytes_per_s = rtnl_tc_get_stat(as_tc(c), RTNL_TC_RATE_BPS);
        st.backlog_bytes = static_cast<uint32_t>(rtnl_tc_get_stat(as_tc(c), RTNL_TC_BACKLOG));
        stats.push_back(st);
    }
    return {};
}

Status apply_root(const Target& t, Change::Op op, const tc::HtbQdisc& q) {
    std::string object = object_name(t, q.handle);
    std::string what = verb(op, "root qdisc htb");
    if (op == Change::Op::Modify)
        return make_error(what, object, EOPNOTSUPP,
                          "htb has no in-place change: its default class and r2q stay until the root is "
                          "recreated, which drops every class");
    QdiscPtr qdisc(rtnl_qdisc_alloc());
    if (!qdisc) return make_error(what, object, ENOMEM, std::strerror(ENOMEM));
    rtnl_tc_set_ifindex(as_tc(qdisc.get()), t.ifindex);
    rtnl_tc_set_parent(as_tc(qdisc.get()), TC_H_ROOT);
    rtnl_tc_set_handle(as_tc(qdisc.get()), q.handle);
    nl_msg* msg = nullptr;
    int err = 0;
    if (op == Change::Op::Remove) {
        err = rtnl_qdisc_build_delete_request(qdisc.get(), &msg);
    } else {
        if ((err = rtnl_tc_set_kind(as_tc(qdisc.get()), "htb")) < 0)
            return libnl_error(what, object, err, ObjectKind::RootQdisc);
        rtnl_htb_set_defcls(qdisc.get(), tc::minor_of(q.default_class));
        rtnl_htb_set_rate2quantum(qdisc.get(), q.r2q);
        // CREATE|REPLACE: takes the place of the kernel's default root (the caller checked it may).
        err = rtnl_qdisc_build_add_request(qdisc.get(), NLM_F_CREATE | NLM_F_REPLACE, &msg);
    }
    return send(t, err, msg, what, object, ObjectKind::RootQdisc, op == Change::Op::Remove);
}

Status apply_class(const Target& t, Change::Op op, const tc::HtbClass& c) {
    std::string object = object_name(t, c.classid);
    std::string what = verb(op, "class");
    ClassPtr cls(rtnl_class_alloc());
    if (!cls) return make_error(what, object, ENOMEM, std::strerror(ENOMEM));
    rtnl_tc_set_ifindex(as_tc(cls.get()), t.ifindex);
    rtnl_tc_set_parent(as_tc(cls.get()), c.parent);
    rtnl_tc_set_handle(as_tc(cls.get()), c.classid);
    nl_msg* msg = nullptr;
    int err = 0;
    if (op == Change::Op::Remove) {
        err = rtnl_class_build_delete_request(cls.get(), &msg);
        return send(t, err, msg, what, object, ObjectKind::Class, true);
    }
    if (c.rate_bytes_per_s == 0)
        return make_error(what, object, EINVAL, "an htb class needs a non-zero rate");
    // libnl asserts: the kind comes before any htb setter, and every class has a rate.
    if ((err = rtnl_tc_set_kind(as_tc(cls.get()), "htb")) < 0)
        return libnl_error(what, object, err, ObjectKind::Class);
    rtnl_htb_set_rate64(cls.get(), c.rate_bytes_per_s);
    rtnl_htb_set_ceil64(cls.get(), c.ceil_bytes_per_s ? c.ceil_bytes_per_s : c.rate_bytes_per_s);
    if (c.burst_bytes) rtnl_htb_set_rbuffer(cls.get(), c.burst_bytes);
    if (c.cburst_bytes) rtnl_htb_set_cbuffer(cls.get(), c.cburst_bytes);
    if (c.quantum_bytes) rtnl_htb_set_quantum(cls.get(), c.quantum_bytes);
    rtnl_htb_set_prio(cls.get(), c.prio);
    // Add: CREATE creates or updates in place; Modify: no CREATE, so a missing class is ENOENT.
    err = rtnl_class_build_add_request(cls.get(), flags_for(op, NLM_F_CREATE), &msg);
    return send(t, err, msg, what, object, ObjectKind::Class, false);
}

namespace {

// The kernel's own default limit of a fifo (libnl cannot send a fifo without a limit).
uint32_t default_fifo_limit(const Target& t, const std::string& kind) {
    rtnl_link* raw = nullptr;
    if (rtnl_link_get_kernel(t.sock.get(), t.ifindex, nullptr, &raw) < 0) return 1000;
    LinkPtr link(raw);
    uint32_t txqlen = rtnl_link_get_txqlen(link.get());
    if (txqlen == 0) txqlen = 1;
    return kind == "bfifo" ? txqlen * rtnl_link_get_mtu(link.get()) : txqlen;
}

}  // namespace

Status apply_leaf(const Target& t, Change::Op op, const tc::LeafQdisc& l, bool has_kind) {
    std::string object = object_name(t, l.handle) + " under " + tc::format_handle(l.parent);
    std::string what = verb(op, "leaf qdisc " + l.kind);
    QdiscPtr qdisc(rtnl_qdisc_alloc());
    if (!qdisc) return make_error(what, object, ENOMEM, std::strerror(ENOMEM));
    rtnl_tc_set_ifindex(as_tc(qdisc.get()), t.ifindex);
    rtnl_tc_set_parent(as_tc(qdisc.get()), l.parent);
    rtnl_tc_set_handle(as_tc(qdisc.get()), l.handle);
    nl_msg* msg = nullptr;
    int err = 0;
    if (op == Change::Op::Remove) {
        err = rtnl_qdisc_build_delete_request(qdisc.get(), &msg);
        return send(t, err, msg, what, object, ObjectKind::Leaf, true);
    }
    if ((err = rtnl_tc_set_kind(as_tc(qdisc.get()), l.kind.c_str())) < 0)
        return libnl_error(what, object, err, ObjectKind::Leaf);
    int limit = static_cast<int>(l.kind == "bfifo" ? l.limit_bytes : l.limit_packets);
    if (l.kind == "pfifo" || l.kind == "bfifo")
        rtnl_qdisc_fifo_set_limit(qdisc.get(),
                                  limit ? limit : static_cast<int>(default_fifo_limit(t, l.kind)));
    else if (l.kind == "fq_codel" && limit)
        rtnl_qdisc_fq_codel_set_limit(qdisc.get(), limit);
    else if (l.kind == "sfq" && limit)
        rtnl_sfq_set_limit(qdisc.get(), limit);
    else if (l.kind != "fq_codel" && l.kind != "sfq")
        return make_error(what, object, EINVAL, "leaf kind must be pfifo, bfifo, fq_codel or sfq");
    // Add: CREATE|REPLACE grafts it over the class's default leaf; Modify changes parameters.
    err = rtnl_qdisc_build_add_request(qdisc.get(), flags_for(op, NLM_F_CREATE | NLM_F_REPLACE), &msg);
    Status st = send(t, err, msg, what, object, ObjectKind::Leaf, false);
    if (!st && st.error().code == ENOENT && !has_kind) {
        std::string config = l.kind == "fq_codel" ? "CONFIG_NET_SCH_FQ_CODEL" : "CONFIG_NET_SCH_SFQ";
        return make_error(
            what, object, ENOENT,
            "the kernel has no sch_" + l.kind + " (" + config + "); use leaf_qdisc = \"auto\" or \"bfifo\"");
    }
    return st;
}

}  // namespace flowshaper::kernel::detail
