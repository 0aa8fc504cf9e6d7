// The real mangle port (libiptc; the accounting cases on both backends) against the kernel, in
// throwaway network namespaces, checked with tools that are not flowshaper's:
// iptables-legacy-save / ip6tables-legacy-save, tcpdump, conntrack, and /proc/sys read through
// `ip netns exec`.
#include <sys/file.h>

#include <fcntl.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "backends.hpp"
#include "flowshaper/kernel/mangle_iptc_port.hpp"
#include "flowshaper/kernel/mangle_nft_port.hpp"
#include "netns.hpp"
#include "wait.hpp"

using namespace flowshaper::testing;
using flowshaper::kernel::make_iptc_mangle_port;
using flowshaper::kernel::MangleBackend;
using flowshaper::kernel::MangleSpec;
using flowshaper::net::Family;

namespace {

const char* family_name(Family f) {
    return f == Family::V4 ? "IPv4" : "IPv6";
}
std::string iptables(Family f) {
    return f == Family::V4 ? "iptables-legacy" : "ip6tables-legacy";
}

// The mangle table as iptables-legacy-save prints it, without its timestamped comment lines.
std::string save(const Netns& ns, Family f, bool counters = false) {
    std::string out = ns.exec_ok(iptables(f) + "-save -t mangle" + (counters ? " -c" : ""));
    std::istringstream in(out);
    std::string line, kept;
    while (std::getline(in, line))
        if (!line.empty() && line[0] != '#') kept += line + "\n";
    return kept;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

size_t count_lines(const std::string& text, const std::string& line) {
    auto all = lines_of(text);
    return static_cast<size_t>(std::count(all.begin(), all.end(), line));
}

std::string without_flowshaper(const std::string& text) {
    std::string out;
    for (const auto& line : lines_of(text))
        if (line.find("FLOWSHAPER") == std::string::npos) out += line + "\n";
    return out;
}

MangleSpec example_spec() {
    MangleSpec spec;
    spec.mark_mask = 0x00ff0000;
    spec.dscp_rules.push_back({0x00010000, 0x00ff0000, 8, ""});
    spec.dscp_rules.push_back({0x00020000, 0x00ff0000, 10, "flowshaper imap"});
    return spec;
}

const std::string kBuiltinChains =
    "*mangle\n"
    ":PREROUTING ACCEPT [0:0]\n"
    ":INPUT ACCEPT [0:0]\n"
    ":FORWARD ACCEPT [0:0]\n"
    ":OUTPUT ACCEPT [0:0]\n"
    ":POSTROUTING ACCEPT [0:0]\n";

const std::string kExampleRules =
    ":FLOWSHAPER - [0:0]\n"
    "-A POSTROUTING -j FLOWSHAPER\n"
    "-A FLOWSHAPER -j CONNMARK --restore-mark --nfmask 0xff0000 --ctmask 0xff0000\n"
    "-A FLOWSHAPER -m connmark --mark 0x10000/0xff0000 -j DSCP --set-dscp 0x08\n"
    "-A FLOWSHAPER -m connmark --mark 0x20000/0xff0000 -m comment --comment \"flowshaper imap\" -j DSCP "
    "--set-dscp 0x0a\n";

// Someone else's rules: a rule in POSTROUTING, a user chain, and a jump to it.
void add_foreign_rules(const Netns& ns, Family f) {
    const std::string ipt = iptables(f) + " -t mangle ";
    ns.exec_ok(ipt + "-A POSTROUTING -p udp --dport 9999 -j MARK --set-mark 0x1");
    ns.exec_ok(ipt + "-N USERCHAIN");
    ns.exec_ok(ipt + "-A USERCHAIN -p tcp --dport 25 -j RETURN");
    ns.exec_ok(ipt + "-A POSTROUTING -o lo -j USERCHAIN");
}

// Appends `count` rules to PREROUTING in one iptables-legacy-restore run.
void load_filler_rules(const Netns& ns, Family f, int count) {
    std::string rules = "*mangle\n";
    for (int i = 0; i < count; ++i)
        rules += "-A PREROUTING -p tcp --dport " + std::to_string(1 + i) + " -j RETURN\n";
    rules += "COMMIT\n";
    FILE* restore = popen(("ip netns exec " + ns.name() + " " + iptables(f) + "-restore -n").c_str(), "w");
    REQUIRE(restore);
    fputs(rules.c_str(), restore);
    REQUIRE(pclose(restore) == 0);
}

}  // namespace

TEST_CASE("ensure creates the chain, the jump and the rules, as iptables-legacy-save lists them") {
    require_netns_privileges();
    const Family f = GENERATE(Family::V4, Family::V6);
    INFO(family_name(f));
    Netns ns("mg");
    auto port = make_iptc_mangle_port();
    {
        EnterNetns in(ns);
        auto st = port->ensure(f, example_spec());
        INFO((st ? "" : st.error().text()));
        REQUIRE(st);
    }
    CHECK(port->commits() == 1);
    CHECK(save(ns, f) == kBuiltinChains + kExampleRules + "COMMIT\n");

    // The same rules written by iptables-legacy itself give the same listing.
    Netns reference("mgref");
    const std::string ipt = iptables(f) + " -t mangle ";
    reference.exec_ok(ipt + "-N FLOWSHAPER");
    reference.exec_ok(ipt + "-A FLOWSHAPER -j CONNMARK --restore-mark --nfmask 0xff0000 --ctmask 0xff0000");
    reference.exec_ok(ipt + "-A FLOWSHAPER -m connmark --mark 0x10000/0xff0000 -j DSCP --set-dscp 8");
    reference.exec_ok(
        ipt +
        "-A FLOWSHAPER -m connmark --mark 0x20000/0xff0000 -m comment --comment 'flowshaper imap' "
        "-j DSCP --set-dscp 10");
    reference.exec_ok(ipt + "-I POSTROUTING -j FLOWSHAPER");
    CHECK(save(ns, f) == save(reference, f));
}

TEST_CASE(
    "the candidate flag rule lists as iptables-legacy writes it, and iptables' own copy reads back as ours") {
    require_netns_privileges();
    const Family f = GENERATE(Family::V4, Family::V6);
    INFO(family_name(f));
    MangleSpec spec = example_spec();
    spec.mark_mask = 0x007f0000;
    spec.dscp_rules[0].ctmark_mask = spec.dscp_rules[1].ctmark_mask = 0x007f0000;
    spec.candidate = MangleSpec::Candidate{500000000, 0x00800000};
    Netns ns("mgc");
    auto port = make_iptc_mangle_port();
    {
        EnterNetns in(ns);
        auto st = port->ensure(f, spec);
        INFO((st ? "" : st.error().text()));
        REQUIRE(st);
    }
    const std::string listed = save(ns, f);
    CHECK(
        count_lines(listed,
                    "-A FLOWSHAPER -m connbytes --connbytes 500000000 --connbytes-mode bytes --connbytes-dir "
                    "both -j CONNMARK --set-xmark 0x800000/0x800000") == 1);
    CHECK(lines_of(listed).at(9) ==
          "-A FLOWSHAPER -m connbytes --connbytes 500000000 --connbytes-mode bytes --connbytes-dir both -j "
          "CONNMARK --set-xmark 0x800000/0x800000");  // right after the restore rule

    // Written by iptables-legacy (with --or-mark, the same rule): identical listing, read as ours.
    Netns reference("mgcref");
    const std::string ipt = iptables(f) + " -t mangle ";
    reference.exec_ok(ipt + "-N FLOWSHAPER");
    reference.exec_ok(ipt + "-A FLOWSHAPER -j CONNMARK --restore-mark --nfmask 0x7f0000 --ctmask 0x7f0000");
    reference.exec_ok(ipt +
                      "-A FLOWSHAPER -m connbytes --connbytes 500000000: --connbytes-dir both "
                      "--connbytes-mode bytes -j CONNMARK --or-mark 0x800000");
    reference.exec_ok(ipt + "-A FLOWSHAPER -m connmark --mark 0x10000/0x7f0000 -j DSCP --set-dscp 8");
    reference.exec_ok(
        ipt +
        "-A FLOWSHAPER -m connmark --mark 0x20000/0x7f0000 -m comment --comment 'flowshaper imap' "
        "-j DSCP --set-dscp 10");
    reference.exec_ok(ipt + "-I POSTROUTING -j FLOWSHAPER");
    CHECK(save(reference, f) == listed);
    EnterNetns in(reference);
    auto read = port->read(f);
    INFO((read ? "" : read.error().text()));
    REQUIRE(read);
    REQUIRE(read->has_value());
    CHECK(**read == spec);
}

TEST_CASE("someone else's rules stay identical, and remove_all restores the table exactly") {
    require_netns_privileges();
    const Family f = GENERATE(Family::V4, Family::V6);
    INFO(family_name(f));
    Netns ns("mg");
    add_foreign_rules(ns, f);
    const std::string before = save(ns, f);
    auto port = make_iptc_mangle_port();
    {
        EnterNetns in(ns);
        REQUIRE(port->ensure(f, example_spec()));
    }
    const std::string during = save(ns, f);
    CHECK(without_flowshaper(during) == before);
    CHECK(count_lines(during, "-A POSTROUTING -j FLOWSHAPER") == 1);
    // The jump is the first rule of POSTROUTING.
    auto lines = lines_of(during);
    auto first =
        std::find_if(lines.begin(), lines.end(), [](auto& l) { return l.rfind("-A POSTROUTING", 0) == 0; });
    REQUIRE(first != lines.end());
    CHECK(*first == "-A POSTROUTING -j FLOWSHAPER");
    {
        EnterNetns in(ns);
        REQUIRE(port->remove_all(f));
        REQUIRE(port->remove_all(f));  // nothing left: no second commit
    }
    CHECK(port->commits() == 2);
    CHECK(save(ns, f) == before);
}

TEST_CASE("ensure twice commits once, and a restarted port adopts the table without a commit") {
    require_netns_privileges();
    const Family f = GENERATE(Family::V4, Family::V6);
    INFO(family_name(f));
    Netns ns("mg");
    add_foreign_rules(ns, f);
    EnterNetns in(ns);
    auto port = make_iptc_mangle_port();
    REQUIRE(port->read(f));
    CHECK_FALSE(port->read(f)->has_value());
    REQUIRE(port->ensure(f, example_spec()));
    REQUIRE(port->ensure(f, example_spec()));
    CHECK(port->commits() == 1);
    const std::string after_first = save(ns, f);

    auto restarted = make_iptc_mangle_port();  // as after SIGKILL: a new process, same kernel
    auto read = restarted->read(f);
    REQUIRE(read);
    REQUIRE(read->has_value());
    CHECK(**read == example_spec());
    REQUIRE(restarted->ensure(f, example_spec()));
    CHECK(restarted->commits() == 0);
    const std::string after_restart = save(ns, f);
    CHECK(after_restart == after_first);
    CHECK(count_lines(after_restart, ":FLOWSHAPER - [0:0]") == 1);
    CHECK(count_lines(after_restart, "-A POSTROUTING -j FLOWSHAPER") == 1);
}

TEST_CASE("a changed DSCP converges in one commit, the rule count stays and other counters survive") {
    require_netns_privileges();
    const Family f = GENERATE(Family::V4, Family::V6);
    INFO(family_name(f));
    Netns ns("mg");
    EnterNetns in(ns);
    auto port = make_iptc_mangle_port();
    REQUIRE(port->ensure(f, example_spec()));
    // Give the restore rule counters of its own (same rule, counters set) to see them survive.
    ns.exec_ok(
        iptables(f) +
        " -t mangle -R FLOWSHAPER 1 -c 5 500 -j CONNMARK --restore-mark --nfmask 0xff0000 --ctmask 0xff0000");
    REQUIRE(port->ensure(f, example_spec()));
    CHECK(port->commits() == 1);  // iptables' replacement is the same rule: nothing to do
    MangleSpec changed = example_spec();
    changed.dscp_rules[0].dscp = 46;
    REQUIRE(port->ensure(f, changed));
    CHECK(port->commits() == 2);
    const std::string text = save(ns, f);
    CHECK(count_lines(text, "-A FLOWSHAPER -m connmark --mark 0x10000/0xff0000 -j DSCP --set-dscp 0x2e") ==
          1);
    CHECK(text.find("--set-dscp 0x08") == std::string::npos);
    size_t rules = 0;
    for (const auto& line : lines_of(text)) rules += line.rfind("-A FLOWSHAPER", 0) == 0;
    CHECK(rules == 3);
    CHECK(count_lines(
              save(ns, f, true),
              "[5:500] -A FLOWSHAPER -j CONNMARK --restore-mark --nfmask 0xff0000 --ctmask 0xff0000") == 1);
    auto read = port->read(f);
    REQUIRE(read);
    REQUIRE(read->has_value());
    CHECK(**read == changed);
}

TEST_CASE("a rule added by iptables-legacy between read and ensure is kept and ensure converges") {
    require_netns_privileges();
    const Family f = GENERATE(Family::V4, Family::V6);
    INFO(family_name(f));
    Netns ns("mg");
    EnterNetns in(ns);
    auto port = make_iptc_mangle_port();
    REQUIRE(port->ensure(f, example_spec()));
    REQUIRE(port->read(f));
    ns.exec_ok(iptables(f) + " -w -t mangle -I POSTROUTING -p udp --dport 9999 -j MARK --set-mark 0x1");
    MangleSpec changed = example_spec();
    changed.dscp_rules.pop_back();
    REQUIRE(port->ensure(f, changed));
    const std::string text = save(ns, f);
    CHECK(count_lines(text, "-A POSTROUTING -p udp -m udp --dport 9999 -j MARK --set-xmark 0x1/0xffffffff") ==
          1);
    CHECK(count_lines(text, "-A POSTROUTING -j FLOWSHAPER") == 1);
    CHECK(text.find("flowshaper imap") == std::string::npos);
}

TEST_CASE("ensure converges while another program writes the table without taking the lock") {
    require_netns_privileges();
    const Family f = GENERATE(Family::V4, Family::V6);
    INFO(family_name(f));
    Netns ns("mg");
    EnterNetns in(ns);
    flowshaper::kernel::IptcOptions options;
    options.max_attempts = 50;
    auto port = make_iptc_mangle_port(options);
    // 3,000 rules elsewhere make each snapshot and commit slow enough for the other program's
    // commits to land in between (EAGAIN) rather than only before or after.
    load_filler_rules(ns, f, 3000);
    std::atomic<int> added{0};
    std::thread writer([&] {  // a private lock file: this writer never waits for ours
        for (int i = 0; i < 30; ++i)
            if (ns.exec("env XTABLES_LOCKFILE=/tmp/fst-mangle-other.lock " + iptables(f) +
                        " -t mangle -A POSTROUTING -p udp --dport " + std::to_string(10000 + i) +
                        " -j RETURN") == 0)
                ++added;
    });
    MangleSpec spec = example_spec();
    std::vector<std::string> failures;
    for (int i = 0; i < 30; ++i) {
        spec.dscp_rules[0].dscp = static_cast<uint8_t>(i % 2 ? 8 : 12);
        if (auto st = port->ensure(f, spec); !st) failures.push_back(st.error().text());
    }
    writer.join();
    CHECK(failures.empty());
    const std::string text = save(ns, f);
    size_t foreign = 0;
    for (const auto& line : lines_of(text)) foreign += line.rfind("-A POSTROUTING -p udp", 0) == 0;
    CHECK(foreign == static_cast<size_t>(added.load()));  // every rule the other program committed is there
    CHECK(added.load() > 0);
    CHECK(count_lines(text, "-A POSTROUTING -j FLOWSHAPER") == 1);
    // An unlocked writer that commits an older snapshot can revert a change that kept the rule
    // count (the kernel only compares counts): the next ensure repairs it.
    REQUIRE(port->ensure(f, spec));
    auto read = port->read(f);
    REQUIRE(read);
    REQUIRE(read->has_value());
    CHECK(**read == spec);
}

TEST_CASE("ensure waits for the xtables lock and gives up with a clear error when it is held too long") {
    require_netns_privileges();
    Netns ns("mg");
    EnterNetns in(ns);
    char path[] = "/tmp/fst-xtables-lock-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    REQUIRE(flock(fd, LOCK_EX) == 0);
    flowshaper::kernel::IptcOptions options;
    options.lock_path = path;
    options.lock_timeout = std::chrono::milliseconds(300);
    auto port = make_iptc_mangle_port(options);

    auto st = port->ensure(Family::V4, example_spec());
    REQUIRE_FALSE(st);
    CHECK_THAT(st.error().text(), Catch::Contains("xtables lock") && Catch::Contains("300 ms"));
    CHECK(save(ns, Family::V4) == kBuiltinChains + "COMMIT\n");  // nothing written without the lock

    // A port that waits long enough for any machine; the lock is held for 150 ms more (a
    // duration: how long ensure must wait), released from another thread.
    options.lock_timeout = std::chrono::milliseconds(kWaitMs);
    auto patient = make_iptc_mangle_port(options);
    const auto start = std::chrono::steady_clock::now();
    std::thread releaser([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
        flock(fd, LOCK_UN);
    });
    REQUIRE(patient->ensure(Family::V4, example_spec()));
    // Not before the release (a lower bound: a slow machine only makes it longer).
    CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(150));
    releaser.join();
    close(fd);
    unlink(path);
}

