// Drift repair of the mangle side: flowshaper's chain flushed or deleted, the whole legacy mangle
// table flushed (iptables backend: found by the per-poll fingerprint, so within one poll
// interval), and its nftables table deleted or the whole ruleset flushed (nftables backend:
// announced by events). Checked with iptables-legacy-save / nft, and in status, metrics, audit.
#include <catch2/catch.hpp>

#include "faults_support.hpp"

using namespace flowshaper::testing;

namespace {

constexpr double kPollMs = 1000;
// One poll interval, plus the repair itself (a libiptc commit per family, a few ms) and the
// checker's own polling step.
constexpr double kMangleLimitMs = kPollMs + 150;

std::function<std::string()> legacy_reader(const FaultRig& rig) {
    return [&rig] { return mangle_save(rig.net.server, false) + mangle_save(rig.net.server, true); };
}

std::function<std::string()> nft_reader(const FaultRig& rig) {
    return [&rig] {
        std::string out;
        return rig.net.server.exec("nft list table inet flowshaper 2>/dev/null", &out) == 0 ? out
                                                                                            : std::string();
    };
}

}  // namespace

TEST_CASE(
    "iptables backend: flowshaper's mangle chain flushed, deleted, or the whole table flushed, is "
    "back within one poll interval") {
    require_netns_privileges();
    FaultRig rig("mangle", fault_settings("1s", "iptables"), fault_policy_body());
    rig.start();
    REQUIRE(mangle_save(rig.net.server, false).find(":FLOWSHAPER") != std::string::npos);
    expect_repaired(rig, "iptables-legacy -t mangle -F FLOWSHAPER", legacy_reader(rig), kMangleLimitMs);
    expect_repaired(rig,
                    "sh -c 'iptables-legacy -t mangle -D POSTROUTING -j FLOWSHAPER && "
                    "iptables-legacy -t mangle -F FLOWSHAPER && iptables-legacy -t mangle -X FLOWSHAPER'",
                    legacy_reader(rig), kMangleLimitMs);
    expect_repaired(rig, "sh -c 'iptables-legacy -t mangle -F && iptables-legacy -t mangle -X'",
                    legacy_reader(rig), kMangleLimitMs);
    expect_repaired(rig, "ip6tables-legacy -t mangle -F FLOWSHAPER", legacy_reader(rig), kMangleLimitMs);
}

TEST_CASE("nftables backend: `nft delete table inet flowshaper` and `nft flush ruleset` are repaired") {
    require_netns_privileges();
    FaultRig rig("nftdel", fault_settings("1s", "nftables"), fault_policy_body());
    rig.start();
    REQUIRE_FALSE(nft_reader(rig)().empty());
    // Events announce these: no need to wait for a poll.
    expect_repaired(rig, "nft delete table inet flowshaper", nft_reader(rig), 1000);
    expect_repaired(rig, "nft flush ruleset", nft_reader(rig), 1000);
    // The JSON view agrees: one table of that name, with chains.
    auto json = nlohmann::json::parse(rig.net.server.exec_ok("nft -j list ruleset"));
    size_t tables = 0, chains = 0;
    for (const auto& item : json["nftables"]) {
        if (item.contains("table") && item["table"]["name"] == "flowshaper") ++tables;
        if (item.contains("chain") && item["chain"]["table"] == "flowshaper") ++chains;
    }
    CHECK(tables == 1);
    CHECK(chains >= 1);
}
