#include <charconv>
#include <cstdio>
#include <iterator>

#include "flowshaper/controller/metrics.hpp"

#ifndef FLOWSHAPER_VERSION
#define FLOWSHAPER_VERSION "unknown"
#endif

namespace flowshaper::controller {

namespace {

std::string escape_label(const std::string& value) {
    std::string out;
    for (char c : value) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

std::string number(double v) {  // the shortest text that reads back as v: 0.025, not 0.025000000000000001
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    return ec == std::errc() ? std::string(buf, end) : "NaN";
}

std::string number(uint64_t v) {
    return std::to_string(v);
}

std::string seconds(uint64_t unix_ms) {
    return number(static_cast<double>(unix_ms) / 1000);
}

using Labels = std::vector<std::pair<std::string, std::string>>;

class Writer {
public:
    void family(const char* name, const char* type, const char* help) {
        out_ += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    }
    void sample(const std::string& name, const Labels& labels, const std::string& value) {
        out_ += name;
        if (!labels.empty()) {
            out_ += '{';
            for (size_t i = 0; i < labels.size(); ++i)
                out_ += (i ? "," : "") + labels[i].first + "=\"" + escape_label(labels[i].second) + "\"";
            out_ += '}';
        }
        out_ += ' ' + value + '\n';
    }
    void single(const char* name, const char* type, const char* help, const std::string& value) {
        family(name, type, help);
        sample(name, {}, value);
    }
    std::string take() { return std::move(out_); }

private:
    std::string out_;
};

bool policy_class(const ClassSnapshot& c) {
    return c.kind == ClassSnapshot::Kind::Root || c.kind == ClassSnapshot::Kind::Policy;
}

void classes(Writer& w, const Snapshot& s) {
    struct Field {
        const char* name;
        const char* type;
        const char* help;
        uint64_t (*get)(const ClassSnapshot&);
    };
    static const Field fields[] = {
        {"flowshaper_class_sent_bytes_total", "counter",
         "Bytes sent through the policy's class (kernel counter).",
         [](const ClassSnapshot& c) { return c.bytes; }},
        {"flowshaper_class_sent_packets_total", "counter", "Packets sent through the policy's class.",
         [](const ClassSnapshot& c) { return c.packets; }},
        {"flowshaper_class_dropped_packets_total", "counter", "Packets the class dropped.",
         [](const ClassSnapshot& c) { return c.drops; }},
        {"flowshaper_class_overlimits_total", "counter", "Times the class was over its limit.",
         [](const ClassSnapshot& c) { return c.overlimits; }},
        {"flowshaper_class_rate_bytes_per_second", "gauge", "The class's configured rate.",
         [](const ClassSnapshot& c) { return c.rate_bits_per_s / 8; }},
        {"flowshaper_class_ceil_bytes_per_second", "gauge", "The class's configured ceil.",
         [](const ClassSnapshot& c) { return c.ceil_bits_per_s / 8; }},
        {"flowshaper_class_throughput_bytes_per_second", "gauge",
         "The class's rate measured between two polls.",
         [](const ClassSnapshot& c) { return c.current_bits_per_s / 8; }},
    };
    for (const Field& f : fields) {
        w.family(f.name, f.type, f.help);
        for (const auto& d : s.devices)
            for (const auto& c : d.classes)
                if (policy_class(c))
                    w.sample(f.name, {{"device", d.name}, {"class", c.name}, {"classid", c.classid}},
                             number(f.get(c)));
    }
}

void devices(Writer& w, const Snapshot& s) {
    w.family("flowshaper_device_tree_state", "gauge",
             "1 for the state the device's tree is in (in-sync, repairing, missing).");
    for (const auto& d : s.devices)
        for (TreeState st : {TreeState::InSync, TreeState::Repairing, TreeState::Missing})
            w.sample("flowshaper_device_tree_state", {{"device", d.name}, {"state", to_string(st)}},
                     d.state == st ? "1" : "0");
}

void sums(Writer& w, const char* kind, const std::map<std::string, uint64_t>& bytes,
          const std::map<std::string, uint64_t>& packets, const std::map<std::string, uint64_t>& drops) {
    const std::string prefix = std::string("flowshaper_") + kind;
    const std::string help = std::string(" through the client classes of each ") + kind +
                             ", summed (kept when a client's class is removed).";
    const std::tuple<std::string, std::string, const std::map<std::string, uint64_t>*> fams[] = {
        {prefix + "_sent_bytes_total", "Bytes sent" + help, &bytes},
        {prefix + "_sent_packets_total", "Packets sent" + help, &packets},
        {prefix + "_dropped_packets_total", "Packets dropped" + help, &drops},
    };
    for (const auto& [name, text, values] : fams) {
        w.family(name.c_str(), "counter", text.c_str());
        for (const auto& [owner, v] : *values) w.sample(name, {{kind, owner}}, number(v));
    }
}

void poll_histogram(Writer& w, const Counters& c) {
    const char* name = "flowshaper_poll_duration_seconds";
    w.family(name, "histogram", "Time one conntrack poll took: dump, accounting, decisions, marks.");
    for (size_t i = 0; i < std::size(Counters::kPollBuckets); ++i)
        w.sample(std::string(name) + "_bucket", {{"le", number(Counters::kPollBuckets[i])}},
                 number(c.poll_bucket_counts[i]));
    w.sample(std::string(name) + "_bucket", {{"le", "+Inf"}}, number(c.poll_count));
    w.sample(std::string(name) + "_sum", {}, number(c.poll_seconds_sum));
    w.sample(std::string(name) + "_count", {}, number(c.poll_count));
}

void counters(Writer& w, const Counters& c) {
    w.single("flowshaper_caps_applied_total", "counter", "Heavy clients capped.", number(c.caps_applied));
    w.single("flowshaper_caps_released_total", "counter", "Heavy clients released.", number(c.caps_released));
    w.single("flowshaper_conntrack_entries_read_total", "counter", "Conntrack entries read by the polls.",
             number(c.conntrack_entries_read));
    w.single("flowshaper_conntrack_events_lost_total", "counter",
             "Times conntrack events were lost (ENOBUFS).", number(c.events_lost));
    w.single("flowshaper_kernel_changes_total", "counter", "Changes sent to the kernel.",
             number(c.kernel_changes));
    w.single("flowshaper_errors_total", "counter", "Errors logged.", number(c.errors));
    w.single("flowshaper_drift_repairs_total", "counter", "Repairs of kernel state changed by someone else.",
             number(c.drift_repairs));
    w.single("flowshaper_reloads_total", "counter", "Successful policy reloads.", number(c.reloads));
    w.single("flowshaper_reload_failures_total", "counter", "Rejected or failed policy reloads.",
             number(c.reload_failures));
    w.single("flowshaper_last_reload_success_timestamp_seconds", "gauge",
             "When the policy was last reloaded successfully (0: never).",
             seconds(c.last_reload_success_unix_ms));
}

}  // namespace

std::string render_metrics(const Snapshot& s) {
    Writer w;
    w.family("flowshaper_build_info", "gauge", "The running flowshaper's version.");
    w.sample("flowshaper_build_info", {{"version", FLOWSHAPER_VERSION}}, "1");
    w.single("flowshaper_start_time_seconds", "gauge", "When the daemon started (Unix time).",
             seconds(s.started_unix_ms));
    w.single("flowshaper_policy_loaded_timestamp_seconds", "gauge", "When the running policy was loaded.",
             seconds(s.policy_loaded_unix_ms));
    devices(w, s);
    classes(w, s);
    sums(w, "rule", s.counters.rule_bytes, s.counters.rule_packets, s.counters.rule_drops);
    sums(w, "cap", s.counters.cap_bytes, s.counters.cap_packets, s.counters.cap_drops);
    w.family("flowshaper_heavy_clients", "gauge", "Clients capped by each [[detect]] rule now.");
    for (const auto& [rule, n] : s.heavy_per_rule)
        w.sample("flowshaper_heavy_clients", {{"rule", rule}}, number(uint64_t{n}));
    poll_histogram(w, s.counters);
    w.single("flowshaper_last_poll_timestamp_seconds", "gauge", "When the last poll ended.",
             seconds(s.last_poll.at_unix_ms));
    w.single("flowshaper_last_poll_conntrack_entries", "gauge", "Conntrack entries the last poll read.",
             number(s.last_poll.entries));
    counters(w, s.counters);
    return w.take();
}

}  // namespace flowshaper::controller