TEST_CASE("the XTABLES_LOCKFILE that iptables-legacy honours is the lock the port takes") {
    require_netns_privileges();
    Netns ns("mg");
    char path[] = "/tmp/fst-xtables-env-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    setenv("XTABLES_LOCKFILE", path, 1);
    flowshaper::kernel::IptcOptions options;
    options.lock_timeout = std::chrono::milliseconds(200);
    auto port = make_iptc_mangle_port(options);
    // While iptables-legacy holds the lock (it waits for it with -w, so hold it with flock(1)),
    // the port cannot commit. flock(1) holds it until the file `held` is gone (checked every 50 ms,
    // a polling step); that it holds it, `flock -n` says.
    const std::string held = std::string(path) + ".held";
    std::ofstream(held) << "";
    std::string holder =
        "flock " + std::string(path) + " sh -c 'while [ -e " + held + " ]; do sleep 0.05; done'";
    std::thread hold([&] { sh(holder); });
    CHECK(wait_until([&] { return sh("flock -n " + std::string(path) + " true") != 0; }));
    flowshaper::Status st;
    {
        EnterNetns in(ns);
        st = port->ensure(Family::V4, example_spec());
    }
    std::remove(held.c_str());
    hold.join();
    unsetenv("XTABLES_LOCKFILE");
    close(fd);
    unlink(path);
    REQUIRE_FALSE(st);
    CHECK_THAT(st.error().text(), Catch::Contains(path));
}

