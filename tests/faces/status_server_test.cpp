#include <sys/stat.h>

#include <fstream>
#include <thread>
#include <vector>

#include "faces_harness.hpp"
#include "flowshaper/controller/snapshot_json.hpp"

using namespace flowshaper;
using namespace flowshaper::controller;
using namespace flowshaper::faces_test;
using nlohmann::json;

namespace {

// Runs `body` on a thread while the harness's loop serves; fails the test on a timeout.
void serve_while(Harness& h, const std::function<void()>& body, int timeout_ms = 20000) {
    std::atomic<bool> done{false};
    std::thread t([&] {
        body();
        done = true;
    });
    const bool finished = h.run_until([&] { return done.load(); }, timeout_ms);
    if (!finished) h.server.reset();  // closes every connection: the thread's reads end
    t.join();
    REQUIRE(finished);
}

}  // namespace

TEST_CASE("ping, status, clients and reload each get one JSON line") {
    Harness h;
    json ping, status, clients, reload, failed;
    h.next_reload = {true, {}, ""};
    serve_while(h, [&] {
        Client c(h.path);
        ping = c.ask(R"({"cmd":"ping"})");
        status = c.ask(R"({"cmd":"status"})");
        clients = c.ask(R"({"cmd":"clients","watch_ms":30000})");
        reload = c.ask(R"({"cmd":"reload"})");
    });
    CHECK(ping["ok"] == true);
    CHECK(ping["pong"] == true);
    REQUIRE(status["ok"] == true);
    auto snap = snapshot_from_json(status["snapshot"]);
    REQUIRE(snap.ok());
    CHECK(to_json(*snap) == to_json(*h.snap, false));
    CHECK(snap->clients.empty());  // per-client rows come with "clients" only
    CHECK(clients["ok"] == true);
    CHECK(clients["clients"].size() == 2);
    CHECK(h.watched_ms == 30000);
    CHECK(reload == json{{"ok", true}});
    CHECK(h.reloads == 1);
}

TEST_CASE("a rejected reload answers the policy's diagnostics") {
    Harness h;
    h.next_reload = {false, {"/etc/f.toml:3:9: error: unknown unit 'mbps2'"}, ""};
    json reload;
    serve_while(h, [&] { reload = Client(h.path).ask(R"({"cmd":"reload"})"); });
    CHECK(reload["ok"] == false);
    CHECK(reload["diagnostics"][0] == "/etc/f.toml:3:9: error: unknown unit 'mbps2'");
}

TEST_CASE("garbage and unknown commands get an error line and the connection keeps serving") {
    Harness h;
    std::vector<json> answers;
    serve_while(h, [&] {
        Client c(h.path);
        for (const char* req :
             {"hello", "[1,2]", R"({"cmd":42})", R"({"cmd":"shutdown"})", "\x01\xff{", R"({"cmd":"ping"})"})
            answers.push_back(c.ask(req));
    });
    REQUIRE(answers.size() == 6);
    for (size_t i = 0; i < 5; ++i) {
        CHECK(answers[i]["ok"] == false);
        CHECK(answers[i]["error"].is_string());
    }
    CHECK_THAT(answers[3]["error"].get<std::string>(), Catch::Contains("unknown cmd \"shutdown\""));
    CHECK(answers[5]["ok"] == true);
}

TEST_CASE("before the first snapshot status says the daemon is starting") {
    Harness h;
    h.snap = nullptr;
    json status;
    serve_while(h, [&] { status = Client(h.path).ask(R"({"cmd":"status"})"); });
    CHECK(status["ok"] == false);
    CHECK_THAT(status["error"].get<std::string>(), Catch::Contains("starting"));
}

