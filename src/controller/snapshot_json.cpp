#include "flowshaper/controller/snapshot_json.hpp"

#include <iterator>

namespace flowshaper::controller {

using nlohmann::json;

namespace {

json opt(const std::optional<uint64_t>& v) {
    return v ? json(*v) : json(nullptr);
}

std::optional<uint64_t> opt_u64(const json& j, const char* key) {
    const json& v = j.at(key);
    if (v.is_null()) return std::nullopt;
    return v.get<uint64_t>();
}

net::Address address_of(const json& j, const char* key) {
    auto text = j.at(key).get<std::string>();
    auto a = net::Address::parse(text);
    if (!a) throw std::invalid_argument(std::string(key) + ": not an address: " + text);
    return *a;
}

const char* kind_name(ClassSnapshot::Kind kind) {
    switch (kind) {
        case ClassSnapshot::Kind::Root:
            return "root";
        case ClassSnapshot::Kind::Policy:
            return "policy";
        case ClassSnapshot::Kind::Cap:
            return "cap";
        case ClassSnapshot::Kind::Heavy:
            return "heavy";
    }
    return "policy";
}

ClassSnapshot::Kind kind_of(const std::string& text) {
    if (text == "root") return ClassSnapshot::Kind::Root;
    if (text == "cap") return ClassSnapshot::Kind::Cap;
    if (text == "heavy") return ClassSnapshot::Kind::Heavy;
    if (text == "policy") return ClassSnapshot::Kind::Policy;
    throw std::invalid_argument("kind: unknown class kind " + text);
}

TreeState state_of(const std::string& text) {
    for (TreeState s : {TreeState::InSync, TreeState::Repairing, TreeState::Missing})
        if (text == to_string(s)) return s;
    throw std::invalid_argument("state: unknown tree state " + text);
}

json to_json(const ClassSnapshot& c) {
    return {{"device", c.device},
            {"classid", c.classid},
            {"name", c.name},
            {"kind", kind_name(c.kind)},
            {"owner", c.owner},
            {"rate_bits_per_s", c.rate_bits_per_s},
            {"ceil_bits_per_s", c.ceil_bits_per_s},
            {"bytes", c.bytes},
            {"packets", c.packets},
            {"drops", c.drops},
            {"overlimits", c.overlimits},
            {"current_bits_per_s", c.current_bits_per_s}};
}

ClassSnapshot class_from(const json& j) {
    ClassSnapshot c;
    c.device = j.at("device").get<std::string>();
    c.classid = j.at("classid").get<std::string>();
    c.name = j.at("name").get<std::string>();
    c.kind = kind_of(j.at("kind").get<std::string>());
    c.owner = j.at("owner").get<std::string>();
    c.rate_bits_per_s = j.at("rate_bits_per_s").get<uint64_t>();
    c.ceil_bits_per_s = j.at("ceil_bits_per_s").get<uint64_t>();
    c.bytes = j.at("bytes").get<uint64_t>();
    c.packets = j.at("packets").get<uint64_t>();
    c.drops = j.at("drops").get<uint64_t>();
    c.overlimits = j.at("overlimits").get<uint64_t>();
    c.current_bits_per_s = j.at("current_bits_per_s").get<uint64_t>();
    return c;
}

json to_json(const DeviceSnapshot& d) {
    json classes = json::array();
    for (const auto& c : d.classes) classes.push_back(to_json(c));
    return {{"name", d.name},
            {"ifindex", d.ifindex},
            {"state", to_string(d.state)},
            {"detail", d.detail},
            {"classes", std::move(classes)}};
}

DeviceSnapshot device_from(const json& j) {
    DeviceSnapshot d;
    d.name = j.at("name").get<std::string>();
    d.ifindex = j.at("ifindex").get<int>();
    d.state = state_of(j.at("state").get<std::string>());
    d.detail = j.at("detail").get<std::string>();
    for (const auto& c : j.at("classes")) d.classes.push_back(class_from(c));
    return d;
}

json to_json(const HeavySnapshot& h) {
    return {{"client", h.client.str()},
            {"rule", h.rule},
            {"device", h.device},
            {"measure", h.measure},
            {"measured", h.measured},
            {"threshold", h.threshold},
            {"reason", h.reason},
            {"since_unix_ms", h.since_unix_ms},
            {"quiet_since_unix_ms", opt(h.quiet_since_unix_ms)},
            {"release_at_unix_ms", opt(h.release_at_unix_ms)},
            {"classid", h.classid},
            {"current_bits_per_s", h.current_bits_per_s},
            {"releasing", h.releasing}};
}

HeavySnapshot heavy_from(const json& j) {
    HeavySnapshot h;
    h.client = address_of(j, "client");
    h.rule = j.at("rule").get<std::string>();
    h.device = j.at("device").get<std::string>();
    h.measure = j.at("measure").get<std::string>();
    h.measured = j.at("measured").get<uint64_t>();
    h.threshold = j.at("threshold").get<uint64_t>();
    h.reason = j.at("reason").get<std::string>();
    h.since_unix_ms = j.at("since_unix_ms").get<uint64_t>();
    h.quiet_since_unix_ms = opt_u64(j, "quiet_since_unix_ms");
    h.release_at_unix_ms = opt_u64(j, "release_at_unix_ms");
    h.classid = j.at("classid").get<std::string>();
    h.current_bits_per_s = j.at("current_bits_per_s").get<uint64_t>();
    h.releasing = j.at("releasing").get<bool>();
    return h;
}

json to_json(const CapSnapshot& c) {
    return {{"name", c.name},
            {"device", c.device},
            {"clients", c.clients},
            {"rate_bits_per_s", c.rate_bits_per_s},
            {"ceil_bits_per_s", c.ceil_bits_per_s}};
}

CapSnapshot cap_from(const json& j) {
    CapSnapshot c;
    c.name = j.at("name").get<std::string>();
    c.device = j.at("device").get<std::string>();
    c.clients = j.at("clients").get<std::vector<std::string>>();
    c.rate_bits_per_s = j.at("rate_bits_per_s").get<uint64_t>();
    c.ceil_bits_per_s = j.at("ceil_bits_per_s").get<uint64_t>();
    return c;
}

json to_json(const PollSnapshot& p) {
    return {{"at_unix_ms", p.at_unix_ms},
            {"full", p.full},
            {"duration_us", p.duration_us},
            {"entries", p.entries},
            {"events_lost", p.events_lost}};
}

PollSnapshot poll_from(const json& j) {
    PollSnapshot p;
    p.at_unix_ms = j.at("at_unix_ms").get<uint64_t>();
    p.full = j.at("full").get<bool>();
    p.duration_us = j.at("duration_us").get<uint64_t>();
    p.entries = j.at("entries").get<uint64_t>();
    p.events_lost = j.at("events_lost").get<uint64_t>();
    return p;
}

using CounterMap = std::map<std::string, uint64_t>;
// The plain counters, by name (one table for both directions).
const std::pair<const char*, uint64_t Counters::*> kCounterFields[] = {
    {"polls", &Counters::polls},
    {"conntrack_entries_read", &Counters::conntrack_entries_read},
    {"events_lost", &Counters::events_lost},
    {"caps_applied", &Counters::caps_applied},
    {"caps_released", &Counters::caps_released},
    {"kernel_changes", &Counters::kernel_changes},
    {"errors", &Counters::errors},
    {"drift_repairs", &Counters::drift_repairs},
    {"reloads", &Counters::reloads},
    {"reload_failures", &Counters::reload_failures},
    {"last_reload_success_unix_ms", &Counters::last_reload_success_unix_ms},
    {"poll_count", &Counters::poll_count},
};
const std::pair<const char*, CounterMap Counters::*> kCounterMaps[] = {
    {"rule_bytes", &Counters::rule_bytes},   {"rule_packets", &Counters::rule_packets},
    {"rule_drops", &Counters::rule_drops},   {"cap_bytes", &Counters::cap_bytes},
    {"cap_packets", &Counters::cap_packets}, {"cap_drops", &Counters::cap_drops},
};

json to_json(const Counters& c) {
    json j = json::object();
    for (const auto& [name, field] : kCounterFields) j[name] = c.*field;
    for (const auto& [name, field] : kCounterMaps) j[name] = c.*field;
    j["poll_bucket_counts"] = c.poll_bucket_counts;
    j["poll_seconds_sum"] = c.poll_seconds_sum;
    return j;
}

Counters counters_from(const json& j) {
    Counters c;
    for (const auto& [name, field] : kCounterFields) c.*field = j.at(name).get<uint64_t>();
    for (const auto& [name, field] : kCounterMaps) c.*field = j.at(name).get<CounterMap>();
    const json& buckets = j.at("poll_bucket_counts");
    if (!buckets.is_array() || buckets.size() != std::size(c.poll_bucket_counts))
        throw std::invalid_argument("poll_bucket_counts: wrong number of buckets");
    for (size_t i = 0; i < buckets.size(); ++i) c.poll_bucket_counts[i] = buckets[i].get<uint64_t>();
    c.poll_seconds_sum = j.at("poll_seconds_sum").get<double>();
    return c;
}

template <typename T, typename F>
json array_of(const std::vector<T>& items, F&& convert) {
    json out = json::array();
    for (const auto& item : items) out.push_back(convert(item));
    return out;
}

Snapshot snapshot_from(const json& j) {
    Snapshot s;
    s.taken_unix_ms = j.at("taken_unix_ms").get<uint64_t>();
    s.started_unix_ms = j.at("started_unix_ms").get<uint64_t>();
    s.policy_path = j.at("policy_path").get<std::string>();
    s.policy_checksum = j.at("policy_checksum").get<std::string>();
    s.policy_loaded_unix_ms = j.at("policy_loaded_unix_ms").get<uint64_t>();
    s.classifier = j.at("classifier").get<std::string>();
    s.firewall = j.at("firewall").get<std::string>();
    s.poll_interval_ms = j.at("poll_interval_ms").get<uint64_t>();
    for (const auto& d : j.at("devices")) s.devices.push_back(device_from(d));
    for (const auto& h : j.at("heavy")) s.heavy.push_back(heavy_from(h));
    for (const auto& c : j.at("caps")) s.caps.push_back(cap_from(c));
    s.heavy_per_rule = j.at("heavy_per_rule").get<std::map<std::string, size_t>>();
    for (const auto& c : j.at("clients")) {
        auto client = client_from_json(c);
        if (!client) throw std::invalid_argument(client.error().detail);
        s.clients.push_back(std::move(*client));
    }
    s.clients_complete = j.at("clients_complete").get<bool>();
    s.last_poll = poll_from(j.at("last_poll"));
    for (const auto& e : j.at("last_errors"))
        s.last_errors.push_back({e.at("at_unix_ms").get<uint64_t>(), e.at("text").get<std::string>()});
    s.counters = counters_from(j.at("counters"));
    return s;
}

Error json_error(const char* what, const std::exception& e) {
    return make_error("read " + std::string(what), "JSON", 0, e.what());
}

}  // namespace

json to_json(const ClientSnapshot& c) {
    return {{"client", c.client.str()},
            {"to_bits_per_s", c.to_bits_per_s},
            {"from_bits_per_s", c.from_bits_per_s},
            {"flows", c.flows},
            {"to_bytes", c.to_bytes},
            {"from_bytes", c.from_bytes},
            {"state", c.state},
            {"release_in_ms", opt(c.release_in_ms)}};
}

Result<ClientSnapshot> client_from_json(const json& j) {
    try {
        ClientSnapshot c;
        c.client = address_of(j, "client");
        const auto to = j.at("to_bits_per_s").get<std::vector<uint64_t>>();
        const auto from = j.at("from_bits_per_s").get<std::vector<uint64_t>>();
        if (to.size() != 3 || from.size() != 3) throw std::invalid_argument("rates: three periods expected");
        std::copy(to.begin(), to.end(), c.to_bits_per_s);
        std::copy(from.begin(), from.end(), c.from_bits_per_s);
        c.flows = j.at("flows").get<uint64_t>();
        c.to_bytes = j.at("to_bytes").get<uint64_t>();
        c.from_bytes = j.at("from_bytes").get<uint64_t>();
        c.state = j.at("state").get<std::string>();
        c.release_in_ms = opt_u64(j, "release_in_ms");
        return c;
    } catch (const std::exception& e) {
        return json_error("client", e);
    }
}

json to_json(const Snapshot& s, bool with_clients) {
    json errors = json::array();
    for (const auto& e : s.last_errors) errors.push_back({{"at_unix_ms", e.at_unix_ms}, {"text", e.text}});
    return {{"taken_unix_ms", s.taken_unix_ms},
            {"started_unix_ms", s.started_unix_ms},
            {"policy_path", s.policy_path},
            {"policy_checksum", s.policy_checksum},
            {"policy_loaded_unix_ms", s.policy_loaded_unix_ms},
            {"classifier", s.classifier},
            {"firewall", s.firewall},
            {"poll_interval_ms", s.poll_interval_ms},
            {"devices", array_of(s.devices, [](const auto& d) { return to_json(d); })},
            {"heavy", array_of(s.heavy, [](const auto& h) { return to_json(h); })},
            {"caps", array_of(s.caps, [](const auto& c) { return to_json(c); })},
            {"heavy_per_rule", s.heavy_per_rule},
            {"clients",
             with_clients ? array_of(s.clients, [](const auto& c) { return to_json(c); }) : json::array()},
            {"clients_complete", s.clients_complete},
            {"last_poll", to_json(s.last_poll)},
            {"last_errors", std::move(errors)},
            {"counters", to_json(s.counters)}};
}

Result<Snapshot> snapshot_from_json(const json& j) {
    try {
        return snapshot_from(j);
    } catch (const std::exception& e) {
        return json_error("snapshot", e);
    }
}

json to_json(const AuditEvent& e) {
    json j = {{"time_unix_ms", e.at_unix_ms}, {"action", e.action}};
    if (!e.client.empty()) j["client"] = e.client;
    if (!e.rule.empty()) j["rule"] = e.rule;
    if (!e.device.empty()) j["device"] = e.device;
    if (!e.measure.empty()) {
        j["measure"] = e.measure;
        j["measured"] = e.measured;
        j["threshold"] = e.threshold;
    }
    if (!e.detail.empty()) j["detail"] = e.detail;
    return j;
}

}  // namespace flowshaper::controller
