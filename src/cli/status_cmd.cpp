// `flowshaper status` and `flowshaper reload`: one request on the daemon's status socket.
#include <cstdio>

#include "commands.hpp"
#include "faces_cli.hpp"
#include "faces_format.hpp"
#include "flowshaper/controller/snapshot_json.hpp"
#include "flowshaper/controller/status_client.hpp"
#include "flowshaper/controller/status_server.hpp"

namespace flowshaper::cli {

using controller::Snapshot;
using nlohmann::json;

namespace {

int no_daemon_message(const Error& e) {
    std::fprintf(stderr, "flowshaper: %s\n", e.text().c_str());
    if (controller::no_daemon(e))
        std::fprintf(stderr,
                     "flowshaper: no daemon is running there (start it with `flowshaper run POLICY`, or "
                     "give its status_socket with --socket)\n");
    return kExitFail;
}

// The daemon's answer to `request`, or an exit status after printing why not.
std::variant<json, int> ask(const std::string& socket, const json& request, int timeout_ms = 5000) {
    controller::StatusClient client;
    if (auto s = client.connect(socket); !s) return no_daemon_message(s.error());
    auto answer = client.request(request, timeout_ms);
    if (!answer) return no_daemon_message(answer.error());
    return std::move(*answer);
}

std::string classes_text(const Snapshot& s) {
    std::string out;
    for (const auto& d : s.devices) {
        out += "  " + d.name + ": " + to_string(d.state) + (d.detail.empty() ? "" : " (" + d.detail + ")") +
               "\n";
        if (d.classes.empty()) continue;
        Table t({"class", "name", ">rate", ">ceil", ">now", ">bytes", ">drops"});
        for (const auto& c : d.classes)
            t.row({c.classid, c.name, human_rate(c.rate_bits_per_s), human_rate(c.ceil_bits_per_s),
                   human_rate(c.current_bits_per_s), human_bytes(c.bytes), std::to_string(c.drops)});
        out += t.str("    ");
    }
    return out;
}

std::string measured_text(const std::string& measure, uint64_t value) {
    return measure == "client_rate" ? human_rate(value) : human_bytes(value);
}

std::string heavy_text(const Snapshot& s, uint64_t now) {
    if (s.heavy.empty()) return "  none\n";
    Table t({"client", "rule", "why", "since", "quiet since", "release", "class", ">now"});
    for (const auto& h : s.heavy) {
        std::string why = h.measure + " " + measured_text(h.measure, h.measured) +
                          " >= " + measured_text(h.measure, h.threshold);
        std::string release =
            h.releasing ? "releasing"
            : h.release_at_unix_ms
                ? "in " + human_duration(*h.release_at_unix_ms > now ? *h.release_at_unix_ms - now : 0)
                : "-";
        t.row({h.client.str(), h.rule, why, human_duration(now - std::min(now, h.since_unix_ms)) + " ago",
               h.quiet_since_unix_ms ? human_duration(now - std::min(now, *h.quiet_since_unix_ms)) + " ago"
                                     : "-",
               release, h.classid.empty() ? "(pending)" : h.classid, human_rate(h.current_bits_per_s)});
    }
    return t.str();
}

std::string caps_text(const Snapshot& s) {
    if (s.caps.empty()) return "  none\n";
    Table t({"cap", "device", ">rate", ">ceil", "clients"});
    for (const auto& c : s.caps) {
        std::string clients;
        for (const auto& a : c.clients) clients += (clients.empty() ? "" : " ") + a;
        t.row({c.name, c.device, human_rate(c.rate_bits_per_s), human_rate(c.ceil_bits_per_s), clients});
    }
    return t.str();
}

void print_status(const Snapshot& s) {
    const uint64_t now = now_unix_ms();
    std::printf("flowshaper: up %s (since %s)\n",
                human_duration(now - std::min(now, s.started_unix_ms)).c_str(),
                human_time(s.started_unix_ms, now).c_str());
    std::printf("policy:     %s\n            checksum %s, loaded %s\n", s.policy_path.c_str(),
                s.policy_checksum.c_str(), human_time(s.policy_loaded_unix_ms, now).c_str());
    std::printf("classifier: %s; firewall: %s; poll every %s\n", s.classifier.c_str(), s.firewall.c_str(),
                human_duration(s.poll_interval_ms).c_str());
    std::printf("last poll:  %s, %s, %s, %llu entries, events lost %llu times\n",
                human_time(s.last_poll.at_unix_ms, now).c_str(),
                s.last_poll.full ? "whole table" : "prefilter",
                human_duration(s.last_poll.duration_us / 1000).c_str(),
                static_cast<unsigned long long>(s.last_poll.entries),
                static_cast<unsigned long long>(s.last_poll.events_lost));
    std::printf("\ndevices:\n%s", classes_text(s).c_str());
    std::printf("\nheavy clients (%zu):\n%s", s.heavy.size(), heavy_text(s, now).c_str());
    std::printf("\nstatic caps:\n%s", caps_text(s).c_str());
    std::printf("\nlast errors:\n");
    if (s.last_errors.empty()) std::printf("  none\n");
    for (const auto& e : s.last_errors)
        std::printf("  %s  %s\n", human_time(e.at_unix_ms, now).c_str(), e.text.c_str());
}

}  // namespace

int cmd_status(const std::string& socket, bool as_json) {
    auto answer = ask(socket, {{"cmd", "status"}});
    if (auto* rc = std::get_if<int>(&answer)) return *rc;
    const json& j = std::get<json>(answer);
    if (j.value("ok", false) != true) {
        std::fprintf(stderr, "flowshaper: the daemon says: %s\n", j.value("error", std::string("?")).c_str());
        return kExitFail;
    }
    auto snap = controller::snapshot_from_json(j.at("snapshot"));
    if (!snap) {
        std::fprintf(stderr, "flowshaper: %s\n", snap.error().text().c_str());
        return kExitFail;
    }
    if (as_json)
        std::printf("%s\n", controller::to_json(*snap).dump(2).c_str());
    else
        print_status(*snap);
    return kExitOk;
}

int cmd_reload(const std::string& socket) {
    auto answer = ask(socket, {{"cmd", "reload"}}, 120'000);  // a reload applies: give the kernel time
    if (auto* rc = std::get_if<int>(&answer)) return *rc;
    const json& j = std::get<json>(answer);
    if (j.value("ok", false) == true) {
        std::printf("flowshaper: reloaded\n");
        return kExitOk;
    }
    if (auto d = j.find("diagnostics"); d != j.end() && d->is_array())
        for (const auto& line : *d) std::fprintf(stderr, "%s\n", line.get<std::string>().c_str());
    if (auto e = j.find("error"); e != j.end() && e->is_string())
        std::fprintf(stderr, "flowshaper: reload failed: %s\n", e->get<std::string>().c_str());
    std::fprintf(stderr, "flowshaper: the running policy was kept\n");
    return kExitFail;
}

FacesCommands::FacesCommands(CLI::App& app) {
    const std::string where =
        std::string("the daemon's status socket (default ") + controller::kDefaultStatusSocket + ")";
    status_ =
        app.add_subcommand("status", "Ask the running daemon: heavy clients and why, devices, last poll");
    status_->add_flag("--json", status_json_, "machine-readable output");
    status_->add_option("--socket", status_socket_, where)->default_val(controller::kDefaultStatusSocket);
    reload_ = app.add_subcommand("reload", "Ask the running daemon to reload its policy file");
    reload_->add_option("--socket", reload_socket_, where)->default_val(controller::kDefaultStatusSocket);
    top_ = app.add_subcommand("top", "Clients by rate, live (reads conntrack itself when no daemon runs)");
    top_->add_flag("--json", top_options_.json, "JSON lines, one per refresh");
    top_->add_flag("--once", top_options_.once, "one refresh (measured over one interval), then exit");
    top_->add_option("-n", top_options_.iterations, "this many refreshes, then exit")
        ->check(CLI::Range(1, 1'000'000));
    top_->add_option("--interval", top_options_.interval_ms, "milliseconds between refreshes")
        ->check(CLI::Range(uint64_t{100}, uint64_t{60'000}))
        ->default_val(2000);
    top_->add_option("--socket", top_options_.socket, where)->default_val(controller::kDefaultStatusSocket);
}

std::optional<int> FacesCommands::dispatch() const {
    if (*status_) return cmd_status(status_socket_, status_json_);
    if (*reload_) return cmd_reload(reload_socket_);
    if (*top_) return cmd_top(top_options_);
    return std::nullopt;
}

}  // namespace flowshaper::cli