TEST_CASE("200 concurrent status clients are all served while the loop's timer stays on time") {
    StatusServerSettings settings;
    settings.max_clients = 256;
    // This test is about serving many clients at once, not about the write timeout: the client
    // reads its 200 answers one after the other (slowly under the sanitizers).
    settings.write_timeout_ms = 60'000;
    Harness h(settings, 200);
    std::atomic<int> ok{0};
    serve_while(h, [&] {  // one thread, 200 connections, 3 rounds of a request on each at once
        std::vector<std::unique_ptr<Client>> clients;
        for (int i = 0; i < 200; ++i) clients.push_back(std::make_unique<Client>(h.path));
        for (int round = 0; round < 3; ++round) {
            for (auto& c : clients) c->send_all("{\"cmd\":\"status\"}\n");
            for (auto& c : clients)
                if (auto a = json::parse(c->read_line(), nullptr, false);
                    a.is_object() && a.value("ok", false))
                    ++ok;
        }
    });
    CHECK(ok == 600);
    INFO("worst timer gap " << h.worst_gap_ms << " ms, longest round " << h.worst_busy_ms << " ms wall, "
                            << h.worst_cpu_us << " us CPU");
#if defined(__SANITIZE_ADDRESS__)
    constexpr uint64_t kSlowdown = 5;  // AddressSanitizer: every memory access is checked
#else
    constexpr uint64_t kSlowdown = 1;
#endif
    CHECK(h.worst_cpu_us < 50'000 * kSlowdown);  // the loop's own work per round
    CHECK(h.worst_gap_ms < 20 + 100 * kSlowdown);
    CHECK(h.run_until([&] { return h.server->connections() == 0; }, 2000));
}

TEST_CASE("beyond max_clients a connection is told so and closed, the others are served") {
    StatusServerSettings settings;
    settings.max_clients = 4;
    Harness h(settings);
    json refused, still_ok;
    serve_while(h, [&] {
        std::vector<std::unique_ptr<Client>> held;
        for (int i = 0; i < 4; ++i) {
            held.push_back(std::make_unique<Client>(h.path));
            held.back()->ask(R"({"cmd":"ping"})");  // accepted and answered: the slot is taken
        }
        Client extra(h.path);
        refused = json::parse(extra.read_line(), nullptr, false);
        still_ok = held[0]->ask(R"({"cmd":"ping"})");
    });
    CHECK(refused["ok"] == false);
    CHECK_THAT(refused["error"].get<std::string>(), Catch::Contains("too many"));
    CHECK(still_ok["ok"] == true);
}

TEST_CASE("a 10 MB request line gets an error and its connection is closed, memory stays bounded") {
    Harness h;
    const std::string huge(10 * 1024 * 1024, 'x');
    h.base_heap = h.peak_heap = mallinfo2().uordblks;
    json error_answer, other;
    bool closed = false;
    serve_while(h, [&] {
        Client big(h.path), small(h.path);
        std::thread sender([&] { big.send_all(huge); });  // blocks once the server stops reading
        error_answer = json::parse(big.read_line(), nullptr, false);
        other = small.ask(R"({"cmd":"status"})");
        closed = big.closed_by_peer();
        shutdown(big.fd, SHUT_RDWR);
        sender.join();
    });
    CHECK(error_answer["ok"] == false);
    CHECK_THAT(error_answer["error"].get<std::string>(), Catch::Contains("longer than 65536"));
    CHECK(other["ok"] == true);
    CHECK(closed);
    CHECK(h.peak_heap - h.base_heap < 2 * 1024 * 1024);  // the 10 MB never sat in the server
    CHECK(h.worst_gap_ms < 20 + 100);
}

TEST_CASE("a client that asks and never reads is dropped at the output bound, others are served") {
    StatusServerSettings settings;
    settings.max_output_bytes = 1024 * 1024;
    Harness h(settings, 500);  // a status answer of ~250 KB
    json other;
    serve_while(h, [&] {
        Client hog(h.path), polite(h.path);
        std::string requests;
        for (int i = 0; i < 200; ++i) requests += "{\"cmd\":\"status\"}\n";
        hog.send_all(requests);  // and never reads
        other = polite.ask(R"({"cmd":"ping"})");
        while (h.server->dropped() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    });
    CHECK(h.server->dropped() == 1);
    CHECK(other["ok"] == true);
    CHECK(h.worst_gap_ms < 20 + 100);
    CHECK(h.peak_heap - h.base_heap < 8 * 1024 * 1024);  // answers share one buffer
}

TEST_CASE("a client that stops reading mid-answer is dropped after the write timeout") {
    StatusServerSettings settings;
    settings.write_timeout_ms = 300;
    Harness h(settings, 5000);  // an answer of a few MB: more than the socket buffers hold
    uint64_t dropped_after_ms = 0;
    serve_while(h, [&] {
        Client stuck(h.path);
        stuck.send_all("{\"cmd\":\"status\"}\n");
        const auto t0 = std::chrono::steady_clock::now();
        while (h.server->dropped() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        dropped_after_ms = static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
                .count());
    });
    CHECK(dropped_after_ms >= 250);
    CHECK(dropped_after_ms < 3000);
    CHECK(h.server->connections() == 0);
}

TEST_CASE("the socket file is mode 0600") {
    Harness h;
    struct stat st {};
    REQUIRE(stat(h.path.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 07777) == 0600);
}

TEST_CASE("a second server refuses a socket another one answers on") {
    Harness h;
    EventLoop loop2;
    StatusServerSettings settings;
    settings.path = h.path;
    StatusServer second(loop2, {}, settings,
                        make_memory_logger(std::make_shared<std::vector<std::string>>()));
    auto s = second.open();
    REQUIRE_FALSE(s.ok());
    CHECK_THAT(s.error().text(), Catch::Contains("another process"));
    json still;
    serve_while(h, [&] { still = Client(h.path).ask(R"({"cmd":"ping"})"); });
    CHECK(still["ok"] == true);  // the first one still owns it
}

TEST_CASE("a stale socket file nobody answers on is replaced, a file that is not a socket is refused") {
    TempDir dir;
    auto log = make_memory_logger(std::make_shared<std::vector<std::string>>());
    const std::string path = (dir.path / "s.sock").string();
    EventLoop loop;
    StatusServerSettings settings;
    settings.path = path;
    {
        StatusServer first(loop, {}, settings, log);
        REQUIRE(first.open().ok());
    }  // removes its file; make a stale one as a crashed daemon leaves it:
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    close(fd);
    StatusServer second(loop, {}, settings, log);
    REQUIRE(second.open().ok());

    settings.path = (dir.path / "plain-file").string();
    std::ofstream(settings.path) << "not a socket";
    StatusServer third(loop, {}, settings, log);
    auto s = third.open();
    REQUIRE_FALSE(s.ok());
    CHECK_THAT(s.error().text(), Catch::Contains("not a socket"));
    CHECK(std::filesystem::file_size(settings.path) == 12);  // untouched
}

TEST_CASE("the socket path: the key's value, else the default when /run/flowshaper exists, else none") {
    TempDir dir;
    policy::Settings settings;
    CHECK(status_socket_path(settings, (dir.path / "absent").string()) == std::nullopt);
    CHECK(status_socket_path(settings, dir.path.string()) == dir.path.string() + "/flowshaper.sock");
    settings.status_socket = "/tmp/x.sock";
    CHECK(status_socket_path(settings, (dir.path / "absent").string()) == "/tmp/x.sock");
    CHECK(std::string(kDefaultStatusSocket) == "/run/flowshaper/flowshaper.sock");
}
