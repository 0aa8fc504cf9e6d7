#include <arpa/inet.h>
#include <netinet/in.h>

#include <thread>

#include "faces_harness.hpp"
#include "flowshaper/controller/metrics.hpp"
#include "flowshaper/controller/metrics_server.hpp"

using namespace flowshaper;
using namespace flowshaper::controller;
using namespace flowshaper::faces_test;

namespace {

struct MetricsHarness {
    EventLoop loop;
    SnapshotPtr snap = std::make_shared<const Snapshot>(sample_snapshot(3));
    std::unique_ptr<MetricsServer> server;
    explicit MetricsHarness(uint16_t port = 0) {
        ControlHooks hooks;
        hooks.snapshot = [this] { return snap; };
        MetricsServerSettings settings{{*net::Address::parse("127.0.0.1"), port}};
        server = std::make_unique<MetricsServer>(
            loop, hooks, settings, make_memory_logger(std::make_shared<std::vector<std::string>>()));
    }
    std::string get(const std::string& target) {
        std::atomic<bool> done{false};
        std::string response;
        const uint16_t port = server->port();
        std::thread t([&] {
            response = http_get(port, target);
            done = true;
        });
        const uint64_t end = loop.now_ms() + kHangGuardMs;
        while (!done && loop.now_ms() < end) (void)loop.run_once(10);
        if (!done) server.reset();  // closes the listening socket and the connection: the GET ends
        t.join();
        REQUIRE(done);
        return response;
    }
};

}  // namespace

TEST_CASE("GET /metrics from the daemon's own loop answers the rendered snapshot") {
    MetricsHarness h;
    REQUIRE(h.server->open().ok());
    REQUIRE(h.server->port() != 0);
    const std::string response = h.get("/metrics");
    CHECK_THAT(response, Catch::StartsWith("HTTP/1.0 200") || Catch::StartsWith("HTTP/1.1 200"));
    CHECK_THAT(response, Catch::Contains("text/plain; version=0.0.4"));
    const auto body = response.substr(response.find("\r\n\r\n") + 4);
    CHECK(body == render_metrics(*h.snap));
    CHECK_THAT(h.get("/"), Catch::Contains(" 404 "));
}

TEST_CASE("every scrape reads the latest snapshot") {
    MetricsHarness h;
    REQUIRE(h.server->open().ok());
    CHECK_THAT(h.get("/metrics"), Catch::Contains("flowshaper_caps_applied_total 3\n"));
    auto next = std::make_shared<Snapshot>(*h.snap);
    next->counters.caps_applied = 4;
    h.snap = next;
    CHECK_THAT(h.get("/metrics"), Catch::Contains("flowshaper_caps_applied_total 4\n"));
}

TEST_CASE("a metrics address already in use is a clear start-up error") {
    MetricsHarness first;
    REQUIRE(first.server->open().ok());
    MetricsHarness second(first.server->port());
    auto s = second.server->open();
    REQUIRE_FALSE(s.ok());
    CHECK_THAT(s.error().text(), Catch::Contains("127.0.0.1:" + std::to_string(first.server->port())));
    CHECK_THAT(s.error().text(), Catch::Contains("Address already in use"));
    CHECK_THAT(s.error().text(), Catch::Contains("metrics_listen"));
}
