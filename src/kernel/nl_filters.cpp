// u32 and fw filters on flowshaper's root qdisc: built with libnl-route, read back by parsing the
// kernel's dump directly (libnl has no getters for a u32 node's divisor, link, hash mask or offset).
#include <arpa/inet.h>
#include <linux/pkt_cls.h>
#include <linux/rtnetlink.h>
#include <netlink/attr.h>
#include <netlink/route/cls/fw.h>
#include <netlink/route/cls/u32.h>

#include <cerrno>
#include <cstring>

#include "nl_tc.hpp"

namespace flowshaper::kernel::detail {

using tc::Change;
using Role = tc::U32Filter::Role;

namespace {

constexpr uint32_t kRootTableBit = 0x800;  // the kernel gives its own tables ids 0x800..0xfff

std::string verb(Change::Op op, const std::string& what) {
    return (op == Change::Op::Add ? "create " : op == Change::Op::Modify ? "change " : "delete ") + what;
}

uint32_t attr_u32(nlattr* a, uint32_t fallback) {
    return a ? nla_get_u32(a) : fallback;
}

// One u32 dump entry: a hash table (node bits zero) or a key node.
void parse_u32(uint32_t handle, uint16_t prio, uint16_t protocol, nlattr* options, FilterDump& out) {
    nlattr* ub[TCA_U32_MAX + 1] = {};
    if (nla_parse_nested(ub, TCA_U32_MAX, options, nullptr) < 0) return;
    tc::U32Filter f;
    f.prio = prio;
    f.protocol = protocol;
    f.handle = handle;
    if (tc::u32_bucket_of(handle) == 0 && tc::u32_node_of(handle) == 0) {
        f.divisor = attr_u32(ub[TCA_U32_DIVISOR], 0);
        uint32_t id = tc::u32_table_of(handle);
        if ((id & kRootTableBit) && f.divisor <= 1) {
            out.root_tables[prio] = id;  // made by the kernel with the prio: not ours to report
            return;
        }
        f.role = Role::Table;
        out.u32.push_back(std::move(f));
        return;
    }
    nlattr* sel_attr = ub[TCA_U32_SEL];
    if (!sel_attr || nla_len(sel_attr) < static_cast<int>(sizeof(tc_u32_sel))) return;
    tc_u32_sel sel;
    std::memcpy(&sel, nla_data(sel_attr), sizeof sel);
    size_t need = sizeof(tc_u32_sel) + sel.nkeys * sizeof(tc_u32_key);
    if (static_cast<size_t>(nla_len(sel_attr)) < need) return;
    const auto* key_bytes = static_cast<const char*>(nla_data(sel_attr)) + sizeof(tc_u32_sel);
    for (unsigned i = 0; i < sel.nkeys; ++i) {
        tc_u32_key k;
        std::memcpy(&k, key_bytes + i * sizeof k, sizeof k);
        f.keys.push_back({ntohl(k.val), ntohl(k.mask), k.off});
    }
    if (ub[TCA_U32_LINK]) {
        f.role = Role::Link;
        f.link_table = nla_get_u32(ub[TCA_U32_LINK]);
        f.hash_mask = ntohl(sel.hmask);
        f.hash_offset = sel.hoff;
    } else {
        f.role = Role::Match;
        f.classid = attr_u32(ub[TCA_U32_CLASSID], 0);
    }
    out.u32.push_back(std::move(f));
}

void parse_fw(uint32_t handle, uint16_t prio, uint16_t protocol, nlattr* options, FilterDump& out) {
    nlattr* fb[TCA_FW_MAX + 1] = {};
    if (nla_parse_nested(fb, TCA_FW_MAX, options, nullptr) < 0) return;
    tc::FwFilter f;
    f.prio = prio;
    f.protocol = protocol;
    f.handle = handle;
    f.mask = attr_u32(fb[TCA_FW_MASK], 0xffffffffu);  // the kernel omits the default mask
    f.classid = attr_u32(fb[TCA_FW_CLASSID], 0);
    out.fw.push_back(std::move(f));
}

void parse_filter(nlmsghdr* nlh, FilterDump& out) {
    if (nlh->nlmsg_type != RTM_NEWTFILTER) return;
    const auto* tcm = static_cast<const tcmsg*>(nlmsg_data(nlh));
    nlattr* tb[TCA_MAX + 1] = {};
    if (nlmsg_parse(nlh, sizeof(tcmsg), tb, TCA_MAX, nullptr) < 0) return;
    // The first entry of each prio (handle 0, no options) describes the prio itself.
    if (tcm->tcm_handle == 0 || !tb[TCA_KIND] || !tb[TCA_OPTIONS]) return;
    if (tb[TCA_CHAIN] && nla_get_u32(tb[TCA_CHAIN]) != 0) return;
    auto prio = static_cast<uint16_t>(TC_H_MAJ(tcm->tcm_info) >> 16);
    auto protocol = ntohs(static_cast<uint16_t>(TC_H_MIN(tcm->tcm_info)));
    std::string kind = nla_get_string(tb[TCA_KIND]);
    if (kind == "u32")
        parse_u32(tcm->tcm_handle, prio, protocol, tb[TCA_OPTIONS], out);
    else if (kind == "fw")
        parse_fw(tcm->tcm_handle, prio, protocol, tb[TCA_OPTIONS], out);
}

ClsPtr new_filter(const Target& t, uint16_t prio, uint16_t protocol, uint32_t handle, const char* kind) {
    ClsPtr cls(rtnl_cls_alloc());
    if (!cls) return cls;
    rtnl_tc_set_ifindex(TC_CAST(cls.get()), t.ifindex);
    rtnl_tc_set_parent(TC_CAST(cls.get()), tc::kRootQdisc);
    rtnl_tc_set_handle(TC_CAST(cls.get()), handle);
    rtnl_cls_set_prio(cls.get(), prio);
    rtnl_cls_set_protocol(cls.get(), protocol);
    if (rtnl_tc_set_kind(TC_CAST(cls.get()), kind) < 0) cls.reset();
    return cls;
}

Status send(const Target& t, ClsPtr cls, Change::Op op, const std::string& what, const std::string& object,
            ObjectKind kind) {
    nl_msg* raw = nullptr;
    int err = op == Change::Op::Remove
                  ? rtnl_cls_build_delete_request(cls.get(), 0, &raw)
                  : rtnl_cls_build_add_request(cls.get(), op == Change::Op::Add ? NLM_F_CREATE : 0, &raw);
    MsgPtr msg(raw);
    if (err < 0) return libnl_error(what, object, err, kind, op == Change::Op::Remove);
    if (int e = t.sock.send_sync(std::move(msg)); e != 0)
        return kernel_error(what, object, e, kind, op == Change::Op::Remove);
    return {};
}

// Fills a key node: its table and bucket, keys in network order, and its link or class.
Status fill_node(rtnl_cls* cls, uint32_t handle, const tc::U32Filter& f, const std::string& what,
                 const std::string& object) {
    if (f.keys.empty()) return make_error(what, object, EINVAL, "a u32 node needs at least one key");
    if (tc::u32_table_of(handle) != 0) rtnl_u32_set_hashtable(cls, handle & 0xfffff000u);
    if (f.role == Role::Match) rtnl_u32_set_cls_terminal(cls);  // what `tc ... flowid` sets
    for (const auto& k : f.keys) {
        if (int err = rtnl_u32_add_key(cls, htonl(k.value), htonl(k.mask), k.offset, 0); err < 0)
            return libnl_error(what, object, err, ObjectKind::U32);
    }
    if (f.role == Role::Link) {
        rtnl_u32_set_link(cls, f.link_table);
        rtnl_u32_set_hashmask(cls, f.hash_mask, static_cast<uint32_t>(f.hash_offset));
    } else {
        rtnl_u32_set_classid(cls, f.classid);
    }
    return {};
}

}  // namespace

Result<FilterDump> read_filters(const Target& t) {
    FilterDump out;
    int err = t.sock.dump_tc(RTM_GETTFILTER, t.ifindex, tc::kRootQdisc,
                             [&out](nlmsghdr* nlh) { parse_filter(nlh, out); });
    if (err != 0) return kernel_error("read filters", t.device + " f5:", err, ObjectKind::U32, false);
    // Nodes in a prio's root table: table 0 in the model, whatever id the kernel chose.
    for (auto& f : out.u32) {
        auto root = out.root_tables.find(f.prio);
        if (f.role != Role::Table && root != out.root_tables.end() &&
            tc::u32_table_of(f.handle) == root->second)
            f.handle &= 0x000fffffu;
    }
    return out;
}

Status apply_u32(const Target& t, Change::Op op, const tc::U32Filter& f, uint32_t root_table) {
    std::string object = t.device + " prio " + std::to_string(f.prio) + " " + tc::format_u32_handle(f.handle);
    std::string what = verb(op, f.role == Role::Table ? "u32 hash table" : "u32 filter");
    if (f.prio == 0 || f.handle == 0)
        return make_error(what, object, EINVAL, "a u32 node needs an explicit prio and handle");
    uint32_t handle = f.handle;
    if (f.role != Role::Table && tc::u32_table_of(handle) == 0) handle |= root_table << 20;
    ClsPtr cls = new_filter(t, f.prio, f.protocol, handle, "u32");
    if (!cls) return make_error(what, object, ENOMEM, std::strerror(ENOMEM));
    if (op != Change::Op::Remove) {
        if (f.role == Role::Table) {
            if (op == Change::Op::Modify)
                return make_error(what, object, EINVAL,
                                  "a u32 hash table cannot be changed in place; remove and re-add it");
            rtnl_u32_set_divisor(cls.get(), f.divisor);
        } else if (Status st = fill_node(cls.get(), handle, f, what, object); !st) {
            return st;
        }
    }
    return send(t, std::move(cls), op, what, object, ObjectKind::U32);
}

Status apply_fw(const Target& t, Change::Op op, const tc::FwFilter& f, bool has_fw) {
    std::string object = t.device + " prio " + std::to_string(f.prio) + " mark " + std::to_string(f.handle);
    std::string what = verb(op, "fw filter");
    if (f.prio == 0 || f.handle == 0)
        return make_error(what, object, EINVAL, "a fw filter needs an explicit prio and mark");
    ClsPtr cls = new_filter(t, f.prio, f.protocol, f.handle, "fw");
    if (!cls) return make_error(what, object, ENOMEM, std::strerror(ENOMEM));
    if (op != Change::Op::Remove) {
        rtnl_fw_set_classid(cls.get(), f.classid);
        rtnl_fw_set_mask(cls.get(), f.mask);
    }
    Status st = send(t, std::move(cls), op, what, object, ObjectKind::Fw);
    if (!st && !has_fw && (st.error().code == ENOENT || st.error().code == EOPNOTSUPP))
        return make_error(what, object, st.error().code,
                          "the kernel has no cls_fw (CONFIG_NET_CLS_FW); use classifier = \"u32\"");
    return st;
}

}  // namespace flowshaper::kernel::detail
