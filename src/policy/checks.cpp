// Cross-table checks: duplicate names and devices, parents and cycles, guaranteed-rate sums,
// devices without an [[interface]], and clients capped twice.
#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include "draft.hpp"
#include "flowshaper/policy/units.hpp"
#include "suggest.hpp"

namespace flowshaper::policy::detail {

namespace {

using u128 = unsigned __int128;

const SourceLoc* find_loc(const Locs& locs, std::string_view key) {
    auto it = locs.find(key);
    return it == locs.end() ? nullptr : &it->second;
}

// The class names of one interface, or nullopt when some class has no valid name (then
// name lookups would report errors that are only consequences).
std::optional<std::vector<std::string_view>> class_names(const Interface& iface,
                                                         const std::vector<Locs>& locs) {
    std::vector<std::string_view> names;
    for (size_t i = 0; i < iface.classes.size(); ++i) {
        if (!find_loc(locs[i], "name")) return std::nullopt;
        names.push_back(iface.classes[i].name);
    }
    return names;
}

// "parent 'x' is not a class of eth0; did you mean 'y'?"
void check_class_ref(Sink& sink, const SourceLoc& at, std::string_view key, const std::string& name,
                     const std::string& device, const std::vector<std::string_view>& names) {
    if (std::find(names.begin(), names.end(), name) != names.end()) return;
    std::string message = std::string(key) + " '" + name + "' is not a class of " + device;
    if (names.empty())
        message += " (it has no [[interface.class]])";
    else
        message += did_you_mean(closest(name, names));
    sink.error(at, message);
}

void check_cycles(Sink& sink, const Interface& iface, const std::vector<Locs>& locs,
                  const std::vector<std::string_view>& names) {
    const size_t n = iface.classes.size();
    auto parent_of = [&](size_t i) -> std::optional<size_t> {
        if (!iface.classes[i].parent || !find_loc(locs[i], "parent")) return std::nullopt;
        auto it = std::find(names.begin(), names.end(), *iface.classes[i].parent);
        if (it == names.end()) return std::nullopt;
        return static_cast<size_t>(it - names.begin());
    };
    for (size_t start = 0; start < n; ++start) {
        std::string path = iface.classes[start].name;
        std::optional<size_t> at = parent_of(start);
        size_t lowest = start;
        for (size_t steps = 0; at && *at != start && steps < n; ++steps) {
            lowest = std::min(lowest, *at);
            path += " -> " + iface.classes[*at].name;
            at = parent_of(*at);
        }
        if (!at || *at != start || lowest != start) continue;  // no cycle through start, or reported
        sink.error(*find_loc(locs[start], "parent"), "class '" + iface.classes[start].name +
                                                         "' is its own ancestor: " + path + " -> " +
                                                         iface.classes[start].name);
    }
}

// The children's guaranteed rates must fit in their parent's rate (and the top level in the link).
void check_sums(Sink& sink, const Interface& iface, const Locs& iface_locs, const std::vector<Locs>& locs) {
    std::map<std::string, u128> children;  // parent name ("" = top level) -> sum of rates
    for (size_t i = 0; i < iface.classes.size(); ++i) {
        if (!find_loc(locs[i], "rate")) continue;
        std::string parent =
            iface.classes[i].parent && find_loc(locs[i], "parent") ? *iface.classes[i].parent : "";
        children[parent] += iface.classes[i].rate_bits_per_s;
    }
    auto show = [](u128 v) {
        return v > UINT64_MAX ? std::string("more than 18446744073709551615bit")
                              : format_rate(static_cast<uint64_t>(v));
    };
    if (const SourceLoc* at = find_loc(iface_locs, "rate"); at && children[""] > iface.rate_bits_per_s)
        sink.error(*at, "the top-level classes of " + iface.device + " guarantee " + show(children[""]) +
                            " in total, more than the interface rate " + format_rate(iface.rate_bits_per_s));
    for (size_t i = 0; i < iface.classes.size(); ++i) {
        const SourceLoc* at = find_loc(locs[i], "rate");
        if (!at || !find_loc(locs[i], "name")) continue;
        auto it = children.find(iface.classes[i].name);
        if (it != children.end() && it->second > iface.classes[i].rate_bits_per_s)
            sink.error(*at, "the classes under '" + iface.classes[i].name + "' guarantee " +
                                show(it->second) + " in total, more than its rate " +
                                format_rate(iface.classes[i].rate_bits_per_s));
    }
}

void check_interface(Sink& sink, const Interface& iface, const Locs& iface_locs,
                     const std::vector<Locs>& locs) {
    std::map<std::string, SourceLoc> seen;
    for (size_t i = 0; i < iface.classes.size(); ++i) {
        const SourceLoc* at = find_loc(locs[i], "name");
        if (!at) continue;
        auto [it, fresh] = seen.emplace(iface.classes[i].name, *at);
        if (!fresh)
            sink.error(*at, "duplicate class '" + iface.classes[i].name + "' on " + iface.device +
                                "; the first is at " + sink.where(it->second));
    }
    check_sums(sink, iface, iface_locs, locs);
    auto names = class_names(iface, locs);
    if (!names) return;
    if (const SourceLoc* at = find_loc(iface_locs, "default_class"))
        check_class_ref(sink, *at, "default_class", iface.default_class, iface.device, *names);
    for (size_t i = 0; i < iface.classes.size(); ++i)
        if (const SourceLoc* at = find_loc(locs[i], "parent"))
            check_class_ref(sink, *at, "parent", *iface.classes[i].parent, iface.device, *names);
    check_cycles(sink, iface, locs, *names);
}

// A cap's or detect's device and parent.
void check_device_ref(Sink& sink, const Draft& draft, const Locs& locs, const std::string& device,
                      const std::optional<std::string>& parent) {
    const SourceLoc* at = find_loc(locs, "device");
    if (!at) return;
    std::vector<std::string_view> devices;
    for (size_t i = 0; i < draft.policy.interfaces.size(); ++i) {
        const Interface& iface = draft.policy.interfaces[i];
        if (!find_loc(draft.interface_locs[i], "device")) continue;
        if (iface.device != device) {
            devices.push_back(iface.device);
            continue;
        }
        const SourceLoc* parent_at = find_loc(locs, "parent");
        auto names = class_names(iface, draft.class_locs[i]);
        if (parent_at && names) check_class_ref(sink, *parent_at, "parent", *parent, device, *names);
        return;
    }
    sink.error(*at, "no [[interface]] for device '" + device + "'" + did_you_mean(closest(device, devices)));
}

void check_names(Sink& sink, const Draft& draft) {
    std::map<std::string, std::pair<std::string_view, SourceLoc>> seen;
    auto visit = [&](const std::string& name, const Locs& locs, std::string_view kind) {
        const SourceLoc* at = find_loc(locs, "name");
        if (!at) return;
        auto [it, fresh] = seen.emplace(name, std::pair{kind, *at});
        if (!fresh)
            sink.error(*at, "name '" + name + "' is already used by the " + std::string(it->second.first) +
                                " at " + sink.where(it->second.second));
    };
    for (size_t i = 0; i < draft.policy.caps.size(); ++i)
        visit(draft.policy.caps[i].name, draft.cap_locs[i], "[[cap]]");
    for (size_t i = 0; i < draft.policy.detects.size(); ++i)
        visit(draft.policy.detects[i].name, draft.detect_locs[i], "[[detect]]");
}

struct ClientRef {
    net::Prefix prefix;
    size_t cap;
    size_t index;
    const SourceLoc* loc;
};

bool before(const SourceLoc& a, const SourceLoc& b) {
    return a.line != b.line ? a.line < b.line : a.column < b.column;
}

// Overlapping clients of caps on one device. Prefixes are nested or disjoint, so after sorting
// each one needs comparing only with its innermost enclosing prefix (a stack).
void check_clients(Sink& sink, const Draft& draft, std::vector<ClientRef>& refs) {
    std::sort(refs.begin(), refs.end(), [](const ClientRef& a, const ClientRef& b) {
        if (a.prefix != b.prefix) return a.prefix < b.prefix;
        return before(*a.loc, *b.loc);
    });
    std::vector<const ClientRef*> stack;
    std::set<const SourceLoc*> reported;
    for (const ClientRef& ref : refs) {
        while (!stack.empty() && !(stack.back()->prefix.overlaps(ref.prefix))) stack.pop_back();
        if (!stack.empty()) {
            const ClientRef* first = stack.back();
            const ClientRef* later = &ref;
            if (before(*later->loc, *first->loc)) std::swap(first, later);
            if (reported.insert(later->loc).second) {
                std::string message = "client " + later->prefix.str();
                if (later->prefix != first->prefix) message += " overlaps " + first->prefix.str() + ",";
                message += later->prefix == first->prefix ? " is already " : " already ";
                if (first->cap == later->cap)
                    message += "listed in this cap";
                else
                    message += "capped by '" + draft.policy.caps[first->cap].name + "'";
                sink.error(*later->loc, message + " at " + sink.where(*first->loc));
            }
        }
        stack.push_back(&ref);
    }
}

void check_all_clients(Sink& sink, const Draft& draft) {
    std::map<std::string, std::vector<ClientRef>> by_device;
    for (size_t c = 0; c < draft.policy.caps.size(); ++c) {
        const Cap& cap = draft.policy.caps[c];
        if (!find_loc(draft.cap_locs[c], "device") || !find_loc(draft.cap_locs[c], "clients")) continue;
        for (size_t i = 0; i < cap.clients.size(); ++i)
            by_device[cap.device].push_back(ClientRef{cap.clients[i], c, i, &cap.client_locs[i]});
    }
    for (auto& [device, refs] : by_device) check_clients(sink, draft, refs);
}

// Each [[detect]] rule needs its own value in the mark bits (0 means: not heavy).
void check_mark_room(Sink& sink, const Draft& draft) {
    const auto& detects = draft.policy.detects;
    int bits = __builtin_popcount(draft.policy.settings.mark_mask);
    uint64_t room = bits >= 32 ? 0xffffffffull : (1ull << bits) - 1;
    if (draft.policy.settings.classifier == Classifier::Fw) room = bits >= 2 ? (1ull << (bits - 1)) - 1 : 0;
    if (detects.size() <= room) return;
    const Detect& d = detects[room];
    char mask[16];
    std::snprintf(mask, sizeof mask, "0x%x", draft.policy.settings.mark_mask);
    sink.error(d.loc, "[[detect]] '" + d.name + "' is rule " + std::to_string(room + 1) + ", but mark_mask " +
                          mask + " has room for " + std::to_string(room) + " rule" + (room == 1 ? "" : "s") +
                          " (each needs its own mark value); widen mark_mask");
}

// A cap's guaranteed rate above its parent's ceil (the interface rate at the top) can never be
// given: HTB lends a class no more than its parent's ceil. (A ceil above the parent's is the
// usual "borrow all there is" and fine; classes are held to their parents by check_sums.)
class RateCheck {
public:
    RateCheck(Sink& sink, const Draft& draft) : sink_(sink), draft_(draft) {}

