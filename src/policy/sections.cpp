// Reading [settings], [[interface]] (+ [[interface.class]]), [[cap]] and [[detect]] tables.
#include <algorithm>
#include <cstdio>

#include "draft.hpp"
#include "flowshaper/policy/units.hpp"

namespace flowshaper::policy::detail {

namespace {

const std::vector<std::string_view> kSettingsKeys{"poll_interval", "mark_mask",  "classifier",   "on_exit",
                                                  "leaf_qdisc",    "leaf_queue", "status_socket",
                                                  "metrics_listen", "audit_log",  "firewall"};
const std::vector<std::string_view> kInterfaceKeys{"device", "rate", "default_class", "class"};
const std::vector<std::string_view> kClassKeys{"name", "rate", "ceil", "parent", "prio", "burst"};
const std::vector<std::string_view> kCapKeys{"name", "device", "clients", "rate", "ceil", "shared", "parent"};
const std::vector<std::string_view> kDetectKeys{"name",         "device",  "protocol",      "local_ports",
                                                "remote_ports", "clients", "exclude",       "flow_bytes",
                                                "client_bytes", "window",  "client_rate",   "for",
                                                "dscp",         "limit",   "release_after", "parent"};
const std::vector<std::string_view> kLimitKeys{"rate", "ceil"};

// The tables of an array of tables, or nothing (and a diagnostic) when it is something else.
std::vector<const toml::table*> tables_of(Sink& sink, const toml::node& node, const SourceLoc& key_loc,
                                          std::string_view key, std::string_view header) {
    std::vector<const toml::table*> out;
    const auto* array = node.as_array();
    bool ok = array != nullptr;
    if (array)
        for (const toml::node& element : *array) {
            if (!element.is_table()) ok = false;
            out.push_back(element.as_table());
        }
    if (!ok) {
        sink.error(sink.loc(node, key_loc), std::string("'").append(key) +
                                                "' must be an array of tables: write " + std::string(header));
        return {};
    }
    return out;
}

// "ceil 4mbit is below rate 5mbit" at ceil.
void check_ceil(TableReader& r, uint64_t rate, uint64_t ceil) {
    if (r.ok("rate") && r.ok("ceil") && ceil < rate)
        r.sink().error(r.value_loc("ceil"),
                       "ceil " + format_rate(ceil) + " is below rate " + format_rate(rate));
}

// Names end up in tc labels, `plan` and `show` output and the daemon's key=value log lines.
bool valid_name(std::string_view name) {
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '.' || c == '-';
    });
}

