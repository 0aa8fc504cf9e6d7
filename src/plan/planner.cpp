#include "flowshaper/plan/planner.hpp"

#include <algorithm>
#include <set>

#include "flowshaper/policy/units.hpp"
#include "id_allocator.hpp"
#include "u32_layout.hpp"

namespace flowshaper::plan {

namespace {

constexpr uint32_t kMtuBytes = 1514;  // one full-size Ethernet frame, as HTB counts it

uint64_t to_bytes(uint64_t bits_per_s) {
    return std::max<uint64_t>(1, bits_per_s / 8);
}

tc::HtbClass make_class(tc::Handle classid, tc::Handle parent, uint64_t rate_bits, uint64_t ceil_bits,
                        uint32_t prio, std::string label) {
    tc::HtbClass c;
    c.classid = classid;
    c.parent = parent;
    c.rate_bytes_per_s = to_bytes(rate_bits);
    c.ceil_bytes_per_s = to_bytes(std::max(ceil_bits, rate_bits));
    c.burst_bytes = burst_for(c.rate_bytes_per_s);
    c.cburst_bytes = burst_for(c.ceil_bytes_per_s);
    c.quantum_bytes = quantum_for(c.rate_bytes_per_s);
    c.prio = prio;
    c.label = std::move(label);
    return c;
}

// A class that gets client traffic, with the match nodes that send traffic there.
struct ClientSlot {
    std::string label;
    tc::Handle parent = tc::kRootClass;
    uint64_t rate_bits = 0;
    uint64_t ceil_bits = 0;
    std::vector<MatchIdentity> matches;
    bool heavy = false;
    uint32_t mark = 0;  // fw
    ClassOwner owner;
};

class DevicePlanner {
public:
    DevicePlanner(const PlanInput& in, const policy::Interface& iface)
        : in_(in), iface_(iface), ids_(observed_of(in, iface.device)) {}

    Result<DevicePlan> run() {
        plan_.desired.device = iface_.device;
        plan_.link_rate_bits_per_s = iface_.rate_bits_per_s;
        plan_.leaf_kind = in_.resolved.leaf_kind;
        plan_.leaf_reason = in_.resolved.leaf_reason;
        if (auto st = static_classes(); !st) return st.error();
        collect_slots();
        if (auto st = client_classes(); !st) return st.error();
        std::set<uint32_t> tables;
        for (const auto& f : plan_.desired.u32) tables.insert(tc::u32_table_of(f.handle));
        for (auto& f : fixed_u32_nodes(tables)) plan_.desired.u32.push_back(std::move(f));
        return std::move(plan_);
    }

private:
    static const tc::DeviceState& observed_of(const PlanInput& in, const std::string& device) {
        static const tc::DeviceState kEmpty;
        auto it = in.observed.find(device);
        return it == in.observed.end() ? kEmpty : it->second;
    }

    tc::Handle class_handle(const std::optional<std::string>& name) const {
        if (!name) return tc::kRootClass;
        auto it = class_ids_.find(*name);
        return it == class_ids_.end() ? tc::kRootClass : it->second;
    }

    Status static_classes();
    std::set<std::string> parent_names(const std::vector<policy::Class>& classes) const;
    void collect_slots();
    Status client_classes();
    void add_leaf(const tc::HtbClass& cls);

