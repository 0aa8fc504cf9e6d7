// The daemon's logic over fake ports and a manual clock.
#include <netinet/in.h>

#include <catch2/catch.hpp>
#include <map>

#include "flow_builder.hpp"
#include "flowshaper/controller/apply.hpp"
#include "flowshaper/controller/daemon.hpp"
#include "flowshaper/controller/log.hpp"
#include "flowshaper/kernel/fake_tc_port.hpp"
#include "flowshaper/kernel/mangle_fake_port.hpp"
#include "flowshaper/plan/marks.hpp"
#include "policy_builder.hpp"

using namespace flowshaper;
using testing::imap_flow;
using testing::kServer;

namespace {

const auto kClient = *net::Address::parse("198.51.100.20");
const auto kOther = *net::Address::parse("198.51.100.21");

// imap_policy()'s marks: rule 1 in the low bit of mark_mask 0x00ff0000, and its highest bit as
// the prefilter's candidate flag (the only rule is a flow_bytes rule).
constexpr uint32_t kRuleMark = 0x00010000;
constexpr uint32_t kCandidate = 0x00800000;
constexpr uint32_t kHeavyMark = kRuleMark | kCandidate;

policy::Policy imap_policy() {
    policy::Policy p;
    p.file = "daemon.toml";
    p.settings.poll_interval_ms = 1000;
    policy::Interface eth0;
    eth0.device = "eth0";
    eth0.rate_bits_per_s = 1'000'000'000;
    p.interfaces.push_back(eth0);
    policy::Detect d;
    d.name = "imap-sync-loop";
    d.device = "eth0";
    d.protocol = policy::Protocol::Tcp;
    d.local_ports = {993};
    d.flow_bytes = 100'000'000;
    d.dscp = 8;
    d.limit = {2'000'000, 4'000'000};
    d.release_after_ms = 10'000;
    p.detects.push_back(d);
    return p;
}

struct Rig {
    kernel::FakeTcPort tc;
    kernel::FakeManglePort mangle;
    kernel::FakeConntrackPort conntrack;
    kernel::FakeLinkPort links{{"eth0"}, {kServer}};
    std::shared_ptr<std::vector<std::string>> lines = std::make_shared<std::vector<std::string>>();
    std::unique_ptr<controller::Daemon> daemon;

    Rig() { tc.add_device("eth0"); }
    policy::Policy policy = imap_policy();
    void start(uint64_t now = 1000) {
        daemon = std::make_unique<controller::Daemon>(policy,
                                                      controller::DaemonPorts{tc, mangle, conntrack, links},
                                                      controller::make_memory_logger(lines));
        REQUIRE(daemon->start(now));
    }
    bool logged(const std::string& needle) const {
        return std::any_of(lines->begin(), lines->end(),
                           [&](auto& l) { return l.find(needle) != std::string::npos; });
    }
    // Packets of `flow` passed: conntrack counts them, and the candidate rule that the daemon put
    // in mangle (if any) flags the connection as xt_connbytes would. Returns its id.
    uint32_t traffic(const kernel::FlowSample& flow) {
        uint32_t id = conntrack.upsert(flow);
        auto spec = mangle.read(flow.family);
        if (spec && *spec && (*spec)->candidate &&
            flow.orig_bytes + flow.reply_bytes >= (*spec)->candidate->min_bytes)
            conntrack.or_mark(id, (*spec)->candidate->bit);
        return id;
    }
    size_t classes() const { return tc.state("eth0")->classes.size(); }
    uint32_t mark_of(uint32_t id) const { return conntrack.find(id)->mark; }
};

// The rule sums the client's connections: 100 MB within a minute instead of flow_bytes.
void sum_connections(Rig& rig) {
    rig.policy.detects[0].flow_bytes.reset();
    rig.policy.detects[0].client_bytes = 100'000'000;
    rig.policy.detects[0].window_ms = 60'000;
}

// One connection of kClient passes flow_bytes between the polls at 2 s and 3 s; returns its id.
uint32_t make_heavy(Rig& rig) {
    uint32_t id = rig.traffic(imap_flow(kClient, 40000, 10'000'000));
    REQUIRE(rig.daemon->poll(2000));
    rig.traffic(imap_flow(kClient, 40000, 150'000'000));
    REQUIRE(rig.daemon->poll(3000));
    return id;
}

}  // namespace

