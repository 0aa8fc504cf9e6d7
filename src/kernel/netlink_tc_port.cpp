#include "flowshaper/kernel/netlink_tc_port.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>
#include <tuple>

#include "nl_tc.hpp"

namespace flowshaper::kernel {

using detail::Target;
using tc::Change;

namespace detail {

Result<int> resolve_ifindex(NlSocket& sock, const std::string& device) {
    if (device.empty()) return make_error("find device", "\"\"", ENODEV, "no such device");
    rtnl_link* raw = nullptr;
    sock.reset_errno();
    int err = rtnl_link_get_kernel(sock.get(), 0, device.c_str(), &raw);
    if (err < 0) {
        int e = sock.errno_for(err);
        if (e == ENODEV || e == ENOENT) return make_error("find device", device, ENODEV, "no such device");
        return kernel_error("find device", device, e, ObjectKind::Device, false);
    }
    LinkPtr link(raw);
    return rtnl_link_get_ifindex(link.get());
}

}  // namespace detail

namespace {

template <typename... F>
struct Overloaded : F... {
    using F::operator()...;
};
template <typename... F>
Overloaded(F...) -> Overloaded<F...>;

void sort_state(tc::DeviceState& s) {
    std::sort(s.classes.begin(), s.classes.end(),
              [](const auto& a, const auto& b) { return a.classid < b.classid; });
    std::sort(s.leaves.begin(), s.leaves.end(),
              [](const auto& a, const auto& b) { return a.parent < b.parent; });
    std::sort(s.u32.begin(), s.u32.end(), [](const auto& a, const auto& b) {
        return std::tie(a.prio, a.handle) < std::tie(b.prio, b.handle);
    });
    std::sort(s.fw.begin(), s.fw.end(), [](const auto& a, const auto& b) {
        return std::tie(a.prio, a.handle) < std::tie(b.prio, b.handle);
    });
}

bool is_leaf_builtin(const std::string& kind) {
    return kind == "pfifo" || kind == "bfifo";
}

}  // namespace

NetlinkTcPort::NetlinkTcPort(std::unique_ptr<detail::NlSocket> sock) : sock_(std::move(sock)) {}
NetlinkTcPort::~NetlinkTcPort() = default;

Result<std::unique_ptr<NetlinkTcPort>> NetlinkTcPort::open() {
    auto sock = detail::NlSocket::open();
    if (!sock) return sock.error();
    return std::unique_ptr<NetlinkTcPort>(new NetlinkTcPort(std::move(*sock)));
}

Result<int> NetlinkTcPort::ifindex_of(const std::string& device, bool fresh) {
    if (!fresh)
        if (auto it = ifindex_.find(device); it != ifindex_.end()) return it->second;
    auto ifindex = detail::resolve_ifindex(*sock_, device);
    if (ifindex)
        ifindex_[device] = *ifindex;
    else
        ifindex_.erase(device);
    return ifindex;
}

Result<tc::ObservedDevice> NetlinkTcPort::read(const std::string& device) {
    auto ifindex = ifindex_of(device, true);
    if (!ifindex) return ifindex.error();
    Target t{*sock_, *ifindex, device};
    tc::ObservedDevice out;
    out.ifindex = *ifindex;
    out.state.device = device;
    std::optional<tc::HtbQdisc> ours;
    std::vector<tc::LeafQdisc> below;
    auto info = detail::read_qdiscs(t, ours, below);
    if (!info) return info.error();
    out.root_info = *info;
    forget_root_tables(*ifindex);
    if (info->owner != tc::RootInfo::Owner::Ours) return out;
    out.state.root = ours;
    if (Status st = detail::read_classes(t, out.state, out.stats); !st) return st.error();
    for (auto& leaf : below) {
        bool under_ours = std::any_of(out.state.classes.begin(), out.state.classes.end(),
                                      [&](const tc::HtbClass& c) { return c.classid == leaf.parent; });
        if (under_ours) out.state.leaves.push_back(std::move(leaf));
    }
    auto filters = detail::read_filters(t);
    if (!filters) return filters.error();
    out.state.u32 = std::move(filters->u32);
    out.state.fw = std::move(filters->fw);
    for (const auto& [prio, id] : filters->root_tables) root_tables_[{*ifindex, prio}] = id;
    sort_state(out.state);
    std::sort(out.stats.begin(), out.stats.end(),
              [](const auto& a, const auto& b) { return a.classid < b.classid; });
    return out;
}

Status NetlinkTcPort::apply(const std::string& device, const Change& change) {
    Status st = apply_once(device, change, false);
    if (!st && st.error().code == ENODEV) st = apply_once(device, change, true);  // re-created device
    return st;
}

Status NetlinkTcPort::apply_once(const std::string& device, const Change& change, bool fresh) {
    auto ifindex = ifindex_of(device, fresh);
    if (!ifindex)
        return Error{change.describe(), "on " + device, ifindex.error().code, ifindex.error().detail};
    Target t{*sock_, *ifindex, device};
    Status st = std::visit(
        Overloaded{
            [&](const tc::HtbQdisc& q) {
                forget_root_tables(t.ifindex);
                return detail::apply_root(t, change.op, q);
            },
            [&](const tc::HtbClass& c) { return detail::apply_class(t, change.op, c); },
            [&](const tc::LeafQdisc& l) {
                TcFeatures f = is_leaf_builtin(l.kind) ? TcFeatures{} : features();
                bool has_kind = is_leaf_builtin(l.kind) || (l.kind == "fq_codel" && f.fq_codel) ||
                                (l.kind == "sfq" && f.sfq);
                return detail::apply_leaf(t, change.op, l, has_kind);
            },
            [&](const tc::U32Filter&) { return apply_u32(t, change); },
            [&](const tc::FwFilter& f) { return detail::apply_fw(t, change.op, f, features().cls_fw); },
        },
        change.object);
    if (st) ++changes_sent_;
    return st;
}

Status NetlinkTcPort::apply_u32(const Target& t, const Change& change) {
    const auto& f = std::get<tc::U32Filter>(change.object);
    bool in_root = f.role != tc::U32Filter::Role::Table && tc::u32_table_of(f.handle) == 0;
    if (!in_root) {
        Status st = detail::apply_u32(t, change.op, f, 0);
        if (!st && st.error().code == EBUSY && change.op == Change::Op::Remove)
            return remove_table_later(t, f, st);
        return st;
    }
    auto root = root_table(t, f.prio, false);
    if (!root) return root.error();
    if (*root == 0 && change.op != Change::Op::Add)
        return make_error(change.describe(), t.device + " prio " + std::to_string(f.prio), ENOENT,
                          "no u32 filter exists at this prio, so neither does its root table");
    Status st = detail::apply_u32(t, change.op, f, *root);
    if (!st && *root != 0) {
        // The prio may have been deleted and created again since we learnt its root table's id.
        auto fresh = root_table(t, f.prio, true);
        if (fresh && *fresh != *root && (*fresh != 0 || change.op == Change::Op::Add))
            st = detail::apply_u32(t, change.op, f, *fresh);
    }
    if (*root == 0) forget_root_tables(t.ifindex);  // the kernel created the prio: learn its id later
    return st;
}

// The kernel drops a link node's hold on its hash table only after an RCU grace period, so a
// table removed right after its last link is briefly EBUSY. When no link points at the table any
// more, wait and retry (bounded); otherwise the EBUSY is real.
Status NetlinkTcPort::remove_table_later(const Target& t, const tc::U32Filter& table, Status busy) {
    if (table.role != tc::U32Filter::Role::Table) return busy;
    auto deadline = std::chrono::steady_clock::now() + kTableReleaseWait;
    auto pause = std::chrono::milliseconds(2);
    while (std::chrono::steady_clock::now() < deadline) {
        auto dump = detail::read_filters(t);
        if (!dump) return busy;
        bool linked = std::any_of(dump->u32.begin(), dump->u32.end(), [&](const tc::U32Filter& f) {
            return f.role == tc::U32Filter::Role::Link && f.link_table == table.handle;
        });
        if (linked) return busy;
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::milliseconds(100));
        Status st = detail::apply_u32(t, Change::Op::Remove, table, 0);
        if (st || st.error().code != EBUSY) return st;
        busy = st;
    }
    return busy;
}