// For a message: control characters as \n, \t or \xNN.
std::string printable(std::string_view text) {
    std::string out;
    for (unsigned char c : text) {
        if (c == '\n') {
            out += "\\n";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7f) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", c);
            out += hex;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

// The name, reported when empty or with characters other than letters, digits, '_', '.', '-'
// (`valid` tells which; an invalid name is still returned, so that references to it match).
std::string read_name(TableReader& r, std::string_view what, bool* valid = nullptr) {
    if (valid) *valid = false;
    auto name = r.string("name", true);
    if (!name) return {};
    if (name->empty()) {
        r.sink().error(r.value_loc("name"), std::string(what) + " name must not be empty");
        return {};
    }
    if (!valid_name(*name))
        r.sink().error(r.value_loc("name"), std::string(what) + " name '" + printable(*name) +
                                                "' may contain only letters, digits, '_', '.' and '-'");
    else if (valid)
        *valid = true;
    return *name;
}

std::string read_device(TableReader& r, bool required) {
    auto device = r.string("device", required);
    if (!device) return {};
    if (!valid_ifname(*device)) {
        r.sink().error(r.value_loc("device"),
                       "'" + *device +
                           "' is not a valid interface name (1-15 characters, no '/', ':' "
                           "or whitespace)");
        return {};
    }
    return *device;
}

Class read_class(Sink& sink, const toml::table& table, Locs& locs) {
    TableReader r(sink, table, "[[interface.class]]", sink.loc(table.source()), kClassKeys);
    Class c;
    c.loc = r.table_loc();
    bool name_ok = false;
    c.name = read_name(r, "class", &name_ok);
    c.rate_bits_per_s = r.rate("rate", true).value_or(0);
    c.ceil_bits_per_s = r.rate("ceil", false).value_or(c.rate_bits_per_s);
    check_ceil(r, c.rate_bits_per_s, c.ceil_bits_per_s);
    c.parent = r.string("parent", false);
    c.prio = static_cast<uint32_t>(r.integer("prio", 0, 7, "from 0 (highest) to 7").value_or(0));
    c.burst_bytes = r.size("burst", false);
    locs = r.locs();
    if (!name_ok) locs.erase("name");
    return c;
}

constexpr uint64_t kMaxLeafQueueMs = 10'000;

// leaf_queue: how long a bfifo leaf may hold at its class's ceil (and what the release waits for).
void read_leaf_queue(TableReader& r, Settings& s) {
    auto ms = r.duration("leaf_queue", false);
    if (!ms) return;
    if (*ms > kMaxLeafQueueMs) {
        r.sink().error(r.value_loc("leaf_queue"),
                       "leaf_queue " + format_duration(*ms) +
                           " is longer than 10s: a queue that long is the delay it exists to prevent; "
                           "100ms is usual");
        return;
    }
    if (r.ok("leaf_qdisc") && s.leaf_qdisc == LeafQdisc::Pfifo) {
        r.sink().error(r.value_loc("leaf_queue"),
                       "leaf_queue has no effect with leaf_qdisc = \"pfifo\" (the kernel's default queue, "
                       "counted in packets); use leaf_qdisc = \"bfifo\" or \"auto\"");
        return;
    }
    s.leaf_queue_ms = *ms;
}

}  // namespace

std::optional<Settings::Listen> parse_listen(std::string_view text) {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || colon + 1 == text.size() || colon + 6 < text.size()) return {};
    std::string_view host = text.substr(0, colon), port_text = text.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    else if (host.find(':') != std::string_view::npos)
        return {};  // an IPv6 address needs its brackets
    unsigned port = 0;
    for (char c : port_text) {
        if (c < '0' || c > '9') return {};
        port = port * 10 + static_cast<unsigned>(c - '0');
    }
    auto address = net::Address::parse(host);
    if (!address || port == 0 || port > 65535) return {};
    return Settings::Listen{*address, static_cast<uint16_t>(port)};
}

void read_settings(Sink& sink, const toml::node& node, const SourceLoc& key_loc, Settings& s) {
    const auto* table = node.as_table();
    if (!table) {
        sink.error(sink.loc(node, key_loc), "'settings' must be a table: write [settings]");
        return;
    }
    TableReader r(sink, *table, "[settings]", sink.loc(*table, key_loc), kSettingsKeys);
    s.loc = r.table_loc();
    s.poll_interval_ms = r.duration("poll_interval", false).value_or(s.poll_interval_ms);
    if (const toml::node* mask = r.node("mark_mask")) {
        const auto* i = mask->as_integer();
        if (!i)
            sink.error(r.value_loc("mark_mask"), "'mark_mask' must be an integer such as 0x00ff0000");
        else if (i->get() < 1 || i->get() > 0xffffffffLL)
            sink.error(r.value_loc("mark_mask"),
                       "mark_mask must be a nonzero 32-bit mask (0x1..0xffffffff), such as 0x00ff0000");
        else
            s.mark_mask = static_cast<uint32_t>(i->get());
    }
    if (auto c = r.choice("classifier", {"auto", "fw", "u32"})) s.classifier = static_cast<Classifier>(*c);
    if (auto c = r.choice("on_exit", {"flush", "keep"})) s.on_exit = static_cast<OnExit>(*c);
    if (auto c = r.choice("firewall", {"auto", "nftables", "iptables"})) s.firewall = static_cast<Firewall>(*c);
    if (auto c = r.choice("leaf_qdisc", {"auto", "fq_codel", "sfq", "pfifo", "bfifo"}))
        s.leaf_qdisc = static_cast<LeafQdisc>(*c);
    read_leaf_queue(r, s);
    if (auto path = r.string("status_socket", false)) {
        if (path->empty() || path->front() != '/')
            sink.error(r.value_loc("status_socket"),
                       "status_socket must be an absolute path, such as "
                       "\"/run/flowshaper.sock\"");
        else
            s.status_socket = *path;
    }
    if (auto listen = r.string("metrics_listen", false)) {
        if (auto parsed = parse_listen(*listen))
            s.metrics_listen = *parsed;
        else
            sink.error(r.value_loc("metrics_listen"),
                       "metrics_listen must be a numeric address and a port, such as \"127.0.0.1:9469\" "
                       "or \"[::1]:9469\"");
    }
    if (auto path = r.string("audit_log", false)) {
        if (path->empty() || path->front() != '/')
            sink.error(r.value_loc("audit_log"),
                       "audit_log must be an absolute path, such as \"/var/log/flowshaper/audit.jsonl\"");
        else
            s.audit_log = *path;
    }
}

