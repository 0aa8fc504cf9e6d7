// A snapshot with something in every field, for the faces' tests and benchmark.
#pragma once

#include "flowshaper/controller/snapshot.hpp"

namespace flowshaper::faces_test {

inline controller::Snapshot sample_snapshot(size_t heavy_clients = 2) {
    using namespace controller;
    Snapshot s;
    s.taken_unix_ms = 1'760'000'005'000;
    s.started_unix_ms = 1'760'000'000'000;
    s.policy_path = "/etc/flowshaper/mail.toml";
    s.policy_checksum = std::string(64, 'a');
    s.policy_loaded_unix_ms = 1'760'000'000'100;
    s.classifier = "u32";
    s.firewall = "iptables (libiptc): probe";
    s.poll_interval_ms = 1000;
    DeviceSnapshot d{"eth0", 2, TreeState::InSync, "", {}};
    d.classes.push_back({"eth0", "f5:1", "root", ClassSnapshot::Kind::Root, "", 1'000'000'000, 1'000'000'000,
                         5000, 40, 0, 0, 8000});
    d.classes.push_back({"eth0", "f5:10", "normal \"web\"", ClassSnapshot::Kind::Policy, "", 900'000'000,
                         1'000'000'000, 4000, 30, 2, 1, 6000});
    for (size_t i = 0; i < heavy_clients; ++i) {
        auto client = net::Address::from_v4(0xcb007100u + static_cast<uint32_t>(i));  // 203.0.113.x
        d.classes.push_back({"eth0", "f5:" + std::to_string(0x100 + i), "heavy " + client.str() + " (imap)",
                             ClassSnapshot::Kind::Heavy, "imap", 2'000'000, 4'000'000, 100, 1, 0, 0,
                             1'900'000});
        HeavySnapshot h;
        h.client = client;
        h.rule = "imap";
        h.device = "eth0";
        h.measure = "flow_bytes";
        h.measured = 600'000'000;
        h.threshold = 500'000'000;
        h.reason = "flow of 600 MB >= 500 MB";
        h.since_unix_ms = 1'760'000'001'000;
        h.quiet_since_unix_ms = i % 2 ? std::optional<uint64_t>(1'760'000'004'000) : std::nullopt;
        h.release_at_unix_ms = i % 2 ? std::optional<uint64_t>(1'760'000'604'000) : std::nullopt;
        h.classid = "f5:" + std::to_string(0x100 + i);
        h.current_bits_per_s = 1'900'000;
        s.heavy.push_back(h);
        ClientSnapshot c;
        c.client = client;
        c.to_bits_per_s[0] = 1'900'000;
        c.from_bits_per_s[2] = 10'000;
        c.flows = 3;
        c.to_bytes = 600'000'000;
        c.state = "capped by rule imap";
        s.clients.push_back(c);
    }
    s.devices.push_back(d);
    s.devices.push_back({"eth1", 0, TreeState::Missing, "no such device", {}});
    s.caps.push_back({"customer-42", "eth0", {"203.0.113.7", "2001:db8:7::/64"}, 5'000'000, 10'000'000});
    s.heavy_per_rule = {{"imap", heavy_clients}, {"web", 0}};
    s.last_poll = {1'760'000'005'000, false, 12'500, 1234, 1};
    s.last_errors.push_back({1'760'000'003'000, "create class eth0 f5:1a: Device or resource busy"});
    auto& c = s.counters;
    c.polls = 5;
    c.conntrack_entries_read = 6000;
    c.events_lost = 1;
    c.caps_applied = 3;
    c.caps_released = 1;
    c.kernel_changes = 17;
    c.errors = 1;
    c.drift_repairs = 1;
    c.reloads = 2;
    c.reload_failures = 1;
    c.last_reload_success_unix_ms = 1'760'000'002'000;
    for (double sec : {0.0125, 0.002, 0.3}) c.observe_poll(sec);
    c.rule_bytes = {{"imap", 123456}, {"web", 0}};
    c.rule_packets = {{"imap", 100}, {"web", 0}};
    c.rule_drops = {{"imap", 3}, {"web", 0}};
    c.cap_bytes = {{"customer-42", 999}};
    c.cap_packets = {{"customer-42", 9}};
    c.cap_drops = {{"customer-42", 0}};
    return s;
}

}  // namespace flowshaper::faces_test
