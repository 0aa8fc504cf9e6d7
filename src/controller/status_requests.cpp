// What the status socket answers (status_server.hpp has the protocol). Every answer is built
// from the last snapshot; the status answer is rendered once per snapshot and shared.
#include <nlohmann/json.hpp>

#include "flowshaper/controller/snapshot_json.hpp"
#include "flowshaper/controller/status_server.hpp"

#ifndef FLOWSHAPER_VERSION
#define FLOWSHAPER_VERSION "unknown"
#endif

namespace flowshaper::controller {

using nlohmann::json;

namespace {

std::shared_ptr<const std::string> line_of(const json& j) {
    return std::make_shared<const std::string>(j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
}

std::shared_ptr<const std::string> error_line(const std::string& text) {
    return line_of({{"ok", false}, {"error", text}});
}

const char* kNoSnapshot = "the daemon has no snapshot yet (it is starting); try again";

json reload_answer(const ReloadOutcome& outcome) {
    json j = {{"ok", outcome.ok}};
    if (!outcome.diagnostics.empty()) j["diagnostics"] = outcome.diagnostics;
    if (!outcome.error.empty()) j["error"] = outcome.error;
    return j;
}

}  // namespace

std::shared_ptr<const std::string> StatusServer::status_answer() {
    SnapshotPtr snap = hooks_.snapshot ? hooks_.snapshot() : nullptr;
    if (!snap) return error_line(kNoSnapshot);
    if (snap != status_for_) {
        cached_status_ = line_of({{"ok", true}, {"snapshot", to_json(*snap, false)}});
        status_for_ = std::move(snap);
    }
    return cached_status_;
}

std::shared_ptr<const std::string> StatusServer::clients_answer(const json& request) {
    uint64_t watch_ms = settings_.default_watch_ms;
    if (auto w = request.find("watch_ms"); w != request.end() && w->is_number_unsigned())
        watch_ms = std::min<uint64_t>(w->get<uint64_t>(), 600'000);
    if (hooks_.watch_clients) hooks_.watch_clients(watch_ms);
    SnapshotPtr snap = hooks_.snapshot ? hooks_.snapshot() : nullptr;
    if (!snap) return error_line(kNoSnapshot);
    if (snap != clients_for_) {
        json clients = json::array();
        for (const auto& c : snap->clients) clients.push_back(to_json(c));
        cached_clients_ = line_of({{"ok", true},
                                   {"taken_unix_ms", snap->taken_unix_ms},
                                   {"complete", snap->clients_complete},
                                   {"clients", std::move(clients)}});
        clients_for_ = std::move(snap);
    }
    return cached_clients_;
}

std::shared_ptr<const std::string> StatusServer::answer(const std::string& line) {
    json request = json::parse(line, nullptr, false);
    if (request.is_discarded() || !request.is_object())
        return error_line("not a JSON object: send one request per line, such as {\"cmd\":\"status\"}");
    auto cmd = request.find("cmd");
    if (cmd == request.end() || !cmd->is_string())
        return error_line("no \"cmd\": one of ping, status, clients, reload");
    const std::string name = cmd->get<std::string>();
    if (name == "ping") return line_of({{"ok", true}, {"pong", true}, {"version", FLOWSHAPER_VERSION}});
    if (name == "status") return status_answer();
    if (name == "clients") return clients_answer(request);
    if (name == "reload") {
        if (!hooks_.reload) return error_line("this daemon cannot reload");
        return line_of(reload_answer(hooks_.reload()));
    }
    return error_line("unknown cmd \"" + name + "\": one of ping, status, clients, reload");
}

}  // namespace flowshaper::controller
