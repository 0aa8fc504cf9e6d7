#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "flowshaper/controller/audit_log.hpp"

using namespace flowshaper;
using namespace flowshaper::controller;
namespace fs = std::filesystem;

namespace {

std::vector<nlohmann::json> lines_of(const fs::path& path) {
    std::vector<nlohmann::json> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
}

struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/flowshaper-audit-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path); }
};

AuditEvent cap_event(const std::string& client) {
    return {1'760'000'000'000, "cap", client, "imap", "eth0", "flow_bytes", 600'000'000, 500'000'000, ""};
}

}  // namespace

TEST_CASE("the audit log appends one JSON line per event and never rewrites what was there") {
    TempDir dir;
    const fs::path file = dir.path / "audit.jsonl";
    std::ofstream(file) << "{\"earlier\":true}\n";
    AuditLog log(file.string());
    REQUIRE(log.open().ok());
    REQUIRE(log.write(cap_event("203.0.113.9")).ok());
    REQUIRE(log.write({1'760'000'001'000, "reload", "", "", "", "", 0, 0, "policy sha256 ab"}).ok());
    auto lines = lines_of(file);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0]["earlier"] == true);
    CHECK(lines[1]["client"] == "203.0.113.9");
    CHECK(lines[1]["measured"] == 600'000'000);
    CHECK(lines[2]["action"] == "reload");
    struct stat st {};
    REQUIRE(stat(file.c_str(), &st) == 0);
}

TEST_CASE("after logrotate renames the audit log, reopen writes to a new file at the same path") {
    TempDir dir;
    const fs::path file = dir.path / "audit.jsonl", rotated = dir.path / "audit.jsonl.1";
    AuditLog log(file.string());
    REQUIRE(log.open().ok());
    REQUIRE(log.write(cap_event("203.0.113.1")).ok());
    fs::rename(file, rotated);
    REQUIRE(log.write(cap_event("203.0.113.2")).ok());  // still the renamed file until SIGUSR1
    REQUIRE(log.reopen().ok());
    REQUIRE(log.write(cap_event("203.0.113.3")).ok());
    auto old_lines = lines_of(rotated), new_lines = lines_of(file);
    REQUIRE(old_lines.size() == 2);
    CHECK(old_lines[1]["client"] == "203.0.113.2");
    REQUIRE(new_lines.size() == 1);
    CHECK(new_lines[0]["client"] == "203.0.113.3");
}

TEST_CASE("an audit log that cannot be opened is an error, and a later write retries the open") {
    TempDir dir;
    const fs::path file = dir.path / "missing-dir" / "audit.jsonl";
    AuditLog log(file.string());
    auto s = log.open();
    REQUIRE_FALSE(s.ok());
    CHECK_THAT(s.error().text(), Catch::Contains("missing-dir"));
    CHECK_THAT(s.error().text(), Catch::Contains("No such file or directory"));
    CHECK_FALSE(log.write(cap_event("203.0.113.1")).ok());
    fs::create_directory(dir.path / "missing-dir");
    CHECK(log.write(cap_event("203.0.113.1")).ok());
    CHECK(lines_of(file).size() == 1);
}