void read_interfaces(Sink& sink, const toml::node& node, const SourceLoc& key_loc, Draft& draft) {
    for (const toml::table* table : tables_of(sink, node, key_loc, "interface", "[[interface]]")) {
        TableReader r(sink, *table, "[[interface]]", sink.loc(*table, key_loc), kInterfaceKeys);
        Interface iface;
        iface.loc = r.table_loc();
        iface.device = read_device(r, true);
        iface.rate_bits_per_s = r.rate("rate", true).value_or(0);
        iface.default_class = r.string("default_class", false).value_or("");
        std::vector<Locs> class_locs;
        if (const toml::node* classes = r.node("class")) {
            for (const toml::table* ct :
                 tables_of(sink, *classes, r.value_loc("class"), "class", "[[interface.class]]")) {
                class_locs.emplace_back();
                iface.classes.push_back(read_class(sink, *ct, class_locs.back()));
            }
        }
        if (!iface.classes.empty() && !r.has("default_class"))
            r.missing("default_class", " (required when the interface has classes)");
        Locs locs = r.locs();
        if (iface.device.empty()) locs.erase("device");
        draft.policy.interfaces.push_back(std::move(iface));
        draft.interface_locs.push_back(std::move(locs));
        draft.class_locs.push_back(std::move(class_locs));
    }
}

void read_caps(Sink& sink, const toml::node& node, const SourceLoc& key_loc, Draft& draft) {
    for (const toml::table* table : tables_of(sink, node, key_loc, "cap", "[[cap]]")) {
        TableReader r(sink, *table, "[[cap]]", sink.loc(*table, key_loc), kCapKeys);
        Cap cap;
        cap.loc = r.table_loc();
        cap.name = read_name(r, "cap");
        cap.device = read_device(r, true);
        cap.clients =
            r.prefixes("clients", true, false, &cap.client_locs).value_or(std::vector<net::Prefix>{});
        if (cap.clients.empty()) cap.client_locs.clear();
        cap.rate_bits_per_s = r.rate("rate", true).value_or(0);
        cap.ceil_bits_per_s = r.rate("ceil", false).value_or(cap.rate_bits_per_s);
        check_ceil(r, cap.rate_bits_per_s, cap.ceil_bits_per_s);
        cap.shared = r.boolean("shared").value_or(false);
        cap.parent = r.string("parent", false);
        Locs locs = r.locs();
        if (cap.name.empty()) locs.erase("name");
        if (cap.device.empty()) locs.erase("device");
        draft.policy.caps.push_back(std::move(cap));
        draft.cap_locs.push_back(std::move(locs));
    }
}