    const PlanInput& in_;
    const policy::Interface& iface_;
    IdAllocator ids_;
    DevicePlan plan_;
    std::map<std::string, tc::Handle> class_ids_;
    std::vector<ClientSlot> slots_;
};

void DevicePlanner::add_leaf(const tc::HtbClass& cls) {
    if (in_.resolved.leaf_kind == "pfifo") return;  // the kernel's default leaf
    tc::LeafQdisc q;
    q.parent = cls.classid;
    q.handle = tc::make_handle(tc::minor_of(cls.classid), 0);
    q.kind = in_.resolved.leaf_kind;
    if (q.kind == "bfifo")
        q.limit_bytes = tc::leaf_queue_bytes(cls.ceil_bytes_per_s, in_.resolved.leaf_queue_ms);
    plan_.desired.leaves.push_back(q);
}

std::set<std::string> DevicePlanner::parent_names(const std::vector<policy::Class>& classes) const {
    std::set<std::string> parents;
    for (const auto& c : classes)
        if (c.parent) parents.insert(*c.parent);
    for (const auto& cap : in_.policy->caps)
        if (cap.device == iface_.device && cap.parent) parents.insert(*cap.parent);
    for (const auto& d : in_.policy->detects)
        if (d.device == iface_.device && d.parent) parents.insert(*d.parent);
    return parents;
}

Status DevicePlanner::static_classes() {
    auto& st = plan_.desired;
    st.root = tc::HtbQdisc{tc::kRootQdisc, tc::make_handle(tc::kMajor, kDefaultClassMinor), 10};
    uint64_t link = iface_.rate_bits_per_s;
    st.classes.push_back(make_class(tc::kRootClass, tc::kRootQdisc, link, link, 0, "root"));

    std::vector<policy::Class> classes = iface_.classes;
    std::string default_name = iface_.default_class;
    if (classes.empty()) {
        policy::Class implicit;
        implicit.name = default_name.empty() ? "default" : default_name;
        implicit.rate_bits_per_s = link;
        implicit.ceil_bits_per_s = link;
        classes.push_back(implicit);
        default_name = implicit.name;
    }
    // HTB sends traffic whose default class is an inner class straight to the device, unshaped.
    // So when the default class is also a parent, its unclassified traffic gets a leaf of its
    // own below it, and that leaf is what HTB's default names (always f5:2).
    auto parents = parent_names(classes);
    bool default_is_parent = parents.count(default_name) > 0;
    uint16_t next = 3;
    for (const auto& c : classes) {
        if (c.name == default_name && !default_is_parent) {
            class_ids_[c.name] = tc::make_handle(tc::kMajor, kDefaultClassMinor);
            continue;
        }
        if (next == tc::kMajor) ++next;  // leaf qdisc majors equal class minors: keep f5: ours
        if (next >= kFirstClientMinor)
            return make_error("plan", iface_.device, 0, "more than 252 classes in one [[interface]]");
        class_ids_[c.name] = tc::make_handle(tc::kMajor, next++);
    }
    // Parents before children: the policy loader rejected cycles, so repeated passes finish.
    std::vector<bool> done(classes.size(), false);
    std::set<std::string> placed;
    for (size_t round = 0; round <= classes.size(); ++round) {
        for (size_t i = 0; i < classes.size(); ++i) {
            const auto& c = classes[i];
            if (done[i] || (c.parent && !placed.count(*c.parent))) continue;
            auto cls = make_class(class_ids_[c.name], class_handle(c.parent), c.rate_bits_per_s,
                                  c.ceil_bits_per_s, c.prio, "class " + c.name);
            if (c.burst_bytes)
                cls.burst_bytes = cls.cburst_bytes =
                    static_cast<uint32_t>(std::min<uint64_t>(*c.burst_bytes, 0x7fffffff));
            st.classes.push_back(cls);
            placed.insert(c.name);
            done[i] = true;
            if (c.name == default_name && default_is_parent) {
                auto rest = make_class(tc::make_handle(tc::kMajor, kDefaultClassMinor), cls.classid,
                                       c.rate_bits_per_s, c.ceil_bits_per_s, c.prio,
                                       "class " + c.name + ": unclassified traffic");
                st.classes.push_back(rest);
                add_leaf(rest);
            }
        }
    }
    for (const auto& c : classes) {
        if (parents.count(c.name)) continue;
        for (const auto& cls : st.classes)
            if (cls.classid == class_ids_[c.name]) add_leaf(cls);
    }
    return {};
}

void DevicePlanner::collect_slots() {
    const auto& pol = *in_.policy;
    for (const auto& cap : pol.caps) {
        if (cap.device != iface_.device) continue;
        if (cap.shared) {
            ClientSlot s{"cap " + cap.name,
                         class_handle(cap.parent),
                         cap.rate_bits_per_s,
                         cap.ceil_bits_per_s,
                         {},
                         false,
                         0,
                         {ClassOwner::Kind::Cap, cap.name, std::nullopt}};
            for (const auto& p : cap.clients) s.matches.push_back({p, -1});
            slots_.push_back(std::move(s));
            continue;
        }
        for (const auto& p : cap.clients)
            slots_.push_back({"cap " + cap.name + " " + p.str(),
                              class_handle(cap.parent),
                              cap.rate_bits_per_s,
                              cap.ceil_bits_per_s,
                              {{p, -1}},
                              false,
                              0,
                              {ClassOwner::Kind::Cap, cap.name, std::nullopt}});
    }
    std::vector<HeavyClient> heavy = in_.heavy;
    std::sort(heavy.begin(), heavy.end());
    for (const auto& h : heavy) {
        if (h.rule_index >= pol.detects.size()) continue;
        const auto& rule = pol.detects[h.rule_index];
        if (rule.device != iface_.device) continue;
        net::Prefix host{h.client, static_cast<uint8_t>(h.client.bit_width())};
        slots_.push_back({"heavy " + rule.name + " " + host.str(),
                          class_handle(rule.parent),
                          rule.limit.rate_bits_per_s,
                          rule.limit.ceil_bits_per_s,
                          {{host, rule.dscp}},
                          true,
                          h.mark,
                          {ClassOwner::Kind::Heavy, rule.name, h.client}});
    }
}

Status DevicePlanner::client_classes() {
    bool fw = in_.resolved.classifier == ClassifierKind::Fw;
    uint32_t mark_mask = in_.policy->settings.mark_mask;
    std::vector<std::optional<tc::Handle>> ids(slots_.size());
    for (size_t i = 0; i < slots_.size(); ++i) {
        const auto& s = slots_[i];
        if (fw && s.heavy) {
            ids[i] = ids_.reuse_class_for_mark(s.mark);
            continue;
        }
        // A shared cap keeps its class as long as any of its prefixes is still there.
        for (const auto& m : s.matches)
            if ((ids[i] = ids_.reuse_class(m))) break;
    }
    for (size_t i = 0; i < slots_.size(); ++i) {
        auto& s = slots_[i];
        if (!ids[i]) {
            auto fresh = ids_.new_class();
            if (!fresh) return fresh.error();
            ids[i] = *fresh;
        }
        plan_.desired.classes.push_back(make_class(*ids[i], s.parent, s.rate_bits, s.ceil_bits, 0, s.label));
        plan_.owners[*ids[i]] = s.owner;
        add_leaf(plan_.desired.classes.back());
        ++plan_.client_classes;
        if (fw && s.heavy) {
            plan_.desired.fw.push_back({kPrioFw, tc::kEthPAll, s.mark, mark_mask, *ids[i], s.label});
            continue;
        }
        for (const auto& m : s.matches) {
            auto place = place_for(m.prefix);
            if (place.table == 0) ++plan_.wide_prefixes;
            uint32_t first = s.heavy ? 1 : kFirstStaticNode;
            uint32_t last = s.heavy ? kFirstStaticNode - 1 : 0xffe;
            if (place.table == 0 && !s.heavy) first = 0x10;  // after the links in the root table
            auto handle = ids_.node(m, place, first, last);
            if (!handle) return handle.error();
            tc::U32Filter f;
            f.role = tc::U32Filter::Role::Match;
            f.prio = place.prio;
            f.protocol = place.protocol;
            f.handle = *handle;
            f.keys = keys_for(m);
            f.classid = *ids[i];
            f.label = s.label;
            plan_.desired.u32.push_back(std::move(f));
        }
    }
    return {};
}

}  // namespace

uint32_t burst_for(uint64_t bytes_per_s) {
    uint64_t b = bytes_per_s / 1000 + kMtuBytes;
    return static_cast<uint32_t>(std::min<uint64_t>(b, 0x7fffffff));
}

uint32_t quantum_for(uint64_t bytes_per_s) {
    return static_cast<uint32_t>(std::clamp<uint64_t>(bytes_per_s / 10, kMtuBytes, 200000));
}

namespace {

// The one place where the leaf queue's kind is chosen: fq_codel (per-flow queues, CoDel keeps the
// delay near 5 ms), else sfq, else a bfifo sized in bytes by leaf_queue. pfifo is the kernel's
// default leaf (txqueuelen packets, seconds at a few Mbit/s): only on request. Returns the kind
// and why it was chosen.
using LeafChoice = std::pair<std::string, std::string>;  // kind, why

Result<LeafChoice> resolve_leaf(const policy::Settings& settings, const tc::Features& features) {
    std::string queue = policy::format_duration(settings.leaf_queue_ms);
    std::string bfifo_why = "byte-sized fifo holding " + queue +
                            " at each class's ceil (leaf_queue), at least " +
                            std::to_string(tc::kMinLeafQueueBytes) + " bytes";
    switch (settings.leaf_qdisc) {
        case policy::LeafQdisc::Auto:
            if (features.fq_codel)
                return LeafChoice{std::string("fq_codel"), "auto: the kernel has fq_codel"};
            if (features.sfq)
                return LeafChoice{std::string("sfq"), "auto: the kernel has sfq but not fq_codel"};
            return LeafChoice{std::string("bfifo"), "auto: the kernel has neither fq_codel nor sfq (" +
                                                        features.source + "); " + bfifo_why};
        case policy::LeafQdisc::Bfifo:
            return LeafChoice{std::string("bfifo"), "leaf_qdisc = bfifo; " + bfifo_why};
        case policy::LeafQdisc::Pfifo:
            return LeafChoice{std::string("pfifo"),
                              "leaf_qdisc = pfifo: the kernel's default leaf, txqueuelen packets long "
                              "(seconds of delay at a few Mbit/s)"};
        case policy::LeafQdisc::FqCodel:
        case policy::LeafQdisc::Sfq:
            break;
    }
    bool codel = settings.leaf_qdisc == policy::LeafQdisc::FqCodel;
    if (codel ? !features.fq_codel : !features.sfq)
        return make_error("leaf_qdisc", codel ? "fq_codel" : "sfq", 0,
                          "the kernel does not have it (checked via " + features.source +
                              "); use leaf_qdisc = \"auto\" or \"bfifo\"");
    return LeafChoice{std::string(codel ? "fq_codel" : "sfq"),
                      std::string("leaf_qdisc = ") + (codel ? "fq_codel" : "sfq")};
}

}  // namespace

Result<Resolved> resolve(const policy::Settings& settings, const tc::Features& features) {
    Resolved r;
    switch (settings.classifier) {
        case policy::Classifier::Fw:
            if (!features.cls_fw)
                return make_error("classifier", "fw", 0,
                                  "the kernel has no cls_fw (CONFIG_NET_CLS_FW, checked via " +
                                      features.source + "); use classifier = \"u32\" or \"auto\"");
            r.classifier = ClassifierKind::Fw;
            break;
        case policy::Classifier::U32:
            r.classifier = ClassifierKind::U32;
            break;
        case policy::Classifier::Auto:
            r.classifier = features.cls_fw ? ClassifierKind::Fw : ClassifierKind::U32;
            r.notes.push_back(std::string("classifier auto -> ") + (features.cls_fw ? "fw" : "u32") +
                              (features.cls_fw ? "" : ": the kernel has no cls_fw") + " (" + features.source +
                              ")");
            break;
    }
    auto leaf = resolve_leaf(settings, features);
    if (!leaf) return leaf.error();
    r.leaf_kind = leaf->first;
    r.leaf_reason = leaf->second;
    r.leaf_queue_ms = settings.leaf_queue_ms;
    r.notes.push_back("leaf queue " + r.leaf_kind + ": " + r.leaf_reason);
    return r;
}

Result<std::vector<DevicePlan>> make_plan(const PlanInput& input) {
    std::vector<DevicePlan> plans;
    for (const auto& iface : input.policy->interfaces) {
        auto p = DevicePlanner(input, iface).run();
        if (!p) return p.error();
        plans.push_back(std::move(*p));
    }
    return plans;
}

}  // namespace flowshaper::plan

namespace flowshaper::plan {

std::vector<HeavyClient> heavy_clients_in(const policy::Policy& policy, const tc::DeviceState& state) {
    std::vector<HeavyClient> out;
    for (const auto& f : state.u32) {
        auto id = identity_of(f);
        if (!id || id->dscp < 0 || !id->prefix.is_host()) continue;
        for (size_t i = 0; i < policy.detects.size(); ++i) {
            const auto& rule = policy.detects[i];
            if (rule.device == state.device && rule.dscp == id->dscp) {
                out.push_back({i, id->prefix.address, 0});
                break;
            }
        }
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

}  // namespace flowshaper::plan
