#include <catch2/catch.hpp>

#include "faces_support.hpp"
#include "flowshaper/controller/snapshot_json.hpp"

using namespace flowshaper;
using namespace flowshaper::controller;

TEST_CASE("a snapshot written as JSON reads back field for field") {
    const Snapshot s = faces_test::sample_snapshot(3);
    const auto json = to_json(s);
    auto back = snapshot_from_json(nlohmann::json::parse(json.dump()));
    REQUIRE(back.ok());
    CHECK(to_json(*back) == json);
    CHECK(back->heavy.size() == 3);
    CHECK(back->heavy[1].client.str() == "203.0.113.1");
    CHECK(back->heavy[0].release_at_unix_ms == std::nullopt);
    CHECK(back->heavy[1].release_at_unix_ms == 1'760'000'604'000u);
    CHECK(back->devices[0].classes[1].name == "normal \"web\"");
    CHECK(back->devices[1].state == TreeState::Missing);
    CHECK(back->counters.poll_bucket_counts[1] == s.counters.poll_bucket_counts[1]);
    CHECK(back->counters.rule_bytes.at("imap") == 123456);
}

TEST_CASE("a snapshot with a missing or mistyped field is an error naming the field") {
    auto json = to_json(faces_test::sample_snapshot());
    json.erase("policy_checksum");
    auto r = snapshot_from_json(json);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().text(), Catch::Contains("policy_checksum"));

    json = to_json(faces_test::sample_snapshot());
    json["heavy"][0]["client"] = "not-an-address";
    r = snapshot_from_json(json);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().text(), Catch::Contains("not an address"));

    json = to_json(faces_test::sample_snapshot());
    json["devices"][0]["state"] = "sideways";
    CHECK_FALSE(snapshot_from_json(json).ok());
}

TEST_CASE("an audit event is one flat JSON object with only the fields it has") {
    AuditEvent cap{1'760'000'000'000, "cap", "203.0.113.9", "imap", "eth0", "flow_bytes", 600, 500, ""};
    auto j = to_json(cap);
    CHECK(j["action"] == "cap");
    CHECK(j["time_unix_ms"] == 1'760'000'000'000u);
    CHECK(j["measured"] == 600);
    CHECK(j["threshold"] == 500);
    AuditEvent reload{1, "reload", "", "", "", "", 0, 0, "sha256 abc"};
    j = to_json(reload);
    CHECK_FALSE(j.contains("client"));
    CHECK_FALSE(j.contains("measured"));
    CHECK(j["detail"] == "sha256 abc");
}