    void run() {
        const Policy& p = draft_.policy;
        for (size_t i = 0; i < p.caps.size(); ++i)
            if (const Interface* iface = interface_of(p.caps[i].device, draft_.cap_locs[i]))
                check(find_loc(draft_.cap_locs[i], "rate"), "rate", draft_.cap_locs[i], *iface,
                      p.caps[i].parent, p.caps[i].rate_bits_per_s);
        for (size_t i = 0; i < p.detects.size(); ++i)
            if (const Interface* iface = interface_of(p.detects[i].device, draft_.detect_locs[i]))
                check(find_loc(draft_.detect_locs[i], "limit"), "limit rate", draft_.detect_locs[i], *iface,
                      p.detects[i].parent, p.detects[i].limit.rate_bits_per_s);
    }

private:
    const Interface* interface_of(const std::string& device, const Locs& locs) const {
        if (!find_loc(locs, "device")) return nullptr;
        for (const auto& iface : draft_.policy.interfaces)
            if (iface.device == device) return &iface;
        return nullptr;
    }

    void check(const SourceLoc* at, std::string_view what, const Locs& locs, const Interface& iface,
               const std::optional<std::string>& parent, uint64_t rate) {
        if (!at || rate == 0) return;
        uint64_t limit = iface.rate_bits_per_s;
        std::string whose = "the rate of interface " + iface.device;
        if (parent) {
            if (!find_loc(locs, "parent")) return;
            auto it = std::find_if(iface.classes.begin(), iface.classes.end(),
                                   [&](const Class& c) { return c.name == *parent; });
            if (it == iface.classes.end()) return;  // reported as an unknown parent
            limit = it->ceil_bits_per_s;
            whose = "the ceil of its parent class '" + *parent + "'";
        }
        if (rate <= limit || limit == 0) return;
        sink_.error(*at, std::string(what) + " " + format_rate(rate) + " is above " + whose + " (" +
                             format_rate(limit) + "), so it could never be given");
    }

