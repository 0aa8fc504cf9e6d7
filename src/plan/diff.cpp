#include "flowshaper/plan/diff.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

namespace flowshaper::plan {

namespace {

using tc::Change;
using Op = tc::Change::Op;

using FilterKey = std::tuple<uint16_t, uint16_t, uint32_t>;  // prio, protocol, handle

FilterKey key_of(const tc::U32Filter& f) {
    return {f.prio, f.protocol, f.handle};
}
FilterKey key_of(const tc::FwFilter& f) {
    return {f.prio, f.protocol, f.handle};
}

// Depth of each class below the root qdisc, following parents inside one state.
std::map<tc::Handle, int> depths(const std::vector<tc::HtbClass>& classes) {
    std::map<tc::Handle, tc::Handle> parent;
    for (const auto& c : classes) parent[c.classid] = c.parent;
    std::map<tc::Handle, int> depth;
    for (const auto& c : classes) {
        int d = 0;
        for (tc::Handle h = c.parent; parent.count(h) && d <= 0xffff; h = parent[h]) ++d;
        depth[c.classid] = d;
    }
    return depth;
}

template <typename T>
std::map<FilterKey, const T*> index_filters(const std::vector<T>& filters) {
    std::map<FilterKey, const T*> out;
    for (const auto& f : filters) out[key_of(f)] = &f;
    return out;
}

int role_rank(const tc::U32Filter& f) {
    return static_cast<int>(f.role);
}  // Table, Link, Match

class Differ {
public:
    Differ(const tc::DeviceState& desired, const tc::DeviceState& observed)
        : want_(desired), have_(observed) {
        for (const auto& c : want_.classes) want_classes_[c.classid] = &c;
        for (const auto& c : have_.classes) have_classes_[c.classid] = &c;
        find_recreated();
    }

    std::vector<Change> run() {
        remove_filters(have_.fw, index_filters(want_.fw));
        remove_u32();
        remove_leaves();
        remove_classes();
        if (want_.root && !have_.root) out_.push_back({Op::Add, *want_.root});
        add_classes();
        add_leaves();
        add_u32();
        add_filters(want_.fw, index_filters(have_.fw));
        return std::move(out_);
    }

private:
    // Classes whose parent changed cannot be moved in place: remove and add them again, with
    // their descendants.
    void find_recreated() {
        for (const auto& [id, have] : have_classes_) {
            auto it = want_classes_.find(id);
            if (it != want_classes_.end() && it->second->parent != have->parent) recreated_.insert(id);
        }
        bool grew = true;
        while (grew) {
            grew = false;
            for (const auto& c : have_.classes)
                if (!recreated_.count(c.classid) && recreated_.count(c.parent))
                    grew = recreated_.insert(c.classid).second || grew;
        }
    }

    bool class_goes(tc::Handle id) const { return !want_classes_.count(id) || recreated_.count(id); }

    template <typename T>
    bool filter_stays(const T& have, const std::map<FilterKey, const T*>& want) const {
        auto it = want.find(key_of(have));
        return it != want.end() && it->second->same_config(have) && !recreated_.count(have.classid);
    }

    template <typename T>
    void remove_filters(const std::vector<T>& have, const std::map<FilterKey, const T*>& want) {
        for (const auto& f : have)
            if (!filter_stays(f, want)) out_.push_back({Op::Remove, f});
    }

    template <typename T>
    void add_filters(const std::vector<T>& want, const std::map<FilterKey, const T*>& have) {
        for (const auto& f : want) {
            auto it = have.find(key_of(f));
            bool present = it != have.end() && it->second->same_config(f) && !recreated_.count(f.classid);
            if (!present) out_.push_back({Op::Add, f});
        }
    }

    void remove_u32() {
        auto want = index_filters(want_.u32);
        std::vector<const tc::U32Filter*> gone;
        for (const auto& f : have_.u32)
            if (!filter_stays(f, want)) gone.push_back(&f);
        // Matches before links before tables: nothing may point at what is removed.
        std::stable_sort(gone.begin(), gone.end(),
                         [](auto* a, auto* b) { return role_rank(*a) > role_rank(*b); });
        for (auto* f : gone) out_.push_back({Op::Remove, *f});
    }

    void add_u32() {
        auto have = index_filters(have_.u32);
        std::vector<const tc::U32Filter*> fresh;
        for (const auto& f : want_.u32) {
            auto it = have.find(key_of(f));
            if (it == have.end() || !it->second->same_config(f) || recreated_.count(f.classid))
                fresh.push_back(&f);
        }
        std::stable_sort(fresh.begin(), fresh.end(),
                         [](auto* a, auto* b) { return role_rank(*a) < role_rank(*b); });
        for (auto* f : fresh) out_.push_back({Op::Add, *f});
    }

    void remove_leaves() {
        std::map<tc::Handle, const tc::LeafQdisc*> want;
        for (const auto& q : want_.leaves) want[q.parent] = &q;
        for (const auto& q : have_.leaves) {
            if (class_goes(q.parent)) continue;  // goes with its class
            auto it = want.find(q.parent);
            if (it == want.end()) out_.push_back({Op::Remove, q});
        }
    }

    void add_leaves() {
        std::map<tc::Handle, const tc::LeafQdisc*> have;
        for (const auto& q : have_.leaves) have[q.parent] = &q;
        for (const auto& q : want_.leaves) {
            auto it = have.find(q.parent);
            // A kind cannot be changed in place: Add replaces the class's qdisc (graft).
            if (it == have.end() || class_goes(q.parent) || it->second->kind != q.kind)
                out_.push_back({Op::Add, q});
            else if (!it->second->same_config(q))
                out_.push_back({Op::Modify, q});
        }
    }

    void remove_classes() {
        auto depth = depths(have_.classes);
        std::vector<const tc::HtbClass*> gone;
        for (const auto& c : have_.classes)
            if (class_goes(c.classid)) gone.push_back(&c);
        std::stable_sort(gone.begin(), gone.end(),
                         [&](auto* a, auto* b) { return depth[a->classid] > depth[b->classid]; });
        for (auto* c : gone) out_.push_back({Op::Remove, *c});
    }

    void add_classes() {
        auto depth = depths(want_.classes);
        std::vector<const tc::HtbClass*> todo;
        for (const auto& c : want_.classes) todo.push_back(&c);
        std::stable_sort(todo.begin(), todo.end(),
                         [&](auto* a, auto* b) { return depth[a->classid] < depth[b->classid]; });
        for (auto* c : todo) {
            auto it = have_classes_.find(c->classid);
            if (it == have_classes_.end() || recreated_.count(c->classid))
                out_.push_back({Op::Add, *c});
            else if (!it->second->same_config(*c))
                out_.push_back({Op::Modify, *c});
        }
    }

    const tc::DeviceState& want_;
    const tc::DeviceState& have_;
    std::map<tc::Handle, const tc::HtbClass*> want_classes_;
    std::map<tc::Handle, const tc::HtbClass*> have_classes_;
    std::set<tc::Handle> recreated_;
    std::vector<Change> out_;
};

}  // namespace

std::vector<tc::Change> diff(const tc::DeviceState& desired, const tc::DeviceState& observed) {
    return Differ(desired, observed).run();
}

}  // namespace flowshaper::plan