TEST_CASE("start switches accounting on, installs the mangle rules and applies the tree") {
    Rig rig;
    rig.mangle.set_conntrack_accounting(false);
    rig.start();
    CHECK(rig.mangle.conntrack_accounting());
    CHECK(rig.logged("conntrack accounting was off"));
    auto lines = rig.mangle.lines(net::Family::V4);
    CHECK(std::count_if(lines.begin(), lines.end(),
                        [](auto& l) { return l.find("DSCP") != std::string::npos; }) == 1);
    CHECK(rig.mangle.lines(net::Family::V6) == lines);
    CHECK(rig.classes() == 2);  // root and default
    CHECK(rig.logged("ready: 1 devices"));
}

TEST_CASE("a connection past flow_bytes caps its client first, then marks its connections") {
    Rig rig;
    rig.start();
    uint32_t heavy = rig.traffic(imap_flow(kClient, 40000, 10'000'000));
    uint32_t light = rig.traffic(imap_flow(kOther, 40001, 1'000'000));
    REQUIRE(rig.daemon->poll(2000));
    CHECK(rig.classes() == 2);
    rig.traffic(imap_flow(kClient, 40000, 150'000'000));
    rig.traffic(imap_flow(kOther, 40001, 2'000'000));
    REQUIRE(rig.daemon->poll(3000));
    CHECK(rig.logged("mark client=198.51.100.20 rule=imap-sync-loop"));
    CHECK(rig.classes() == 3);
    CHECK(rig.mark_of(heavy) == kHeavyMark);
    CHECK(rig.mark_of(light) == 0);
    // The class came before the mark: the last tc change precedes the first mark write.
    REQUIRE(rig.conntrack.mark_writes().size() == 1);

    // A connection it opens later, while heavy, is marked as soon as the event arrives.
    uint32_t later = rig.traffic(imap_flow(kClient, 40002, 0));
    REQUIRE(rig.daemon->on_conntrack_events(3100));
    CHECK(rig.mark_of(later) == kHeavyMark);
}

TEST_CASE("a heavy client quiet for release_after loses its marks, then its class") {
    Rig rig;
    rig.start();
    uint32_t id = make_heavy(rig);
    REQUIRE(rig.classes() == 3);
    for (uint64_t t = 4000; t <= 12000; t += 1000) REQUIRE(rig.daemon->poll(t));
    CHECK(rig.classes() == 3);  // not before release_after
    for (uint64_t t = 13000; t <= 16000; t += 1000) REQUIRE(rig.daemon->poll(t));
    CHECK(rig.logged("release client=198.51.100.20 rule=imap-sync-loop"));
    CHECK(rig.classes() == 2);
    CHECK(rig.mark_of(id) == kCandidate);  // the kernel's flag stays
}