    Sink& sink_;
    const Draft& draft_;
};

// How many classes fit in flowshaper's minor numbers on one device: 3..0xff for the policy's
// classes (0xf5 is the root qdisc's major), 0x100..0xffff for clients.
constexpr size_t kMaxPolicyClasses = 0xff - 3 + 1 - 1;
constexpr size_t kMaxClientClasses = 0xffff - 0x100 + 1;

void check_class_counts(Sink& sink, const Draft& draft) {
    const Policy& p = draft.policy;
    for (const auto& iface : p.interfaces) {
        // A default class that is a leaf has minor 2; a default that is a parent takes one of the
        // 252 numbers from 3 like the others (its leaf child for unclassified traffic has 2).
        bool default_is_parent = std::any_of(iface.classes.begin(), iface.classes.end(),
                                             [&](const Class& c) { return c.parent == iface.default_class; });
        size_t room = kMaxPolicyClasses + (iface.default_class.empty() || default_is_parent ? 0 : 1);
        if (iface.classes.size() > room)
            sink.error(iface.classes[room].loc, "interface " + iface.device + " has " +
                                                    std::to_string(iface.classes.size()) +
                                                    " classes; at most " + std::to_string(room) + " fit");
    }
    std::map<std::string, size_t> per_device;
    for (size_t i = 0; i < p.caps.size(); ++i) {
        const Cap& cap = p.caps[i];
        if (!find_loc(draft.cap_locs[i], "device")) continue;
        size_t& n = per_device[cap.device];
        size_t before = n;
        n += cap.shared ? 1 : cap.clients.size();
        if (before <= kMaxClientClasses && n > kMaxClientClasses)
            sink.error(cap.loc, "with this cap, device " + cap.device + " needs " + std::to_string(n) +
                                    " or more client classes; at most " + std::to_string(kMaxClientClasses) +
                                    " fit (share a class among clients with shared = true)");
    }
}

}  // namespace

void check_policy(Sink& sink, const Draft& draft) {
    std::map<std::string, SourceLoc> devices;
    for (size_t i = 0; i < draft.policy.interfaces.size(); ++i) {
        const Interface& iface = draft.policy.interfaces[i];
        if (const SourceLoc* at = find_loc(draft.interface_locs[i], "device")) {
            auto [it, fresh] = devices.emplace(iface.device, *at);
            if (!fresh)
                sink.error(*at, "duplicate [[interface]] for device '" + iface.device +
                                    "'; the first is at " + sink.where(it->second));
        }
        check_interface(sink, iface, draft.interface_locs[i], draft.class_locs[i]);
    }
    check_names(sink, draft);
    for (size_t i = 0; i < draft.policy.caps.size(); ++i)
        check_device_ref(sink, draft, draft.cap_locs[i], draft.policy.caps[i].device,
                         draft.policy.caps[i].parent);
    for (size_t i = 0; i < draft.policy.detects.size(); ++i)
        check_device_ref(sink, draft, draft.detect_locs[i], draft.policy.detects[i].device,
                         draft.policy.detects[i].parent);
    check_all_clients(sink, draft);
    check_mark_room(sink, draft);
    RateCheck(sink, draft).run();
    check_class_counts(sink, draft);
}

}  // namespace flowshaper::policy::detail
