// The command line as a user meets it: exit statuses 0 (fine), 1 (the policy or the kernel said
// no), 2 (usage), and diagnostics on stderr with stdout kept for the result.
#include <catch2/catch.hpp>
#include <string>

#include "netns.hpp"

using flowshaper::testing::sh;

namespace {

const std::string kBin = FLOWSHAPER_BIN;
const std::string kPolicies = std::string(FLOWSHAPER_SOURCE_DIR) + "/policies/";
const std::string kInvalid = std::string(FLOWSHAPER_SOURCE_DIR) + "/tests/policy/invalid/";

// Runs flowshaper with `args`; stdout only in `out` (stderr dropped) unless `with_stderr`.
int fs(const std::string& args, std::string* out = nullptr, bool with_stderr = false) {
    if (with_stderr) return sh(kBin + " " + args, out);
    return sh("{ " + kBin + " " + args + " 2>/dev/null; }", out);  // sh() adds 2>&1 outside
}

}  // namespace

TEST_CASE("check exits 0 for valid policies, 1 with FILE:LINE:COL diagnostics, 2 on a usage error") {
    CHECK(fs("check " + kPolicies + "mail-server.toml " + kPolicies + "web-scrapers.toml") == 0);
    std::string out;
    CHECK(fs("check " + kPolicies + "mail-server.toml " + kInvalid + "08-rate-unit-typo.toml", &out, true) ==
          1);
    CHECK(out.find(kInvalid + "08-rate-unit-typo.toml:") == 0);
    CHECK(out.find(": error: ") != std::string::npos);
    CHECK(fs("check") == 2);
    CHECK(fs("check --no-such-flag " + kPolicies + "demo.toml") == 2);
    CHECK(fs("") == 2);
    CHECK(fs("frobnicate") == 2);
}

TEST_CASE("a file that is not a policy is one clear error, whatever its size") {
    std::string out;
    CHECK(fs("check /nonexistent/policy.toml", &out, true) == 1);
    CHECK(out.find("/nonexistent/policy.toml: error: cannot read: No such file or directory") == 0);
    CHECK(fs("check /dev/zero", &out, true) == 1);
    CHECK(out.find("/dev/zero: error: larger than 64 MiB: not a policy file") == 0);
}

TEST_CASE("plan prints a tree or a tc script on stdout and refuses an unknown format") {
    std::string text, script;
    REQUIRE(fs("plan " + kPolicies + "mail-server.toml", &text) == 0);
    CHECK(text.find("htb f5:") != std::string::npos);
    REQUIRE(fs("plan --format tc " + kPolicies + "mail-server.toml", &script) == 0);
    CHECK(script.rfind("qdisc add dev ", 0) == 0);  // notes went to stderr, not into the script
    CHECK(script.find("note:") == std::string::npos);
    std::string notes;  // the firewall backend run would choose, and why, among the notes
    REQUIRE(fs("plan --format tc " + kPolicies + "mail-server.toml", &notes, true) == 0);
    CHECK(notes.find("flowshaper: note: firewall: ") != std::string::npos);
    CHECK(notes.find("firewall = \"auto\"") != std::string::npos);
    CHECK(fs("plan --format json " + kPolicies + "mail-server.toml") == 2);
    CHECK(fs("plan " + kInvalid + "08-rate-unit-typo.toml") == 1);
}

TEST_CASE("show refuses an interval out of range instead of sleeping for ever") {
    std::string out;
    CHECK(fs("show --interval -5", &out, true) == 2);
    CHECK(out.find("--interval") != std::string::npos);
    CHECK(fs("show --interval 99999999") == 2);
}
