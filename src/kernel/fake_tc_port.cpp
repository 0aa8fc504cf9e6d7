#include "flowshaper/kernel/fake_tc_port.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace flowshaper::kernel {

namespace {

template <typename T>
auto find_filter(std::vector<T>& v, const T& f) {
    return std::find_if(v.begin(), v.end(), [&](const T& o) {
        return o.prio == f.prio && o.protocol == f.protocol && o.handle == f.handle;
    });
}

Error fail(const tc::Change& c, const std::string& device, int err, const std::string& why = {}) {
    return make_error(c.describe(), "on " + device, err, why.empty() ? std::strerror(err) : why);
}

}  // namespace

FakeTcPort::FakeTcPort() {
    features_.source = "fake";
}

void FakeTcPort::add_device(const std::string& device, tc::RootInfo root) {
    Device d;
    d.ifindex = static_cast<int>(devices_.size()) + 2;
    d.root = root;
    d.state.device = device;
    devices_[device] = std::move(d);
}

void FakeTcPort::fail_change(uint64_t nth, int err) {
    fail_at_[attempts_ + nth] = err;
}

void FakeTcPort::fail_when(std::function<bool(const tc::Change&)> pred, int err) {
    fail_preds_.emplace_back(std::move(pred), err);
}

const tc::DeviceState* FakeTcPort::state(const std::string& device) const {
    auto it = devices_.find(device);
    return it == devices_.end() ? nullptr : &it->second.state;
}

void FakeTcPort::count(const std::string& device, tc::Handle classid, uint64_t bytes, uint64_t packets) {
    auto& s = devices_.at(device).stats[classid];
    s.classid = classid;
    s.bytes += bytes;
    s.packets += packets;
}

Result<tc::ObservedDevice> FakeTcPort::read(const std::string& device) {
    auto it = devices_.find(device);
    if (it == devices_.end()) return make_error("read", device, ENODEV, "no such device");
    tc::ObservedDevice out;
    out.ifindex = it->second.ifindex;
    out.root_info = it->second.root;
    out.state = it->second.state;
    for (const auto& c : out.state.classes) {
        auto st = it->second.stats[c.classid];
        st.classid = c.classid;
        out.stats.push_back(st);
    }
    return out;
}

Status FakeTcPort::check(Device& dev, const tc::Change& change) const {
    auto& st = dev.state;
    auto has_class = [&](tc::Handle h) {
        return std::any_of(st.classes.begin(), st.classes.end(), [&](auto& c) { return c.classid == h; });
    };
    bool ours = dev.root.owner == tc::RootInfo::Owner::Ours;
    if (!ours && !std::holds_alternative<tc::HtbQdisc>(change.object))
        return fail(change, st.device, EINVAL, "no flowshaper qdisc on the device");
    using Op = tc::Change::Op;
    if (auto* c = std::get_if<tc::HtbClass>(&change.object)) {
        if (change.op == Op::Remove) {
            if (!has_class(c->classid)) return fail(change, st.device, ENOENT);
            bool referenced =
                std::any_of(st.classes.begin(), st.classes.end(),
                            [&](auto& o) { return o.parent == c->classid; }) ||
                std::any_of(st.u32.begin(), st.u32.end(), [&](auto& f) { return f.classid == c->classid; }) ||
                std::any_of(st.fw.begin(), st.fw.end(), [&](auto& f) { return f.classid == c->classid; });
            if (referenced)
                return fail(change, st.device, EBUSY, "still referenced by a filter or child class");
        } else if (c->parent != tc::kRootQdisc && !has_class(c->parent)) {
            return fail(change, st.device, ENOENT, "parent class does not exist");
        }
    } else if (auto* q = std::get_if<tc::LeafQdisc>(&change.object)) {
        if (change.op != Op::Remove && !has_class(q->parent)) return fail(change, st.device, ENOENT);
        if ((q->kind == "fq_codel" && !features_.fq_codel) || (q->kind == "sfq" && !features_.sfq))
            return fail(change, st.device, ENOENT, "qdisc kind " + q->kind + " not available");
    } else if (auto* f = std::get_if<tc::U32Filter>(&change.object)) {
        uint32_t table = tc::u32_table_of(f->handle);
        auto table_exists = [&](uint32_t t) {
            return std::any_of(st.u32.begin(), st.u32.end(), [&](auto& o) {
                return o.role == tc::U32Filter::Role::Table && tc::u32_table_of(o.handle) == t &&
                       o.prio == f->prio;
            });
        };
        if (change.op == Op::Remove) {
            if (find_filter(st.u32, *f) == st.u32.end()) return fail(change, st.device, ENOENT);
            if (f->role == tc::U32Filter::Role::Table &&
                std::any_of(st.u32.begin(), st.u32.end(), [&](auto& o) {
                    return (o.role != tc::U32Filter::Role::Table && tc::u32_table_of(o.handle) == table) ||
                           (o.role == tc::U32Filter::Role::Link && o.link_table == f->handle);
                }))
                return fail(change, st.device, EBUSY, "hash table still in use");
        } else {
            if (f->role != tc::U32Filter::Role::Table && table != 0 && !table_exists(table))
                return fail(change, st.device, ENOENT, "hash table does not exist");
            if (f->role == tc::U32Filter::Role::Link && !table_exists(tc::u32_table_of(f->link_table)))
                return fail(change, st.device, ENOENT, "linked hash table does not exist");
            if (f->role == tc::U32Filter::Role::Match && !has_class(f->classid))
                return fail(change, st.device, ENOENT, "target class does not exist");
        }
    } else if (std::holds_alternative<tc::FwFilter>(change.object)) {
        if (!features_.cls_fw)
            return fail(change, st.device, ENOENT, "the kernel has no cls_fw (CONFIG_NET_CLS_FW)");
    }
    return {};
}

