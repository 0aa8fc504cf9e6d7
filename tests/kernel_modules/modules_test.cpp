// load_modules() without a kernel: what it decides from /sys/module and the module indices.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "flowshaper/kernel/mangle_backend.hpp"
#include "flowshaper/kernel/modules.hpp"

using namespace flowshaper::kernel;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/fst-modules-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path); }
};

}  // namespace

TEST_CASE("a module listed in /sys/module is present and nothing is looked up or loaded") {
    TempDir dir;
    fs::create_directories(dir.path / "sys" / "ip_tables");
    ModuleOptions options{(dir.path / "no-modules").string(), (dir.path / "sys").string()};
    auto got = load_modules({{"ip_tables", false}}, options);
    REQUIRE(got.ok());
    REQUIRE(got->size() == 1);
    CHECK((*got)[0].name == "ip_tables");
    CHECK((*got)[0].state == ModuleState::Present);
}

TEST_CASE("without module indices every module is unknown, which is no error (a kernel without modules)") {
    TempDir dir;
    ModuleOptions options{(dir.path / "no-modules").string(), (dir.path / "sys").string()};
    auto needs = backend_modules(MangleBackend::Iptables, flowshaper::net::Family::V4);
    auto got = load_modules(needs, options);
    REQUIRE(got.ok());
    REQUIRE(got->size() == needs.size());
    for (const auto& m : *got) {
        INFO(m.name);
        CHECK(m.state == ModuleState::Unknown);
    }
}

TEST_CASE(
    "each backend asks for the modules of its own objects, and only legacy iptables' core is required") {
    using flowshaper::net::Family;
    auto v4 = backend_modules(MangleBackend::Iptables, Family::V4);
    auto v6 = backend_modules(MangleBackend::Iptables, Family::V6);
    REQUIRE_FALSE(v4.empty());
    CHECK(v4[0].name == "ip_tables");
    CHECK_FALSE(v4[0].autoloaded);  // nothing but its user loads it
    CHECK(v6[0].name == "ip6_tables");
    CHECK(v4[1].name == "iptable_mangle");
    CHECK(v6[1].name == "ip6table_mangle");
    for (size_t i = 1; i < v4.size(); ++i) CHECK(v4[i].autoloaded);
    for (const auto& m : backend_modules(MangleBackend::Nftables, Family::V4)) {
        INFO(m.name);
        CHECK(m.autoloaded);  // nfnetlink and nft expressions load on demand
    }
    CHECK(state_name(ModuleState::Unknown) == "unknown to kmod");
}