namespace {

Limit read_limit(Sink& sink, TableReader& parent) {
    Limit limit;
    const toml::table* table = parent.table("limit", true, "{ rate = \"2mbit\", ceil = \"4mbit\" }");
    if (!table) return limit;
    TableReader r(sink, *table, "'limit'", sink.loc(*table, parent.value_loc("limit")), kLimitKeys);
    limit.rate_bits_per_s = r.rate("rate", true).value_or(0);
    limit.ceil_bits_per_s = r.rate("ceil", false).value_or(limit.rate_bits_per_s);
    check_ceil(r, limit.rate_bits_per_s, limit.ceil_bits_per_s);
    return limit;
}

// flow_bytes, client_bytes + window, client_rate + for: at least one, each with its partner.
void read_thresholds(Sink& sink, TableReader& r, Detect& d) {
    d.flow_bytes = r.size("flow_bytes", false);
    d.client_bytes = r.size("client_bytes", false);
    d.window_ms = r.duration("window", false).value_or(0);
    d.client_rate_bits_per_s = r.rate("client_rate", false);
    d.for_ms = r.duration("for", false).value_or(0);
    if (!r.has("flow_bytes") && !r.has("client_bytes") && !r.has("client_rate"))
        sink.error(
            r.table_loc(),
            "[[detect]] has no threshold: set flow_bytes, client_bytes with window, or client_rate with for");
    if (r.has("client_bytes") && !r.has("window"))
        sink.error(r.value_loc("client_bytes"),
                   "client_bytes needs a window to count over, such as window = \"10m\"");
    if (r.has("window") && !r.has("client_bytes"))
        sink.error(r.value_loc("window"), "window is used only with client_bytes");
    if (r.has("client_rate") && !r.has("for"))
        sink.error(r.value_loc("client_rate"),
                   "client_rate needs for, how long it must last, such as for = \"30s\"");
    if (r.has("for") && !r.has("client_rate"))
        sink.error(r.value_loc("for"), "for is used only with client_rate");
}

void read_detect_match(Sink& sink, TableReader& r, Detect& d) {
    if (auto p = r.choice("protocol", {"any", "tcp", "udp"})) d.protocol = static_cast<Protocol>(*p);
    d.local_ports = r.ports("local_ports").value_or(std::vector<uint16_t>{});
    d.remote_ports = r.ports("remote_ports").value_or(std::vector<uint16_t>{});
    bool protocol_known = !r.has("protocol") || r.ok("protocol");
    if (protocol_known && d.protocol == Protocol::Any) {
        for (std::string_view key : {"local_ports", "remote_ports"})
            if (r.has(key))
                sink.error(r.value_loc(key), std::string(key) + " need protocol = \"tcp\" or \"udp\"");
    }
    d.clients = r.prefixes("clients", false, true, nullptr).value_or(std::vector<net::Prefix>{});
    d.exclude = r.prefixes("exclude", false, true, nullptr).value_or(std::vector<net::Prefix>{});
}

}  // namespace

void read_detects(Sink& sink, const toml::node& node, const SourceLoc& key_loc, Draft& draft) {
    for (const toml::table* table : tables_of(sink, node, key_loc, "detect", "[[detect]]")) {
        TableReader r(sink, *table, "[[detect]]", sink.loc(*table, key_loc), kDetectKeys);
        Detect d;
        d.loc = r.table_loc();
        d.name = read_name(r, "detect");
        d.device = read_device(r, true);
        read_detect_match(sink, r, d);
        read_thresholds(sink, r, d);
        d.dscp = r.dscp("dscp").value_or(d.dscp);
        d.limit = read_limit(sink, r);
        d.release_after_ms = r.duration("release_after", false).value_or(d.release_after_ms);
        d.parent = r.string("parent", false);
        Locs locs = r.locs();
        if (d.name.empty()) locs.erase("name");
        if (d.device.empty()) locs.erase("device");
        draft.policy.detects.push_back(std::move(d));
        draft.detect_locs.push_back(std::move(locs));
    }
}

}  // namespace flowshaper::policy::detail
