// The backend choice, the port that removes both backends' objects, and the capped-client sets,
// through fakes.
#include <catch2/catch.hpp>
#include <cerrno>

#include "flowshaper/kernel/mangle_backend.hpp"
#include "flowshaper/kernel/mangle_fake_port.hpp"

using namespace flowshaper;
using kernel::BackendProbe;
using kernel::CappedClient;
using kernel::FakeManglePort;
using kernel::MangleBackend;
using kernel::MangleSpec;

namespace {

MangleSpec capped_rule() {
    MangleSpec spec;
    spec.mark_mask = 0x00ff0000;
    spec.dscp_rules.push_back({0x00010000, 0x00ff0000, 8, "heavy"});
    spec.capped.push_back({6, {993}, {}});
    return spec;
}

}  // namespace

TEST_CASE("auto chooses nftables unless legacy iptables holds rules or nftables is unusable, and says why") {
    BackendProbe usable{true, "", false};
    CHECK(kernel::choose_backend(policy::Firewall::Auto, usable).backend == MangleBackend::Nftables);
    BackendProbe legacy{true, "", true};
    auto c = kernel::choose_backend(policy::Firewall::Auto, legacy);
    CHECK(c.backend == MangleBackend::Iptables);
    CHECK(c.reason.find("legacy iptables tables hold rules") != std::string::npos);
    BackendProbe missing{false, "list nf_tables: Protocol not supported", false};
    c = kernel::choose_backend(policy::Firewall::Auto, missing);
    CHECK(c.backend == MangleBackend::Iptables);
    CHECK(c.reason.find("Protocol not supported") != std::string::npos);
    CHECK(kernel::choose_backend(policy::Firewall::Nftables, legacy).backend == MangleBackend::Nftables);
    CHECK(kernel::choose_backend(policy::Firewall::Iptables, usable).backend == MangleBackend::Iptables);
}

TEST_CASE("remove_all through the chosen backend also removes the other backend's objects") {
    auto chosen = std::make_unique<FakeManglePort>();
    auto other = std::make_unique<FakeManglePort>();
    FakeManglePort& a = *chosen;
    FakeManglePort& b = *other;
    REQUIRE(b.ensure(net::Family::V4, capped_rule()));  // left by a run with the other backend
    auto port = kernel::with_cleanup_of(std::move(chosen), std::move(other));
    REQUIRE(port->ensure(net::Family::V4, capped_rule()));
    REQUIRE(port->remove_all(net::Family::V4));
    CHECK(a.lines(net::Family::V4) == std::vector<std::string>{});
    CHECK(b.lines(net::Family::V4) == std::vector<std::string>{});
    CHECK(port->backend() == "fake");
}

TEST_CASE("the other backend being absent does not fail remove_all, a real failure does") {
    auto chosen = std::make_unique<FakeManglePort>();
    auto other = std::make_unique<FakeManglePort>();
    FakeManglePort& b = *other;
    REQUIRE(b.ensure(net::Family::V4, capped_rule()));
    auto port = kernel::with_cleanup_of(std::move(chosen), std::move(other));
    b.fail_next_commits(EPERM, 5);
    auto st = port->remove_all(net::Family::V4);
    REQUIRE_FALSE(st);
    CHECK(st.error().code == EPERM);
}

TEST_CASE("capped sets: members need their rule's set, adds and removes are idempotent, flush empties") {
    FakeManglePort port;
    const CappedClient a{0, *net::Address::parse("192.0.2.7")};
    CHECK(port.add_capped(a).error().code == ENOENT);  // no set before the spec is ensured
    REQUIRE(port.ensure(net::Family::V4, capped_rule()));
    REQUIRE(port.add_capped(a));
    REQUIRE(port.add_capped(a));
    CHECK(port.set_changes() == 1);
    CHECK(port.add_capped({1, a.client}).error().code == ENOENT);  // rule 2 has no set
    CHECK(port.add_capped({0, *net::Address::parse("2001:db8::7")}).error().code == ENOENT);  // no IPv6 spec
    CHECK(*port.read_capped() == std::vector<CappedClient>{a});
    auto spec = port.read(net::Family::V4);
    REQUIRE(spec);
    CHECK(**spec == capped_rule());
    REQUIRE(port.remove_capped(a));
    REQUIRE(port.remove_capped(a));
    CHECK(port.set_changes() == 2);
    REQUIRE(port.add_capped(a));
    REQUIRE(port.flush_capped());
    CHECK(port.read_capped()->empty());
    port.fail_set_operations(ENOBUFS);
    CHECK(port.add_capped(a).error().code == ENOBUFS);
}

TEST_CASE("the fake writes the capped-client rules as libiptc does, and its sets come and go with them") {
    FakeManglePort port;
    MangleSpec spec = capped_rule();
    REQUIRE(port.ensure(net::Family::V4, spec));
    auto lines = port.lines(net::Family::V4);
    REQUIRE(lines.size() >= 4);
    CHECK(
        lines[2] ==
        "-A FLOWSHAPER -p tcp -m set --match-set flowshaper-r0-v4 dst -m multiport --sports 993 -j CONNMARK "
        "--set-xmark 0x10000/0xff0000");
    CHECK(lines[3].find("--restore-mark") != std::string::npos);
    const CappedClient a{0, *net::Address::parse("192.0.2.7")};
    REQUIRE(port.add_capped(a));
    const uint64_t commits = port.commits();
    REQUIRE(port.ensure(net::Family::V4, spec));
    CHECK(port.commits() == commits);  // the same rules: nothing committed, the member stays
    CHECK(*port.read_capped() == std::vector<CappedClient>{a});
    spec.capped.clear();  // a policy without kernel sets: the rule and the set go
    REQUIRE(port.ensure(net::Family::V4, spec));
    CHECK(port.lines(net::Family::V4)[2].find("--restore-mark") != std::string::npos);
    CHECK(port.read_capped()->empty());
    CHECK(port.add_capped(a).error().code == ENOENT);
}

TEST_CASE("a spec whose capped matches do not fit its rules is refused with the rule named") {
    MangleSpec spec = capped_rule();
    spec.capped[0].l4proto = 0;  // ports without a protocol
    auto st = plan::validate(spec);
    REQUIRE_FALSE(st);
    CHECK(st.error().text().find("DSCP rule 1: ports need a protocol") != std::string::npos);
    spec.capped.push_back({});
    CHECK(plan::validate(spec).error().text().find("2 for 1 DSCP rules") != std::string::npos);
}
