#include "flowshaper/controller/show.hpp"

#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <sstream>
#include <thread>

#include "flowshaper/plan/u32_match.hpp"

namespace flowshaper::controller {

namespace {

// What a class is for, from the filters that point at it (the kernel keeps no names).
std::map<tc::Handle, std::string> describe_classes(const tc::DeviceState& st) {
    std::map<tc::Handle, std::string> out;
    out[tc::kRootClass] = "root";
    if (st.root) out[st.root->default_class] = "default";
    for (const auto& f : st.u32) {
        if (f.role != tc::U32Filter::Role::Match) continue;
        auto id = plan::identity_of(f);  // the keys plan wrote, read back by plan's own decoder
        std::string text = id ? plan::describe(*id)
                              : "u32 node " + tc::format_u32_handle(f.handle) + " (keys not flowshaper's)";
        auto& slot = out[f.classid];
        slot = slot.empty() ? text : slot + ", " + (id ? id->prefix.str() : text);
    }
    for (const auto& f : st.fw) out[f.classid] = "mark " + std::to_string(f.handle);
    return out;
}

std::vector<ClassView> order_classes(const tc::ObservedDevice& dev) {
    std::map<tc::Handle, tc::ClassStats> stats;
    for (const auto& s : dev.stats) stats[s.classid] = s;
    auto what = describe_classes(dev.state);
    std::multimap<tc::Handle, const tc::HtbClass*> children;
    for (const auto& c : dev.state.classes) children.emplace(c.parent, &c);
    std::vector<ClassView> out;
    // Depth-first, parents before children.
    std::function<void(tc::Handle)> walk = [&](tc::Handle parent) {
        auto [b, e] = children.equal_range(parent);
        for (auto it = b; it != e; ++it) {
            ClassView v;
            v.cls = *it->second;
            v.stats = stats[v.cls.classid];
            v.what = what.count(v.cls.classid) ? what[v.cls.classid] : "class";
            v.is_default = dev.state.root && dev.state.root->default_class == v.cls.classid;
            out.push_back(v);
            walk(v.cls.classid);
        }
    };
    walk(tc::kRootQdisc);
    return out;
}

std::string rate_text(uint64_t bits_per_s) {
    char buf[32];
    if (bits_per_s >= 1'000'000'000)
        std::snprintf(buf, sizeof buf, "%.2fGbit", bits_per_s / 1e9);
    else if (bits_per_s >= 1'000'000)
        std::snprintf(buf, sizeof buf, "%.2fMbit", bits_per_s / 1e6);
    else if (bits_per_s >= 1000)
        std::snprintf(buf, sizeof buf, "%.1fKbit", bits_per_s / 1e3);
    else
        std::snprintf(buf, sizeof buf, "%llubit", static_cast<unsigned long long>(bits_per_s));
    return buf;
}

}  // namespace

Result<std::vector<DeviceView>> collect_status(kernel::TcPort& port, kernel::LinkPort& links,
                                               const std::vector<std::string>& devices, uint64_t sample_ms) {
    std::vector<std::string> names = devices;
    bool all = names.empty();
    if (all) {
        auto listed = links.devices();
        if (!listed) return listed.error();
        names = *listed;
    }
    std::vector<DeviceView> views;
    std::vector<std::map<tc::Handle, uint64_t>> before;
    for (const auto& name : names) {
        auto dev = port.read(name);
        if (!dev) {
            if (all) continue;
            return dev.error();
        }
        if (dev->root_info.owner != tc::RootInfo::Owner::Ours) {
            if (all) continue;
            return make_error("show", name, ENOENT, "flowshaper has nothing on this device");
        }
        DeviceView v;
        v.device = name;
        v.classes = order_classes(*dev);
        for (const auto& f : dev->state.u32) v.match_filters += f.role == tc::U32Filter::Role::Match;
        v.fw_filters = dev->state.fw.size();
        for (const auto& q : dev->state.leaves) v.leaf_kinds.push_back(q.kind);
        std::map<tc::Handle, uint64_t> bytes;
        for (const auto& c : v.classes) bytes[c.cls.classid] = c.stats.bytes;
        before.push_back(std::move(bytes));
        views.push_back(std::move(v));
    }
    if (sample_ms == 0 || views.empty()) return views;
    auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(sample_ms));
    for (size_t i = 0; i < views.size(); ++i) {
        auto dev = port.read(views[i].device);
        if (!dev) return dev.error();
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::map<tc::Handle, tc::ClassStats> now;
        for (const auto& s : dev->stats) now[s.classid] = s;
        for (auto& c : views[i].classes) {
            auto it = now.find(c.cls.classid);
            if (it == now.end()) continue;
            uint64_t delta = it->second.bytes >= before[i][c.cls.classid]
                                 ? it->second.bytes - before[i][c.cls.classid]
                                 : 0;
            c.rate_bits_per_s = static_cast<uint64_t>(static_cast<double>(delta) * 8 / secs);
            c.stats = it->second;
        }
    }
    return views;
}

std::string render_status(const std::vector<DeviceView>& views) {
    std::ostringstream out;
    if (views.empty()) out << "flowshaper has nothing on any device\n";
    for (const auto& v : views) {
        out << v.device << ": " << v.classes.size() << " classes, " << v.match_filters
            << " u32 match filters";
        if (v.fw_filters) out << ", " << v.fw_filters << " fw filters";
        out << "\n";
        char line[256];
        std::snprintf(line, sizeof line, "  %-9s %-9s %-10s %-10s %14s %10s %8s %11s  %s\n", "class",
                      "parent", "rate", "ceil", "bytes", "packets", "drops", "now", "for");
        out << line;
        for (const auto& c : v.classes) {
            std::snprintf(
                line, sizeof line, "  %-9s %-9s %-10s %-10s %14llu %10llu %8llu %11s  ",
                tc::format_handle(c.cls.classid).c_str(), tc::format_handle(c.cls.parent).c_str(),
                rate_text(c.cls.rate_bytes_per_s * 8).c_str(), rate_text(c.cls.ceil_bytes_per_s * 8).c_str(),
                static_cast<unsigned long long>(c.stats.bytes),
                static_cast<unsigned long long>(c.stats.packets),
                static_cast<unsigned long long>(c.stats.drops), rate_text(c.rate_bits_per_s).c_str());
            out << line << c.what << (c.is_default ? " [default]" : "") << "\n";  // `what` may be long
        }
    }
    return out.str();
}

nlohmann::json status_json(const std::vector<DeviceView>& views) {
    auto devices = nlohmann::json::array();
    for (const auto& v : views) {
        auto classes = nlohmann::json::array();
        for (const auto& c : v.classes) {
            classes.push_back({{"classid", tc::format_handle(c.cls.classid)},
                               {"parent", tc::format_handle(c.cls.parent)},
                               {"rate_bits_per_s", c.cls.rate_bytes_per_s * 8},
                               {"ceil_bits_per_s", c.cls.ceil_bytes_per_s * 8},
                               {"bytes", c.stats.bytes},
                               {"packets", c.stats.packets},
                               {"drops", c.stats.drops},
                               {"overlimits", c.stats.overlimits},
                               {"current_rate_bits_per_s", c.rate_bits_per_s},
                               {"what", c.what},
                               {"default", c.is_default}});
        }
        devices.push_back({{"device", v.device},
                           {"classes", classes},
                           {"u32_match_filters", v.match_filters},
                           {"fw_filters", v.fw_filters}});
    }
    return {{"devices", devices}};
}

}  // namespace flowshaper::controller
