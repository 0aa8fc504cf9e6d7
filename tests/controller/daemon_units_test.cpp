// The daemon's units on their own: the flow marker over a fake conntrack, the device watch over
// fake links.
#include <catch2/catch.hpp>

#include "flow_builder.hpp"
#include "flowshaper/controller/device_watch.hpp"
#include "flowshaper/controller/flow_marker.hpp"
#include "flowshaper/controller/log.hpp"

using namespace flowshaper;
using controller::HeavyKey;
using testing::imap_flow;
using testing::kServer;

namespace {

const auto kA = *net::Address::parse("198.51.100.1");
const auto kB = *net::Address::parse("198.51.100.2");

policy::Detect rule() {
    policy::Detect d;
    d.name = "imap";
    d.device = "eth0";
    d.protocol = policy::Protocol::Tcp;
    d.local_ports = {993};
    d.flow_bytes = 1000;
    d.dscp = 8;
    return d;
}

struct MarkerRig {
    std::vector<policy::Detect> rules{rule()};
    detect::LocalAddresses local{std::vector<net::Address>{kServer}};
    plan::MarkLayout marks = *plan::MarkLayout::make(0x00ff0000, 1, false, true);
    controller::HeavySet heavy;
    kernel::FakeConntrackPort conntrack;
    std::shared_ptr<std::vector<std::string>> lines = std::make_shared<std::vector<std::string>>();
    std::shared_ptr<spdlog::logger> log = controller::make_memory_logger(lines);
    controller::FlowMarker marker{conntrack, *log};
    MarkerRig() { heavy.reset(marks, false); }
    controller::MarkContext ctx() const { return {rules, local, marks, heavy}; }
    std::vector<kernel::FlowSample> all() { return *conntrack.dump_all(); }
};

}  // namespace

TEST_CASE(
    "flow marker: only placed, not releasing clients' connections get the mark and the candidate flag") {
    MarkerRig r;
    uint32_t a = r.conntrack.upsert(imap_flow(kA, 40000));
    uint32_t b = r.conntrack.upsert(imap_flow(kB, 40001));
    REQUIRE(r.heavy.add({0, kA}, {}));
    CHECK(r.marker.mark(r.ctx(), r.all()) == 0);  // not placed yet: class first, then marks
    CHECK(r.conntrack.find(a)->mark == 0);
    r.heavy.find({0, kA})->placed = true;
    CHECK(r.marker.mark(r.ctx(), r.all()) == 1);
    CHECK(r.conntrack.find(a)->mark == (r.marks.rule_value(0) | r.marks.candidate_bit()));
    CHECK(r.conntrack.find(b)->mark == 0);
    CHECK(r.marker.mark(r.ctx(), r.all()) == 0);  // already marked: nothing written
    r.heavy.find({0, kA})->releasing = true;
    uint32_t a2 = r.conntrack.upsert(imap_flow(kA, 40002));
    CHECK(r.marker.mark(r.ctx(), r.all()) == 0);  // releasing: new connections stay unmarked
    CHECK(r.conntrack.find(a2)->mark == 0);
}

TEST_CASE("flow marker: clearing touches only the given clients and reports those it could not clear") {
    MarkerRig r;
    uint32_t a = r.conntrack.upsert(imap_flow(kA, 40000));
    uint32_t b = r.conntrack.upsert(imap_flow(kB, 40001));
    for (auto c : {kA, kB}) {
        REQUIRE(r.heavy.add({0, c}, {}));
        r.heavy.find({0, c})->placed = true;
    }
    REQUIRE(r.marker.mark(r.ctx(), r.all()) == 2);
    std::set<HeavyKey> only{{0, kA}};
    std::set<HeavyKey> incomplete;
    CHECK(r.marker.clear(r.ctx(), &only, r.marks.restore_mask(), &incomplete) == 1);
    CHECK(incomplete.empty());
    CHECK((r.conntrack.find(a)->mark & r.marks.restore_mask()) == 0);
    CHECK((r.conntrack.find(a)->mark & r.marks.candidate_bit()) != 0);  // the flag stays
    CHECK((r.conntrack.find(b)->mark & r.marks.restore_mask()) != 0);
    // A dump that fails leaves every asked-for client incomplete (its class must stay).
    std::set<HeavyKey> both{{0, kA}, {0, kB}};
    r.conntrack.fail_next_dump(ENOBUFS);
    CHECK(r.marker.clear(r.ctx(), &both, r.marks.restore_mask(), &incomplete) == 0);
    CHECK(incomplete == both);
    // A write the kernel refuses marks that client incomplete; one that ended (ENOENT) does not.
    incomplete.clear();
    r.conntrack.fail_next_set_mark(EPERM);
    r.marker.clear(r.ctx(), &both, r.marks.restore_mask(), &incomplete);
    CHECK(incomplete.size() == 1);
}

TEST_CASE("device watch: a device that appears or is created again needs its tree, one that goes does not") {
    kernel::FakeLinkPort links({"eth0"});
    auto lines = std::make_shared<std::vector<std::string>>();
    auto log = controller::make_memory_logger(lines);
    controller::DeviceWatch watch(links, *log);
    policy::Policy p;
    policy::Interface eth0, eth1;
    eth0.device = "eth0";
    eth1.device = "eth1";
    p.interfaces = {eth0, eth1};
    CHECK(watch.refresh(p));  // first scan: eth0 needs its tree, eth1 is missing (a warning)
    CHECK(watch.present("eth0"));
    CHECK_FALSE(watch.present("eth1"));
    int index = watch.ifindex("eth0");
    CHECK_FALSE(watch.refresh(p));  // nothing changed
    links.add("eth1");
    CHECK(watch.refresh(p));  // appeared
    links.remove("eth0");
    CHECK_FALSE(watch.refresh(p));  // gone: nothing to apply now
    CHECK_FALSE(watch.present("eth0"));
    links.add("eth0");
    CHECK(watch.refresh(p));  // back, with a new index
    CHECK(watch.ifindex("eth0") != index);
    links.remove("eth0");
    links.add("eth0");
    CHECK(watch.refresh(p));  // replaced between two scans: noticed by its index
    CHECK(std::count_if(lines->begin(), lines->end(), [](const std::string& l) {
              return l.find("eth1 does not exist") != std::string::npos;
          }) == 1);
}
