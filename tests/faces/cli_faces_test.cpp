// `flowshaper status`, `reload` and `top` against a status server with a known snapshot, run by
// this test's loop (the binary is a separate process, as for an operator).
#include <sys/wait.h>

#include <fstream>
#include <iterator>
#include <thread>

#include "faces_harness.hpp"
#include "flowshaper/controller/snapshot_json.hpp"

using namespace flowshaper;
using namespace flowshaper::controller;
using namespace flowshaper::faces_test;

namespace {

struct Run {
    int status = -1;
    std::string out, err;
};

// Runs the flowshaper binary with `args` while the harness's loop serves.
Run run_cli(Harness& h, const std::string& args) {
    TempDir tmp;
    const std::string out = (tmp.path / "out").string(), err = (tmp.path / "err").string();
    const std::string cmd = std::string(FLOWSHAPER_BIN) + " " + args + " >" + out + " 2>" + err;
    std::atomic<bool> done{false};
    Run r;
    std::thread t([&] {
        r.status = std::system(cmd.c_str());
        done = true;
    });
    const bool finished = h.run_until([&] { return done.load(); });  // a hang guard
    if (!finished) h.server.reset();                                 // its read ends
    t.join();
    REQUIRE(finished);
    auto slurp = [](const std::string& path) {
        std::ifstream in(path);
        return std::string(std::istreambuf_iterator<char>(in), {});
    };
    r.out = slurp(out);
    r.err = slurp(err);
    r.status = WIFEXITED(r.status) ? WEXITSTATUS(r.status) : -1;
    return r;
}

}  // namespace

TEST_CASE("flowshaper status prints the heavy clients with why, the devices and the last poll") {
    Harness h;
    Run r = run_cli(h, "status --socket " + h.path);
    INFO(r.err);
    CHECK(r.status == 0);
    CHECK_THAT(r.out, Catch::Contains("/etc/flowshaper/mail.toml"));
    CHECK_THAT(r.out, Catch::Contains("heavy clients (2)"));
    CHECK_THAT(r.out, Catch::Contains("203.0.113.1"));
    CHECK_THAT(r.out, Catch::Contains("flow_bytes 600 MB >= 500 MB"));
    CHECK_THAT(r.out, Catch::Contains("eth1: missing (no such device)"));
    CHECK_THAT(r.out, Catch::Contains("customer-42"));
    CHECK_THAT(r.out, Catch::Contains("prefilter"));
    CHECK_THAT(r.out, Catch::Contains("Device or resource busy"));
}

TEST_CASE("flowshaper status --json prints the snapshot as the socket gave it") {
    Harness h;
    Run r = run_cli(h, "status --json --socket " + h.path);
    REQUIRE(r.status == 0);
    auto back = snapshot_from_json(nlohmann::json::parse(r.out));
    REQUIRE(back.ok());
    CHECK(to_json(*back) == to_json(*h.snap, false));  // the rows are top's: status leaves them out
}

TEST_CASE("flowshaper reload: a rejected policy prints its diagnostics and exits 1, success exits 0") {
    Harness h;
    h.next_reload = {false, {"/etc/f.toml:3:9: error: unknown unit 'mbps2'"}, ""};
    Run bad = run_cli(h, "reload --socket " + h.path);
    CHECK(bad.status == 1);
    CHECK_THAT(bad.err, Catch::Contains("/etc/f.toml:3:9: error: unknown unit 'mbps2'"));
    CHECK_THAT(bad.err, Catch::Contains("running policy was kept"));
    h.next_reload = {true, {}, ""};
    Run good = run_cli(h, "reload --socket " + h.path);
    CHECK(good.status == 0);
    CHECK(h.reloads == 2);
}

TEST_CASE("with no daemon, status and reload say so and exit 1") {
    Harness h;
    const std::string nowhere = (h.dir.path / "absent.sock").string();
    for (const char* cmd : {"status", "reload"}) {
        Run r = run_cli(h, std::string(cmd) + " --socket " + nowhere);
        CHECK(r.status == 1);
        CHECK_THAT(r.err, Catch::Contains("no daemon is running there"));
    }
}

TEST_CASE("flowshaper top --json -n 1 prints the daemon's clients as one JSON line") {
    Harness h;
    Run r = run_cli(h, "top --json -n 1 --interval 100 --socket " + h.path);
    INFO(r.err);
    REQUIRE(r.status == 0);
    auto line = nlohmann::json::parse(r.out);
    REQUIRE(line["clients"].size() == 2);
    CHECK(line["clients"][0]["state"] == "capped by rule imap");
    CHECK(h.watched_ms >= 10000);  // top asked the daemon to fill per-client rows
    Run plain = run_cli(h, "top --once --interval 100 --socket " + h.path);
    CHECK(plain.status == 0);
    CHECK_THAT(plain.out, Catch::Contains("203.0.113.0"));
    CHECK_THAT(plain.out, Catch::Contains("1.90 Mbit/s"));
    CHECK_THAT(plain.err, Catch::Contains("from the daemon at"));
}
