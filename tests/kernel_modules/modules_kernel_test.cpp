// The mangle backends load the kernel modules they need through libkmod, on whichever kernel runs
// the tests: on a stock distribution kernel (tools/stock-kernel.sh) ip_tables and the rest are
// modules that nothing has loaded yet, and lsmod shows them loaded afterwards; on a kernel built
// without modules everything is built in and nothing is loaded. Which case holds is asked of
// kmod's own modinfo, not of flowshaper.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <thread>

#include "background.hpp"
#include "flowshaper/kernel/mangle_backend.hpp"
#include "flowshaper/kernel/modules.hpp"
#include "netns.hpp"
#include "wait.hpp"

using namespace flowshaper::testing;
using namespace flowshaper::kernel;
using flowshaper::net::Family;

namespace {

// modinfo (kmod's tool) finds a module file for `module`: it is loadable, not built in.
bool is_module_file(const std::string& module) {
    std::string out;
    return sh("modinfo -F filename " + module + " 2>/dev/null", &out) == 0 &&
           out.find(".ko") != std::string::npos;
}

bool lsmod_lists(const std::string& module) {
    return sh("lsmod | awk '{print $1}' | grep -qx " + module) == 0;
}

// Unloads legacy iptables (its tables first) so that the test sees the backend load it. A
// namespace that a previous test deleted may hold a table for a moment: retried until gone.
void unload_legacy_iptables() {
    const bool gone = wait_until(
        [] {
            sh("for m in $(lsmod | awk '$1 ~ /^ip6?table_/ {print $1}'); do modprobe -r $m; done "
               "2>/dev/null; "
               "modprobe -r ip_tables ip6_tables 2>/dev/null");
            return !lsmod_lists("ip_tables") && !lsmod_lists("ip6_tables");
        },
        60'000, 200);
    std::string mods;
    sh("lsmod", &mods);
    INFO("lsmod:\n" << mods);
    REQUIRE(gone);
}

MangleSpec heavy_rule() {
    MangleSpec spec;
    spec.mark_mask = 0x00ff0000;
    spec.dscp_rules.push_back({0x00010000, 0x00ff0000, 8, "heavy"});
    return spec;
}

std::string temp_policy(const std::string& text) {
    char tmpl[] = "/tmp/fst-modules-XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    close(fd);
    std::ofstream(tmpl) << text;
    return tmpl;
}

std::string iptables_policy(const std::string& socket) {
    return "[settings]\nfirewall = \"iptables\"\nstatus_socket = \"" + socket +
           "\"\n\n[[interface]]\ndevice = \"veth-s\"\nrate = \"1gbit\"\n\n"
           "[[cap]]\nname = \"c\"\ndevice = \"veth-s\"\nclients = [\"10.200.0.2\"]\nrate = \"5mbit\"\n";
}

}  // namespace

TEST_CASE("the iptables backend loads ip_tables, its mangle tables and matches before its first write",
          "[kernel]") {
    require_netns_privileges();
    const bool modular = is_module_file("ip_tables");
    INFO((modular ? "ip_tables is a module here" : "ip_tables is built in (or absent) here"));
    if (modular) unload_legacy_iptables();
    Netns ns("km");
    {
        EnterNetns in(ns);
        if (!modular) {
            // Nothing to load: kmod knows nothing, or says built in; no failure either way.
            auto outcomes = load_modules(backend_modules(MangleBackend::Iptables, Family::V4));
            REQUIRE(outcomes.ok());
            for (const auto& m : *outcomes) {
                INFO(m.name << ": " << state_name(m.state) << " " << m.detail);
                CHECK((m.state == ModuleState::Present || m.state == ModuleState::Unknown));
            }
        }
        auto port = make_iptc_mangle_port();
        for (auto f : {Family::V4, Family::V6}) {
            auto st = port->ensure(f, heavy_rule());
            INFO((st ? std::string() : st.error().text()));
            REQUIRE(st.ok());
        }
    }
    if (modular)
        for (const char* m :
             {"ip_tables", "ip6_tables", "iptable_mangle", "ip6table_mangle", "xt_connmark", "xt_DSCP"}) {
            INFO(m);
            CHECK(lsmod_lists(m));
        }
    CHECK(ns.exec_ok("iptables-legacy-save -t mangle").find(":FLOWSHAPER") != std::string::npos);
    CHECK(ns.exec_ok("ip6tables-legacy-save -t mangle").find(":FLOWSHAPER") != std::string::npos);
    EnterNetns in(ns);
    auto port = make_iptc_mangle_port();
    for (auto f : {Family::V4, Family::V6}) CHECK(port->remove_all(f).ok());
}

TEST_CASE("without CAP_SYS_MODULE a start on iptables names the module it cannot load and leaves nothing",
          "[kernel]") {
    require_netns_privileges();
    const bool modular = is_module_file("ip_tables");
    VethPair net("km");
    const std::string socket = "/tmp/fst-modules-" + std::to_string(getpid()) + ".sock";
    const std::string policy = temp_policy(iptables_policy(socket));
    const std::string run =
        "setpriv --bounding-set -sys_module " + std::string(FLOWSHAPER_BIN) + " run " + policy;
    if (!modular) {
        // Built in: nothing to load, so the missing capability changes nothing.
        const std::string log = policy + ".log";
        Background daemon(net.server, run, log);
        const bool ready = wait_until(
            [&] {
                std::ifstream in(log);
                std::string text((std::istreambuf_iterator<char>(in)), {});
                return text.find("ready:") != std::string::npos;
            },
            60'000);
        daemon.stop();
        std::ifstream in(log);
        INFO(std::string((std::istreambuf_iterator<char>(in)), {}));
        CHECK(ready);
        std::remove(log.c_str());
        std::remove(policy.c_str());
        return;
    }
    unload_legacy_iptables();
    std::string out;
    const int rc = net.server.exec("timeout 300 " + run + " 2>&1", &out);
    INFO(out);
    CHECK(rc == 1);
    CHECK(out.find("load kernel module ip_tables") != std::string::npos);
    CHECK(out.find("CAP_SYS_MODULE") != std::string::npos);
    CHECK(out.find("stays") == std::string::npos);  // nothing was created, so nothing stays
    CHECK_FALSE(lsmod_lists("ip_tables"));
    // Nothing of ours is left: no tree on the device, no table inet flowshaper.
    CHECK(net.server.exec_ok("tc qdisc show dev veth-s").find("htb") == std::string::npos);
    CHECK(net.server.exec("nft list table inet flowshaper 2>/dev/null") != 0);
    std::remove(policy.c_str());
}
