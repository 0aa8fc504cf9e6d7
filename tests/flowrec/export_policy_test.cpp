// [[export]] in the policy: defaults, several targets, and a policy holding only [[export]].
#include <catch2/catch.hpp>

#include "flowshaper/policy/loader.hpp"

using namespace flowshaper::policy;

TEST_CASE("a policy holding only [[export]] tables is valid, with the documented defaults",
          "[policy][export]") {
    LoadResult r = load_string(R"(
[[export]]
target = "udp://192.0.2.9"

[[export]]
target = "tcp://[2001:db8::9]:9995"
active_timeout = "5m"
observation_domain = 4294967295

[[export]]
target = "file:/var/lib/flowshaper/flows.ipfix"

[[export]]
target = "udp://collector.example.net:2055"
template_refresh = "1m"
)",
                               "export.toml");
    for (const auto& d : r.diagnostics) INFO(d.format());
    REQUIRE(r.ok());
    const auto& e = r.policy->exports;
    REQUIRE(e.size() == 4);
    CHECK(e[0].transport == ExportTransport::Udp);
    CHECK(e[0].host == "192.0.2.9");
    CHECK(e[0].port == 4739);
    CHECK(e[0].active_timeout_ms == 60000);
    CHECK(e[0].template_refresh_ms == 600000);
    CHECK(e[0].observation_domain == 0);
    CHECK(e[0].loc.line == 2);
    CHECK(e[1].transport == ExportTransport::Tcp);
    CHECK(e[1].host == "2001:db8::9");
    CHECK(e[1].port == 9995);
    CHECK(e[1].active_timeout_ms == 300000);
    CHECK(e[1].observation_domain == 4294967295u);
    CHECK(e[2].transport == ExportTransport::File);
    CHECK(e[2].path == "/var/lib/flowshaper/flows.ipfix");
    CHECK(e[3].host == "collector.example.net");
    CHECK(e[3].port == 2055);
    CHECK(e[3].template_refresh_ms == 60000);
    CHECK(r.policy->interfaces.empty());
}

TEST_CASE("active_timeout must be a multiple of poll_interval", "[policy][export]") {
    auto text = [](const char* poll, const char* timeout) {
        return std::string("[settings]\npoll_interval = \"") + poll +
               "\"\n[[export]]\ntarget = \"udp://127.0.0.1\"\n" + "active_timeout = \"" + timeout + "\"\n";
    };
    CHECK(load_string(text("250ms", "10s"), "a.toml").ok());
    CHECK_FALSE(load_string(text("300ms", "10s"), "a.toml").ok());
    CHECK(load_string(text("1s", "1s"), "a.toml").ok());
}