TEST_CASE("a restarted daemon adopts the heavy clients in the kernel and does not decide them twice") {
    Rig rig;
    rig.start();
    uint32_t id = make_heavy(rig);
    auto sent = rig.tc.changes_sent();
    auto commits = rig.mangle.commits();
    rig.daemon.reset();  // SIGKILL: nothing cleaned up
    rig.lines->clear();
    rig.start(50'000);
    CHECK(rig.logged("adopted heavy client 198.51.100.20 (rule imap-sync-loop)"));
    CHECK(rig.tc.changes_sent() == sent);    // nothing re-created
    CHECK(rig.mangle.commits() == commits);  // nothing re-committed
    rig.traffic(imap_flow(kClient, 40000, 400'000'000));
    REQUIRE(rig.daemon->poll(51'000));
    CHECK_FALSE(rig.logged("mark client="));
    CHECK(rig.mark_of(id) == kHeavyMark);
}

TEST_CASE("when the kernel refuses the class, no connection is marked and the next poll tries again") {
    Rig rig;
    rig.start();
    uint32_t id = rig.traffic(imap_flow(kClient, 40000, 10'000'000));
    REQUIRE(rig.daemon->poll(2000));
    rig.traffic(imap_flow(kClient, 40000, 150'000'000));
    rig.tc.fail_change(0, ENOMEM);
    CHECK_FALSE(rig.daemon->poll(3000));
    CHECK(rig.classes() == 2);
    CHECK(rig.mark_of(id) == kCandidate);  // flagged by the kernel, not marked
    REQUIRE(rig.daemon->poll(4000));
    CHECK(rig.classes() == 3);
    CHECK(rig.mark_of(id) == kHeavyMark);
}

TEST_CASE("stop with on_exit = flush removes chains, classes and marks") {
    Rig rig;
    rig.start();
    uint32_t id = make_heavy(rig);
    REQUIRE(rig.daemon->stop());
    CHECK(rig.mark_of(id) == 0);
    CHECK(rig.mangle.lines(net::Family::V4).empty());
    CHECK(rig.mangle.lines(net::Family::V6).empty());
    CHECK(rig.tc.read("eth0")->root_info.owner == tc::RootInfo::Owner::KernelDefault);
}

TEST_CASE("lost conntrack events are caught up by the next poll's dump, not by extra dumps") {
    Rig rig;
    rig.start();
    uint32_t id = rig.traffic(imap_flow(kClient, 40000, 10'000'000));
    REQUIRE(rig.daemon->poll(2000));
    rig.traffic(imap_flow(kClient, 40000, 150'000'000));
    rig.conntrack.overflow_events();
    auto dumps = rig.conntrack.dumps();
    REQUIRE(rig.daemon->on_conntrack_events(2500));
    REQUIRE(rig.daemon->on_conntrack_events(2600));
    CHECK(rig.conntrack.dumps() == dumps);
    CHECK(rig.logged("events were lost"));
    auto filtered = rig.conntrack.filtered_dumps();
    REQUIRE(rig.daemon->poll(3000));
    CHECK(rig.conntrack.filtered_dumps() == filtered);  // that poll read the whole table
    CHECK(rig.mark_of(id) == kHeavyMark);
}

TEST_CASE("an apply while the daemon runs keeps the heavy clients' classes") {
    Rig rig;
    rig.start();
    make_heavy(rig);
    REQUIRE(rig.classes() == 3);
    auto r = controller::apply_policy(rig.policy, rig.tc, {});  // what `flowshaper apply` does
    REQUIRE(r);
    CHECK(r->changes_sent == 0);
    CHECK(rig.classes() == 3);
}

TEST_CASE("a start that fails after its mangle rules went in removes the chains of both families") {
    Rig rig;
    rig.mangle.fail_conntrack_accounting(EROFS);
    rig.daemon = std::make_unique<controller::Daemon>(
        rig.policy, controller::DaemonPorts{rig.tc, rig.mangle, rig.conntrack, rig.links},
        controller::make_memory_logger(rig.lines));
    auto st = rig.daemon->start(1000);
    REQUIRE_FALSE(st);
    CHECK(st.error().code == EROFS);
    CHECK(rig.mangle.lines(net::Family::V4).empty());
    CHECK(rig.mangle.lines(net::Family::V6).empty());
    CHECK(rig.tc.changes_sent() == 0);
}

TEST_CASE("a failed start removes the mangle chain it created and leaves an existing tree alone") {
    Rig rig;
    rig.tc.fail_change(0, ENOMEM);  // the root qdisc
    rig.daemon = std::make_unique<controller::Daemon>(
        rig.policy, controller::DaemonPorts{rig.tc, rig.mangle, rig.conntrack, rig.links},
        controller::make_memory_logger(rig.lines));
    CHECK_FALSE(rig.daemon->start(1000));
    CHECK(rig.mangle.lines(net::Family::V4).empty());
    CHECK(rig.tc.read("eth0")->root_info.owner == tc::RootInfo::Owner::KernelDefault);
}

TEST_CASE("a reload with an unusable policy keeps the running one") {
    Rig rig;
    rig.start();
    uint32_t id = make_heavy(rig);
    auto bad = rig.policy;
    bad.settings.mark_mask = 0x1;  // one bit: too few for two rules
    bad.detects.push_back(bad.detects[0]);
    bad.detects.back().name = "second";
    CHECK_FALSE(rig.daemon->reload(bad, 4000));
    REQUIRE(rig.daemon->poll(5000));
    CHECK(rig.classes() == 3);
    CHECK(rig.mark_of(id) == kHeavyMark);
}

TEST_CASE("a reload that changes the mark layout clears old marks and marks heavy clients again") {
    Rig rig;
    rig.start();
    uint32_t id = make_heavy(rig);
    auto next = rig.policy;
    next.settings.mark_mask = 0x0000ff00;
    REQUIRE(rig.daemon->reload(next, 4000));
    CHECK(rig.logged("1 heavy clients kept"));
    REQUIRE(rig.daemon->poll(5000));
    CHECK(rig.mark_of(id) == 0x00008100);  // rule 1 and the new candidate bit
    CHECK(rig.classes() == 3);
}

TEST_CASE("stop with on_exit = keep leaves chains, classes and marks in place") {
    Rig rig;
    rig.policy.settings.on_exit = policy::OnExit::Keep;
    rig.start();
    uint32_t id = make_heavy(rig);
    REQUIRE(rig.daemon->stop());
    CHECK(rig.mark_of(id) == kHeavyMark);
    CHECK_FALSE(rig.mangle.lines(net::Family::V4).empty());
    CHECK(rig.classes() == 3);
}

TEST_CASE("flush_all removes classes, both mangle chains and flowshaper's ctmark bits, and nothing else") {
    Rig rig;
    rig.start();
    uint32_t id = make_heavy(rig);
    auto foreign = imap_flow(kOther, 41000, 5);
    foreign.mark = 0x00000007;  // someone else's bits, outside mark_mask
    uint32_t other = rig.conntrack.upsert(foreign);
    rig.daemon.reset();  // crashed: nothing cleaned up
    auto r = controller::flush_all(rig.tc, rig.links, rig.mangle, rig.conntrack, {});
    REQUIRE(r);
    CHECK(r->devices == std::vector<std::string>{"eth0"});
    CHECK(r->mangle_removed);
    CHECK(r->marks_cleared == 1);
    CHECK(rig.mark_of(id) == 0);
    CHECK(rig.mark_of(other) == 0x00000007);
    CHECK(rig.mangle.lines(net::Family::V4).empty());
    CHECK(rig.mangle.lines(net::Family::V6).empty());
    auto again = controller::flush_all(rig.tc, rig.links, rig.mangle, rig.conntrack, {});
    REQUIRE(again);
    CHECK_FALSE(again->mangle_removed);
    CHECK(again->devices.empty());
}

TEST_CASE(
    "with flow_bytes rules only, polls read the kernel's candidates and a new heavy client's other "
    "connections") {
    Rig rig;
    rig.start();
    CHECK(rig.logged("conntrack prefilter: the kernel flags connections past 100000000 bytes"));
    auto spec = rig.mangle.read(net::Family::V4);
    REQUIRE(spec);
    REQUIRE(*spec);
    CHECK((*spec)->mark_mask == 0x007f0000);  // the flag is not restored into the fwmark
    REQUIRE((*spec)->candidate);
    CHECK(*(*spec)->candidate == kernel::MangleSpec::Candidate{100'000'000, kCandidate});

    uint32_t small = rig.traffic(imap_flow(kClient, 40001, 1'000'000));  // below the threshold
    uint32_t other = rig.traffic(imap_flow(kOther, 40002, 1'000'000));
    uint32_t big = rig.traffic(imap_flow(kClient, 40000, 10'000'000));
    REQUIRE(rig.daemon->poll(2000));  // the first poll reads everything (a baseline)
    CHECK(rig.conntrack.filtered_dumps() == 0);
    REQUIRE(rig.daemon->poll(2500));
    CHECK(rig.conntrack.filtered_dumps() == 1);
    CHECK(rig.mark_of(big) == 0);

    rig.traffic(imap_flow(kClient, 40000, 150'000'000));  // now the kernel flags it
    CHECK(rig.mark_of(big) == kCandidate);
    auto dumps = rig.conntrack.dumps();
    REQUIRE(rig.daemon->poll(3000));
    CHECK(rig.logged("mark client=198.51.100.20 rule=imap-sync-loop"));
    CHECK(rig.classes() == 3);
    // A filtered dump found it; one whole-table dump then marked the client's small connection.
    CHECK(rig.conntrack.dumps() == dumps + 2);
    CHECK(rig.mark_of(big) == kHeavyMark);
    CHECK(rig.mark_of(small) == kHeavyMark);
    CHECK(rig.mark_of(other) == 0);

    dumps = rig.conntrack.dumps();
    auto filtered = rig.conntrack.filtered_dumps();
    REQUIRE(rig.daemon->poll(4000));
    CHECK(rig.conntrack.dumps() == dumps + 1);
    CHECK(rig.conntrack.filtered_dumps() == filtered + 1);
}

TEST_CASE("a capped client that reconnects stays capped while its new connections use the cap") {
    // Its new connections are far below flow_bytes, so the kernel does not flag them: the daemon
    // flags them itself when it marks them, or the filtered polls would see a quiet client.
    Rig rig;
    rig.start();
    uint32_t first = make_heavy(rig);
    REQUIRE(rig.classes() == 3);
    rig.conntrack.remove(first);
    uint64_t sent = 0;
    uint16_t sport = 41000;
    uint32_t id = rig.traffic(imap_flow(kClient, sport, 0));
    REQUIRE(rig.daemon->on_conntrack_events(3100));
    CHECK(rig.mark_of(id) == kHeavyMark);
    for (uint64_t t = 4000; t <= 30000; t += 1000) {
        sent += 250'000;      // 2 Mbit/s, the rule's cap; the release rate is 1 Mbit/s
        if (t % 5000 == 0) {  // and every 5 s it starts over on a new connection
            rig.conntrack.remove(id);
            sent = 250'000;
            id = rig.traffic(imap_flow(kClient, ++sport, 0));
            REQUIRE(rig.daemon->on_conntrack_events(t - 10));
        }
        rig.traffic(imap_flow(kClient, sport, sent));
        REQUIRE(rig.daemon->poll(t));
    }
    CHECK_FALSE(rig.logged("release client=198.51.100.20"));
    CHECK(rig.classes() == 3);
    CHECK(rig.mark_of(id) == kHeavyMark);
}

TEST_CASE("a rule that sums connections turns the prefilter off: every poll reads the whole table") {
    Rig rig;
    sum_connections(rig);
    rig.start();
    CHECK(rig.logged("conntrack prefilter off: rule imap-sync-loop sums connections"));
    auto spec = rig.mangle.read(net::Family::V4);
    REQUIRE(spec);
    REQUIRE(*spec);
    CHECK_FALSE((*spec)->candidate);
    CHECK((*spec)->mark_mask == 0x00ff0000);
    uint32_t a = rig.traffic(imap_flow(kClient, 40000, 1'000'000));
    REQUIRE(rig.daemon->poll(2000));
    for (uint16_t i = 0; i < 3; ++i)
        rig.traffic(imap_flow(kClient, static_cast<uint16_t>(40001 + i), 40'000'000));
    REQUIRE(rig.daemon->poll(3000));
    CHECK(rig.conntrack.filtered_dumps() == 0);
    CHECK(rig.logged("mark client=198.51.100.20"));
    CHECK(rig.mark_of(a) == kRuleMark);  // no candidate flag in this layout
}

TEST_CASE("a mark_mask without a spare bit turns the prefilter off") {
    Rig rig;
    rig.policy.settings.mark_mask = 0x00010000;  // exactly the rule field
    rig.start();
    CHECK(rig.logged("conntrack prefilter off: mark_mask has no bit to spare"));
    uint32_t id = make_heavy(rig);
    CHECK(rig.conntrack.filtered_dumps() == 0);
    CHECK(rig.mark_of(id) == 0x00010000);
}

TEST_CASE("a policy device that does not exist yet gets its tree when it appears") {
    Rig rig;
    rig.links.remove("eth0");
    rig.tc.remove_device("eth0");
    rig.start();
    CHECK(rig.logged("device eth0 does not exist (yet)"));
    CHECK(rig.logged("ready: 0 devices"));
    REQUIRE(rig.daemon->poll(2000));
    CHECK(rig.tc.changes_sent() == 0);

    rig.links.add("eth0");
    rig.tc.add_device("eth0");
    REQUIRE(rig.daemon->poll(3000));
    CHECK(rig.logged("device eth0 appeared: applying its tree"));
    CHECK(rig.classes() == 2);
    auto sent = rig.tc.changes_sent();
    REQUIRE(rig.daemon->poll(4000));
    CHECK(rig.tc.changes_sent() == sent);  // applied once, not at every poll
}

TEST_CASE("a device deleted and created again gets its tree back with its heavy clients' classes") {
    Rig rig;
    rig.start();
    uint32_t id = make_heavy(rig);
    REQUIRE(rig.classes() == 3);
    rig.links.remove("eth0");
    rig.tc.remove_device("eth0");
    REQUIRE(rig.daemon->poll(4000));
    CHECK(rig.logged("device eth0 is gone"));

    rig.links.add("eth0");  // a new index
    rig.tc.add_device("eth0");
    REQUIRE(rig.daemon->poll(5000));
    CHECK(rig.logged("device eth0 appeared: applying its tree"));
    CHECK(rig.classes() == 3);  // root, default and the capped client
    CHECK(rig.mark_of(id) == kHeavyMark);
}

TEST_CASE("a device that is replaced between two polls is noticed by its new index") {
    Rig rig;
    rig.start();
    make_heavy(rig);
    rig.tc.remove_device("eth0");
    rig.tc.add_device("eth0");  // the kernel default root: the tree is gone
    rig.links.add("eth0");      // same name, new index
    REQUIRE(rig.daemon->poll(4000));
    CHECK(rig.logged("device eth0 was created again"));
    CHECK(rig.classes() == 3);
}

TEST_CASE("a client that turns heavy while its device is gone is decided again later, not capped blind") {
    Rig rig;
    rig.start();
    uint32_t id = rig.traffic(imap_flow(kClient, 40000, 10'000'000));
    REQUIRE(rig.daemon->poll(2000));
    rig.links.remove("eth0");
    rig.tc.remove_device("eth0");
    rig.traffic(imap_flow(kClient, 40000, 150'000'000));
    (void)rig.daemon->poll(3000);
    CHECK(rig.logged("device eth0 does not exist"));
    CHECK(rig.mark_of(id) == kCandidate);  // not marked: it has no class to go to

    rig.links.add("eth0");
    rig.tc.add_device("eth0");
    rig.traffic(imap_flow(kClient, 40000, 300'000'000));
    REQUIRE(rig.daemon->poll(4000));
    REQUIRE(rig.daemon->poll(5000));
    CHECK(rig.classes() == 3);
    CHECK(rig.mark_of(id) == kHeavyMark);
}

TEST_CASE("a release whose marks cannot all be cleared keeps the class until they are") {
    Rig rig;
    rig.start();
    uint32_t id = make_heavy(rig);
    uint64_t t = 4000;
    for (; t <= 20000 && !rig.logged("release client="); t += 1000) {
        rig.conntrack.fail_next_set_mark(EIO);  // the release's write fails (once per poll)
        REQUIRE(rig.daemon->poll(t));
    }
    REQUIRE(rig.logged("release client=198.51.100.20 rule=imap-sync-loop"));
    CHECK(rig.logged("not every connection mark could be cleared"));
    CHECK(rig.classes() == 3);             // its marked connection still needs the class
    CHECK(rig.mark_of(id) == kHeavyMark);  // and is not marked again either
    REQUIRE(rig.daemon->poll(t));
    CHECK(rig.mark_of(id) == kCandidate);
    CHECK(rig.classes() == 2);
}

TEST_CASE("the last bytes of connections that ended between polls count toward client_bytes") {
    // Short connections that open, move data and close within one poll interval are never in a
    // dump: only their DESTROY events' counters tell what they moved.
    Rig rig;
    sum_connections(rig);
    rig.start();
    REQUIRE(rig.daemon->poll(2000));
    for (uint16_t i = 0; i < 12; ++i) {
        uint32_t id = rig.traffic(imap_flow(kClient, static_cast<uint16_t>(41000 + i), 10'000'000));
        REQUIRE(rig.conntrack.remove(id));
    }
    REQUIRE(rig.daemon->on_conntrack_events(2500));
    REQUIRE(rig.daemon->poll(3000));
    CHECK(rig.logged("mark client=198.51.100.20 rule=imap-sync-loop"));
    CHECK(rig.classes() == 3);
}

TEST_CASE("a connection that ends while the poll dumps is counted once, not twice") {
    Rig rig;
    sum_connections(rig);
    rig.start();
    uint32_t id = rig.traffic(imap_flow(kClient, 41000, 60'000'000));
    REQUIRE(rig.daemon->poll(2000));  // baseline: 60 MB that count for no window
    rig.traffic(imap_flow(kClient, 41000, 100'000'000));
    REQUIRE(rig.conntrack.remove(id));  // its DESTROY is queued when the next poll dumps
    REQUIRE(rig.daemon->poll(3000));    // 40 MB: below the threshold
    REQUIRE(rig.daemon->poll(4000));    // not its whole 100 MB again, as a flow never seen
    CHECK_FALSE(rig.logged("mark client="));
}

TEST_CASE("portless flows of a heavy client are left unmarked without a warning per poll") {
    Rig rig;
    rig.policy.detects[0].protocol = policy::Protocol::Any;
    rig.policy.detects[0].local_ports.clear();
    rig.start();
    make_heavy(rig);
    auto icmp = imap_flow(kClient, 0, 1000);
    icmp.l4proto = IPPROTO_ICMP;
    icmp.orig_dport = 0;
    rig.conntrack.upsert(icmp);
    rig.conntrack.fail_next_set_mark(EPROTONOSUPPORT);
    REQUIRE(rig.daemon->poll(4000));
    CHECK_FALSE(rig.logged("set ctmark on a connection"));
}

namespace {
// The fw classifier (not in this kernel: the fake claims it). Marks name the client.
void use_fw(Rig& rig) {
    rig.tc.set_features({true, false, false, "test"});
    rig.policy.settings.classifier = policy::Classifier::Fw;
}
}  // namespace

TEST_CASE(
    "fw: a restarted daemon adopts a heavy client by the mark its connections and its fw filter share") {
    Rig rig;
    use_fw(rig);
    rig.start();
    uint32_t a = make_heavy(rig);
    const uint32_t mark_a = rig.mark_of(a);
    REQUIRE(mark_a != 0);
    // A stale per-client mark: a connection of another client carries a number no fw filter has.
    auto layout = plan::MarkLayout::make(0x00ff0000, 1, true, true);
    REQUIRE(layout.ok());
    REQUIRE(layout->client_value(0, 1) == (mark_a & ~kCandidate));  // the first number went to kClient
    uint32_t b = rig.traffic(imap_flow(kOther, 41000, 1'000));
    rig.conntrack.or_mark(b, layout->client_value(0, 2));  // a number no fw filter of ours has
    auto sent = rig.tc.changes_sent();
    rig.daemon.reset();  // SIGKILL: nothing cleaned up
    rig.lines->clear();
    rig.start(50'000);
    CHECK(rig.logged("adopted heavy client 198.51.100.20 (rule imap-sync-loop)"));
    CHECK(rig.tc.changes_sent() == sent);  // the same class and fw filter: nothing re-created
    REQUIRE(rig.daemon->heavy().size() == 1);
    CHECK(rig.daemon->heavy()[0].mark == (mark_a & ~kCandidate));
    CHECK(rig.mark_of(a) == mark_a);  // its connection keeps its mark
    CHECK(rig.logged("fw: cleared 1 connection marks"));
    CHECK((rig.mark_of(b) & 0x00ff0000 & ~kCandidate) == 0);
    // It is not decided twice, and a new heavy client does not get its number.
    rig.traffic(imap_flow(kClient, 40000, 400'000'000));
    REQUIRE(rig.daemon->poll(51'000));
    CHECK_FALSE(rig.logged("mark client=198.51.100.20"));
}

TEST_CASE("fw: a reload keeps heavy clients and their marks, a new heavy client gets a mark of its own") {
    Rig rig;
    use_fw(rig);
    rig.start();
    uint32_t a = make_heavy(rig);
    uint32_t mark_a = rig.mark_of(a);
    REQUIRE(mark_a != 0);
    REQUIRE(rig.daemon->heavy().size() == 1);
    auto same = rig.policy;
    same.caps.clear();
    REQUIRE(rig.daemon->reload(same, 3500));
    // The client stays capped, its connection keeps its mark ...
    REQUIRE(rig.daemon->heavy().size() == 1);
    CHECK(rig.daemon->heavy()[0].mark == (mark_a & ~kCandidate));
    CHECK(rig.mark_of(a) == mark_a);
    // ... and another client that turns heavy does not inherit that mark (number).
    uint32_t b = rig.traffic(imap_flow(kOther, 41000, 10'000'000));
    REQUIRE(rig.daemon->poll(4000));
    rig.traffic(imap_flow(kOther, 41000, 150'000'000));
    REQUIRE(rig.daemon->poll(5000));
    REQUIRE(rig.daemon->heavy().size() == 2);
    CHECK(rig.mark_of(b) != 0);
    CHECK(rig.mark_of(b) != rig.mark_of(a));
    CHECK(rig.mark_of(a) == mark_a);
    // Each fw filter names one client's class: two filters, two marks.
    const auto& fw = rig.tc.state("eth0")->fw;
    REQUIRE(fw.size() == 2);
    CHECK(fw[0].handle != fw[1].handle);
    CHECK(fw[0].classid != fw[1].classid);
}

TEST_CASE("a reload that drops a rule releases its clients and clears their marks only") {
    Rig rig;
    rig.policy.detects.push_back(rig.policy.detects[0]);
    rig.policy.detects[1].name = "pop3";
    rig.policy.detects[1].local_ports = {995};
    rig.start();
    uint32_t a = make_heavy(rig);
    REQUIRE(rig.mark_of(a) != 0);
    auto next = rig.policy;
    std::swap(next.detects[0], next.detects[1]);  // same rules, other order: marks change
    next.detects.pop_back();                      // imap-sync-loop is gone
    REQUIRE(rig.daemon->reload(next, 3500));
    CHECK(rig.daemon->heavy().empty());
    CHECK((rig.mark_of(a) & 0x00ff0000 & ~kCandidate) == 0);
}

TEST_CASE("the snapshot says who is capped, why, and how the last poll went") {
    Rig rig;
    rig.start();
    make_heavy(rig);
    auto snap = rig.daemon->snapshot();
    REQUIRE(snap);
    REQUIRE(snap->heavy.size() == 1);
    const auto& h = snap->heavy[0];
    CHECK(h.client == kClient);
    CHECK(h.rule == "imap-sync-loop");
    CHECK(h.measure == "flow_bytes");
    CHECK(h.measured >= 100'000'000);
    CHECK(h.threshold == 100'000'000);
    CHECK_FALSE(h.classid.empty());
    CHECK(snap->heavy_per_rule.at("imap-sync-loop") == 1);
    CHECK(snap->counters.caps_applied == 1);
    CHECK(snap->counters.polls == 2);
    CHECK(snap->last_poll.entries >= 1);
    REQUIRE(snap->devices.size() == 1);
    CHECK(snap->devices[0].state == controller::TreeState::InSync);
    CHECK(snap->devices[0].classes.size() == 3);
}

TEST_CASE("two heavy clients whose addresses share an ending each get their own class in the snapshot") {
    // The class is found by whom the plan gave it, not by the end of its label: "heavy R
    // 110.0.0.1/32" ends in "10.0.0.1/32" too.
    Rig rig;
    const auto a = *net::Address::parse("10.0.0.1");
    const auto b = *net::Address::parse("110.0.0.1");
    rig.start();
    for (const auto& client : {a, b}) rig.traffic(imap_flow(client, 40000, 10'000'000));
    REQUIRE(rig.daemon->poll(2000));
    for (const auto& client : {a, b}) rig.traffic(imap_flow(client, 40000, 150'000'000));
    REQUIRE(rig.daemon->poll(3000));
    auto snap = rig.daemon->snapshot();
    REQUIRE(snap);
    REQUIRE(snap->heavy.size() == 2);
    std::map<std::string, std::string> classid;  // client -> its class
    for (const auto& h : snap->heavy) classid[h.client.str()] = h.classid;
    REQUIRE_FALSE(classid["10.0.0.1"].empty());
    REQUIRE_FALSE(classid["110.0.0.1"].empty());
    CHECK(classid["10.0.0.1"] != classid["110.0.0.1"]);
    // Each one is the class whose u32 node matches that client's address in the kernel (fake).
    for (const auto& [client, id] : classid) {
        INFO(client << " -> " << id);
        const auto addr = *net::Address::parse(client);
        const uint32_t value = static_cast<uint32_t>(addr.bytes[0]) << 24 | addr.bytes[1] << 16 |
                               addr.bytes[2] << 8 | addr.bytes[3];
        bool found = false;
        for (const auto& f : rig.tc.state("eth0")->u32)
            if (f.classid != 0 && tc::format_handle(f.classid) == id)
                for (const auto& k : f.keys)
                    if (k.offset == 16 && k.mask == 0xffffffff && k.value == value) found = true;
        CHECK(found);
    }
}

TEST_CASE("caps and releases go to the audit sink with the measured value and threshold") {
    Rig rig;
    std::vector<controller::AuditEvent> events;
    controller::DaemonOptions opts;
    opts.audit = [&](const controller::AuditEvent& e) { events.push_back(e); };
    opts.wall_ms = [] { return uint64_t{1'700'000'000'000}; };
    rig.daemon = std::make_unique<controller::Daemon>(
        rig.policy, controller::DaemonPorts{rig.tc, rig.mangle, rig.conntrack, rig.links},
        controller::make_memory_logger(rig.lines), opts);
    REQUIRE(rig.daemon->start(1000));
    make_heavy(rig);
    REQUIRE(events.size() == 1);
    CHECK(events[0].action == "cap");
    CHECK(events[0].client == "198.51.100.20");
    CHECK(events[0].rule == "imap-sync-loop");
    CHECK(events[0].threshold == 100'000'000);
    CHECK(events[0].at_unix_ms == 1'700'000'000'000);
    for (uint64_t t = 4000; t <= 20000; t += 1000) REQUIRE(rig.daemon->poll(t));
    REQUIRE(events.size() == 2);
    CHECK(events[1].action == "release");
}

TEST_CASE(
    "with kernel sets a capped client is in its rule's set while its class is placed, and out before its "
    "marks go") {
    Rig rig;
    rig.mangle.set_kernel_sets(true);
    rig.start();
    auto members = [&] { return *rig.mangle.read_capped(); };
    CHECK(members().empty());
    make_heavy(rig);
    REQUIRE(members().size() == 1);
    CHECK(members()[0] == kernel::CappedClient{0, kClient});
    auto spec = rig.mangle.read(net::Family::V4);
    REQUIRE(spec);
    REQUIRE(*spec);
    CHECK((*spec)->capped.size() == 1);  // the constant rule that matches the set
    for (uint64_t t = 4000; t <= 20000; t += 1000) REQUIRE(rig.daemon->poll(t));
    CHECK(rig.daemon->heavy().empty());
    CHECK(members().empty());
}

TEST_CASE("with kernel sets a restart drops members of clients that are no longer capped") {
    Rig rig;
    rig.mangle.set_kernel_sets(true);
    rig.start();
    make_heavy(rig);
    REQUIRE(rig.mangle.read_capped()->size() == 1);
    // A member for a client without a class (left by a run that died mid-release).
    REQUIRE(rig.mangle.add_capped({0, kOther}));
    rig.daemon.reset();
    rig.start(30000);
    auto members = *rig.mangle.read_capped();
    REQUIRE(members.size() == 1);
    CHECK(members[0].client == kClient);
}
