// A real Prometheus server (Debian's `prometheus`) scrapes a MetricsServer served from this test's
// EventLoop and answers a query through its HTTP API. Runs in an anonymous network namespace of
// its own (unshare; needs root, hence the label "kernel"), so the ports are private and nothing
// is left behind when the processes end.
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#include <fstream>
#include <iterator>
#include <thread>

#include "faces_harness.hpp"
#include "flowshaper/controller/metrics_server.hpp"
#include "wait.hpp"

using namespace flowshaper;
using namespace flowshaper::controller;
using namespace flowshaper::faces_test;

namespace {

bool loopback_up() {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq ifr{};
    std::snprintf(ifr.ifr_name, IFNAMSIZ, "lo");
    bool ok = ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
    ifr.ifr_flags |= IFF_UP;
    ok = ok && ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
    close(fd);
    return ok;
}

}  // namespace

TEST_CASE("a real Prometheus server scrapes /metrics and answers a query for a rule's heavy clients") {
    REQUIRE(geteuid() == 0);
    REQUIRE(unshare(CLONE_NEWNET) == 0);
    REQUIRE(loopback_up());
    TempDir dir;
    EventLoop loop;
    auto snap = std::make_shared<const Snapshot>(sample_snapshot(3));
    ControlHooks hooks;
    hooks.snapshot = [&] { return snap; };
    MetricsServer server(loop, hooks, {{*net::Address::parse("127.0.0.1"), 9469}},
                         make_memory_logger(std::make_shared<std::vector<std::string>>()));
    REQUIRE(server.open().ok());
    std::ofstream(dir.path / "prometheus.yml")
        << "global:\n  scrape_interval: 1s\n"
           "scrape_configs:\n  - job_name: flowshaper\n"
           "    static_configs:\n      - targets: ['127.0.0.1:9469']\n";
    pid_t prom = fork();
    REQUIRE(prom >= 0);
    if (prom == 0) {
        const std::string config = "--config.file=" + (dir.path / "prometheus.yml").string();
        const std::string data = "--storage.tsdb.path=" + (dir.path / "data").string();
        freopen((dir.path / "prometheus.log").c_str(), "w", stderr);
        execlp("prometheus", "prometheus", config.c_str(), data.c_str(),
               "--web.listen-address=127.0.0.1:9090", static_cast<char*>(nullptr));
        _exit(127);
    }
    std::atomic<bool> done{false};
    std::string answer;
    // Until Prometheus has started, scraped and answers (seconds here; a hang guard of minutes for
    // an emulated machine), asked every 500 ms.
    std::thread asker([&] {
        flowshaper::testing::wait_until(
            [&] {
                answer =
                    http_get(9090, "/api/v1/query?query=flowshaper_heavy_clients%7Brule%3D%22imap%22%7D");
                return answer.find("\"imap\"") != std::string::npos;
            },
            kHangGuardMs, 500);
        done = true;
    });
    while (!done) (void)loop.run_once(20);
    asker.join();
    kill(prom, SIGTERM);
    waitpid(prom, nullptr, 0);
    std::ifstream log(dir.path / "prometheus.log");
    INFO(std::string(std::istreambuf_iterator<char>(log), {}).substr(0, 4000));
    INFO(answer);
    CHECK_THAT(answer, Catch::Contains("\"status\":\"success\""));
    CHECK_THAT(answer, Catch::Contains("\"job\":\"flowshaper\""));
    CHECK_THAT(answer, Catch::Contains("\"rule\":\"imap\""));
    CHECK_THAT(answer, Catch::Contains(",\"3\"]"));  // the value: three heavy clients
}
