// Snapshot <-> JSON: the status socket's answers and `flowshaper status --json`. One schema, both
// directions, so that the CLI reads back exactly what the daemon wrote. Field names are the
// snapshot's member names; addresses are strings ("203.0.113.7"); absent optionals are null.
#pragma once

#include <nlohmann/json.hpp>

#include "flowshaper/common/result.hpp"
#include "flowshaper/controller/snapshot.hpp"

namespace flowshaper::controller {

// `with_clients` false: "clients" is left empty (the status answer; `top` asks for them).
nlohmann::json to_json(const Snapshot& snapshot, bool with_clients = true);
nlohmann::json to_json(const ClientSnapshot& client);
nlohmann::json to_json(const AuditEvent& event);

// A snapshot read back; a missing or mistyped field is an error naming it.
Result<Snapshot> snapshot_from_json(const nlohmann::json& json);
Result<ClientSnapshot> client_from_json(const nlohmann::json& json);

}  // namespace flowshaper::controller