TEST_CASE("both backends: conntrack byte accounting is switched on in the namespace only") {
    require_netns_privileges();
    const MangleBackend backend = GENERATE(MangleBackend::Nftables, MangleBackend::Iptables);
    INFO(name(backend));
    const std::string host_before = sh_ok("cat /proc/sys/net/netfilter/nf_conntrack_acct");
    Netns ns("mg");
    REQUIRE(ns.exec_ok("cat /proc/sys/net/netfilter/nf_conntrack_acct") == "0\n");
    {
        EnterNetns in(ns);
        auto port = open_port(backend);
        auto first = port->ensure_conntrack_accounting();
        INFO((first ? "" : first.error().text()));
        REQUIRE(first);
        CHECK_FALSE(*first);  // it was off
        auto second = port->ensure_conntrack_accounting();
        REQUIRE(second);
        CHECK(*second);  // now it is on
    }
    CHECK(ns.exec_ok("cat /proc/sys/net/netfilter/nf_conntrack_acct") == "1\n");
    CHECK(sh_ok("cat /proc/sys/net/netfilter/nf_conntrack_acct") == host_before);
}

TEST_CASE("both backends: a missing sysctl file is reported with what to load") {
    const std::string path = "/nonexistent/nf_conntrack_acct";
    flowshaper::kernel::IptcOptions iptc;
    iptc.conntrack_acct_path = path;
    flowshaper::kernel::NftOptions nft;
    nft.conntrack_acct_path = path;
    nft.events = false;
    auto nft_port = flowshaper::kernel::make_nft_mangle_port(nft);
    REQUIRE(nft_port);
    auto iptc_port = make_iptc_mangle_port(iptc);
    for (auto* port : {iptc_port.get(), nft_port->get()}) {
        INFO(port->backend());
        auto r = port->ensure_conntrack_accounting();
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ENOENT);
        CHECK_THAT(r.error().text(), Catch::Contains("modprobe nf_conntrack"));
    }
}