Result<uint32_t> NetlinkTcPort::root_table(const Target& t, uint16_t prio, bool refresh) {
    auto key = std::make_pair(t.ifindex, prio);
    if (!refresh) {
        if (auto it = root_tables_.find(key); it != root_tables_.end()) return it->second;
    }
    auto dump = detail::read_filters(t);
    if (!dump) return dump.error();
    forget_root_tables(t.ifindex);
    for (const auto& [p, id] : dump->root_tables) root_tables_[{t.ifindex, p}] = id;
    auto it = root_tables_.find(key);
    return it == root_tables_.end() ? 0u : it->second;
}

void NetlinkTcPort::forget_root_tables(int ifindex) {
    std::erase_if(root_tables_, [ifindex](const auto& entry) { return entry.first.first == ifindex; });
}

Status NetlinkTcPort::remove_root(const std::string& device) {
    auto ifindex = detail::resolve_ifindex(*sock_, device);
    if (!ifindex) return ifindex.error();
    Target t{*sock_, *ifindex, device};
    std::optional<tc::HtbQdisc> ours;
    std::vector<tc::LeafQdisc> below;
    auto info = detail::read_qdiscs(t, ours, below);
    if (!info) return info.error();
    if (info->owner != tc::RootInfo::Owner::Ours || !ours) return {};
    forget_root_tables(t.ifindex);
    Status st = detail::apply_root(t, Change::Op::Remove, *ours);
    if (st) ++changes_sent_;
    return st;
}

TcFeatures NetlinkTcPort::features() {
    if (!features_) features_ = detail::probe_features(detail::FeatureSources{});
    return *features_;
}

uint64_t NetlinkTcPort::link_speed_bits_per_s(const std::string& device) {
    return detail::ethtool_speed_bits_per_s(device);
}

}  // namespace flowshaper::kernel