void FakeTcPort::commit(Device& dev, const tc::Change& change) {
    auto& st = dev.state;
    using Op = tc::Change::Op;
    std::visit(
        [&](const auto& obj) {
            using T = std::decay_t<decltype(obj)>;
            if constexpr (std::is_same_v<T, tc::HtbQdisc>) {
                st = tc::DeviceState{};
                st.device = dev.state.device.empty() ? std::string{} : dev.state.device;
                st.root = obj;
                dev.root = {tc::RootInfo::Owner::Ours, "htb", obj.handle};
                dev.stats.clear();
            } else if constexpr (std::is_same_v<T, tc::HtbClass>) {
                auto it = std::find_if(st.classes.begin(), st.classes.end(),
                                       [&](auto& c) { return c.classid == obj.classid; });
                if (change.op == Op::Remove) {
                    st.classes.erase(it);
                    std::erase_if(st.leaves, [&](auto& q) { return q.parent == obj.classid; });
                    dev.stats.erase(obj.classid);
                } else if (it != st.classes.end()) {
                    *it = obj;
                } else {
                    st.classes.push_back(obj);
                }
                for (auto& c : st.classes) c.label.clear();  // the kernel keeps no labels
            } else if constexpr (std::is_same_v<T, tc::LeafQdisc>) {
                std::erase_if(st.leaves, [&](auto& q) { return q.parent == obj.parent; });
                if (change.op != Op::Remove) st.leaves.push_back(obj);
            } else {
                auto& list = [&]() -> auto& {
                    if constexpr (std::is_same_v<T, tc::U32Filter>)
                        return st.u32;
                    else
                        return st.fw;
                }
                ();
                auto it = find_filter(list, obj);
                if (it != list.end()) list.erase(it);
                if (change.op != Op::Remove) {
                    list.push_back(obj);
                    list.back().label.clear();
                }
            }
        },
        change.object);
}

Status FakeTcPort::apply(const std::string& device, const tc::Change& change) {
    auto it = devices_.find(device);
    if (it == devices_.end()) return make_error("apply", device, ENODEV, "no such device");
    uint64_t n = attempts_++;
    if (auto f = fail_at_.find(n); f != fail_at_.end()) return fail(change, device, f->second);
    for (const auto& [pred, err] : fail_preds_)
        if (pred(change)) return fail(change, device, err);
    if (auto st = check(it->second, change); !st) return st;
    std::string name = it->second.state.device;
    commit(it->second, change);
    it->second.state.device = name.empty() ? device : name;
    log_.push_back(change);
    return {};
}

Status FakeTcPort::remove_root(const std::string& device) {
    auto it = devices_.find(device);
    if (it == devices_.end()) return make_error("remove root qdisc", device, ENODEV, "no such device");
    if (it->second.root.owner != tc::RootInfo::Owner::Ours) return {};
    it->second.root = {tc::RootInfo::Owner::KernelDefault, "noqueue", 0};
    it->second.state = tc::DeviceState{};
    it->second.state.device = device;
    it->second.stats.clear();
    log_.push_back({tc::Change::Op::Remove, tc::HtbQdisc{}});
    return {};
}

}  // namespace flowshaper::kernel
