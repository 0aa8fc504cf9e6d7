// NetlinkTcPort against the real kernel, in throwaway namespaces: what apply() builds, read()
// returns it unchanged, and `tc` (an independent reader) sees the same objects.
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdio>

#include "tc_check.hpp"

using namespace flowshaper;
using namespace flowshaper::testing;
using Role = tc::U32Filter::Role;
using tc::Change;

namespace {

const tc::HtbClass* find_class(const tc::DeviceState& s, tc::Handle id) {
    for (const auto& c : s.classes)
        if (c.classid == id) return &c;
    return nullptr;
}

const tc::U32Filter* find_u32(const tc::DeviceState& s, uint16_t prio, uint32_t handle) {
    for (const auto& f : s.u32)
        if (f.prio == prio && f.handle == handle) return &f;
    return nullptr;
}

void check_same(const tc::DeviceState& want, const tc::DeviceState& got) {
    REQUIRE(got.root.has_value());
    CHECK(*got.root == *want.root);
    CHECK(got.classes.size() == want.classes.size());
    for (const auto& c : want.classes) {
        INFO("class " << tc::format_handle(c.classid));
        const auto* g = find_class(got, c.classid);
        REQUIRE(g != nullptr);
        CHECK(c.same_config(*g));
        CHECK(g->rate_bytes_per_s == c.rate_bytes_per_s);
        CHECK(g->ceil_bytes_per_s == c.ceil_bytes_per_s);
    }
    CHECK(got.leaves == want.leaves);
    CHECK(got.u32.size() == want.u32.size());
    for (const auto& f : want.u32) {
        INFO("u32 prio " << f.prio << " " << tc::format_u32_handle(f.handle));
        const auto* g = find_u32(got, f.prio, f.handle);
        REQUIRE(g != nullptr);
        CHECK(f.same_config(*g));
    }
    CHECK(got.fw.empty());
}

std::string hex(uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%x", v);
    return buf;
}

// tc's spelling of a u32 handle: "100:", "100:2:800", "800::1".
std::string fh_text(uint32_t table, uint32_t bucket, uint32_t node) {
    std::string out = hex(table) + ":";
    if (bucket == 0 && node == 0) return out;
    return out + (bucket ? hex(bucket) : "") + ":" + hex(node);
}

// The root table id that tc shows for `prio` (the entry with divisor 1 and an id >= 0x800).
uint32_t tc_root_table(const nlohmann::json& filters, int prio) {
    for (const auto& f : filters)
        if (f.value("pref", 0) == prio && f.contains("options") && f["options"].value("ht_divisor", 0) == 1)
            return static_cast<uint32_t>(std::stoul(f["options"].value("fh", "0:"), nullptr, 16));
    return 0;
}

void check_with_tc(const PortFixture& fx, const tc::DeviceState& want) {
    auto qdiscs = tc_qdiscs(fx.net.server, fx.dev);
    bool root_seen = false, leaf_seen = false;
    for (const auto& q : qdiscs) {
        if (q.value("kind", "") == "htb" && q.value("handle", "") == "f5:" && q.value("root", false)) {
            root_seen = true;
            CHECK(q["options"].value("default", "") == "0x2");
        }
        if (q.value("kind", "") == "pfifo" && q.value("parent", "") == "f5:100") {
            leaf_seen = true;
            CHECK(q.value("handle", "") == "100:");
            CHECK(q["options"].value("limit", 0) == 100);
        }
    }
    CHECK(root_seen);
    CHECK(leaf_seen);

    auto classes = tc_classes(fx.net.server, fx.dev);
    CHECK(classes.size() == want.classes.size());
    CHECK(classes["f5:100"]["rate"] == "5Mbit");
    CHECK(classes["f5:100"]["ceil"] == "10Mbit");
    CHECK(classes["f5:100"]["parent"] == "f5:3");
    CHECK(classes["f5:100"]["leaf"] == "100:");
    CHECK(classes["f5:1"]["parent"] == "root");
    CHECK(classes["f5:1"]["rate"] == "100Mbit");
    CHECK(classes["f5:101"]["prio"] == "3");
    CHECK(classes["f5:2"]["ceil"] == "100Mbit");

    auto filters = tc_filters(fx.net.server, fx.dev);
    for (const auto& f : want.u32) {
        uint32_t table = tc::u32_table_of(f.handle);
        if (table == 0) table = tc_root_table(filters, f.prio);
        std::string fh = fh_text(table, tc::u32_bucket_of(f.handle), tc::u32_node_of(f.handle));
        INFO("tc filter " << fh);
        auto got = find_fh(filters, fh);
        REQUIRE(!got.is_null());
        CHECK(got.value("pref", 0) == f.prio);
        CHECK(got.value("protocol", "") == (f.protocol == tc::kEthPIp ? "ip" : "ipv6"));
        const auto& o = got["options"];
        if (f.role == Role::Table) {
            CHECK(o.value("ht_divisor", 0) == 256);
            continue;
        }
        for (size_t i = 0; i < f.keys.size(); ++i) {
            const auto& k = o["match" + std::to_string(i)];
            CHECK(k.value("value", "") == hex(f.keys[i].value));
            CHECK(k.value("mask", "") == hex(f.keys[i].mask));
            CHECK(k.value("off", -1) == f.keys[i].offset);
        }
        CHECK_FALSE(o.contains("match" + std::to_string(f.keys.size())));
        if (f.role == Role::Link) {
            CHECK(o.value("link", "") == fh_text(tc::u32_table_of(f.link_table), 0, 0));
            CHECK(o.value("hash_mask", "") == "ff");
            CHECK(o.value("hash_off", -1) == f.hash_offset);
        } else {
            CHECK(o.value("flowid", "") == tc::format_handle(f.classid));
        }
    }
    // The terminal flag (what `tc ... flowid` sets) shows as "*flowid" in tc's text output.
    std::string text = fx.net.server.exec_ok("tc filter show dev " + fx.dev);
    for (const char* flow :
         {"*flowid f5:100", "*flowid f5:101", "*flowid f5:102", "*flowid f5:103", "*flowid f5:104"})
        CHECK(text.find(flow) != std::string::npos);
}

}  // namespace

TEST_CASE("applying a full state and reading it back returns the same objects", "[kernel][tc]") {
    PortFixture fx;
    auto want = reference_state();
    auto changes = build_changes(want);
    fx.apply_all(changes);
    CHECK(fx.port->changes_sent() == changes.size());

    auto got = fx.port->read(fx.dev);
    REQUIRE(got.ok());
    CHECK(got->root_info.owner == tc::RootInfo::Owner::Ours);
    CHECK(got->root_info.kind == "htb");
    CHECK(got->root_info.handle == tc::kRootQdisc);
    CHECK(got->stats.size() == want.classes.size());
    check_same(want, got->state);
    SECTION("tc sees the same qdiscs, classes and filters") {
        check_with_tc(fx, want);
    }
    SECTION("applying the same Adds again updates in place: no duplicates, same state") {
        for (const auto& c : changes) {
            if (std::holds_alternative<tc::HtbQdisc>(c.object)) continue;  // htb has no in-place change
            if (auto* f = std::get_if<tc::U32Filter>(&c.object); f && f->role == Role::Table) continue;
            Status st = fx.port->apply(fx.dev, c);
            INFO(c.describe() << ": " << (st ? std::string("ok") : st.error().text()));
            CHECK(st.ok());
        }
        auto again = fx.port->read(fx.dev);
        REQUIRE(again.ok());
        check_same(want, again->state);
    }
    SECTION("taking it apart child-first leaves the bare root") {
        fx.apply_all(teardown_changes(want));
        auto bare = fx.port->read(fx.dev);
        REQUIRE(bare.ok());
        CHECK(bare->root_info.owner == tc::RootInfo::Owner::Ours);
        CHECK(bare->state.classes.empty());
        CHECK(bare->state.leaves.empty());
        CHECK(bare->state.u32.empty());
        CHECK(tc_classes(fx.net.server, fx.dev).empty());
    }
}

TEST_CASE("re-adding a u32 match node with the same handle replaces it in place", "[kernel][tc]") {
    PortFixture fx;
    auto want = reference_state();
    fx.apply_all(build_changes(want));
    auto node = want.u32[6];  // 100:2:800 -> f5:100
    REQUIRE(node.handle == tc::u32_handle(kTableV4, 2, 0x800));
    node.classid = kDefault;
    REQUIRE(fx.port->apply(fx.dev, {Change::Op::Add, node}).ok());
    node.classid = kHeavyV4;
    REQUIRE(fx.port->apply(fx.dev, {Change::Op::Modify, node}).ok());

    auto filters = tc_filters(fx.net.server, fx.dev);
    int copies = 0;
    for (const auto& f : filters)
        if (f.contains("options") && f["options"].value("fh", "") == "100:2:800") ++copies;
    CHECK(copies == 1);
    CHECK(find_fh(filters, "100:2:800")["options"].value("flowid", "") == "f5:103");
    auto got = fx.port->read(fx.dev);
    REQUIRE(got.ok());
    CHECK(got->state.u32.size() == want.u32.size());
}

TEST_CASE("modifying a class's rate keeps its byte counter", "[kernel][tc]") {
    PortFixture fx;
    auto want = reference_state();
    fx.apply_all(build_changes(want));
    REQUIRE(send_udp(VethPair::kClientV4, 20) == 20);
    auto before = tc_classes(fx.net.server, fx.dev)["f5:100"];
    REQUIRE(std::stoull(before["bytes"]) > 0);

    auto changed = *find_class(want, kHostV4);
    changed.rate_bytes_per_s = 7'000'000 / 8;
    changed.ceil_bytes_per_s = 9'000'000 / 8;
    REQUIRE(fx.port->apply(fx.dev, {Change::Op::Modify, changed}).ok());

    auto after = tc_classes(fx.net.server, fx.dev)["f5:100"];
    CHECK(after["rate"] == "7Mbit");
    CHECK(after["ceil"] == "9Mbit");
    CHECK(after["bytes"] == before["bytes"]);
    CHECK(after["packets"] == before["packets"]);
    auto got = fx.port->read(fx.dev);
    REQUIRE(got.ok());
    CHECK(find_class(got->state, kHostV4)->rate_bytes_per_s == 7'000'000 / 8);
    for (const auto& st : got->stats)
        if (st.classid == kHostV4) CHECK(std::to_string(st.bytes) == before["bytes"]);
}

TEST_CASE("a class that a filter references cannot be removed until the filter is", "[kernel][tc]") {
    PortFixture fx;
    auto want = reference_state();
    fx.apply_all(build_changes(want));
    auto cls = *find_class(want, kHostV6);
    auto filter = want.u32[7];  // 200:2:800 -> f5:101
    REQUIRE(filter.classid == kHostV6);

    Status busy = fx.port->apply(fx.dev, {Change::Op::Remove, cls});
    REQUIRE_FALSE(busy.ok());
    CHECK(busy.error().code == EBUSY);
    CHECK(busy.error().text().find("still referenced by a filter or child class") != std::string::npos);

    uint64_t sent = fx.port->changes_sent();
    REQUIRE(fx.port->apply(fx.dev, {Change::Op::Remove, filter}).ok());
    REQUIRE(fx.port->apply(fx.dev, {Change::Op::Remove, cls}).ok());
    CHECK(fx.port->changes_sent() == sent + 2);
    CHECK(tc_classes(fx.net.server, fx.dev).count("f5:101") == 0);
    CHECK(find_fh(tc_filters(fx.net.server, fx.dev), "200:2:800").is_null());

    Status gone = fx.port->apply(fx.dev, {Change::Op::Remove, cls});
    REQUIRE_FALSE(gone.ok());
    CHECK(gone.error().code == ENOENT);
}

TEST_CASE("root-table nodes read back with table 0 whichever id the kernel gave the prio", "[kernel][tc]") {
    PortFixture fx;
    auto want = reference_state();
    // IPv6 first: the kernel then gives the IPv6 prio 800: and the IPv4 prio 801:.
    std::stable_partition(want.u32.begin(), want.u32.end(),
                          [](const tc::U32Filter& f) { return f.protocol == tc::kEthPIpv6; });
    fx.apply_all(build_changes(want));
    auto filters = tc_filters(fx.net.server, fx.dev);
    CHECK(tc_root_table(filters, kPrioV6) == 0x800);
    CHECK(tc_root_table(filters, kPrioV4) == 0x801);
    CHECK(!find_fh(filters, "801::1").is_null());
    CHECK(!find_fh(filters, "801::800").is_null());

    auto got = fx.port->read(fx.dev);
    REQUIRE(got.ok());
    check_same(want, got->state);
    // And the nodes can be changed and removed through the same table-0 handles.
    auto wide = *find_u32(want, kPrioV4, tc::u32_handle(0, 0, 0x800));
    wide.classid = kDefault;
    REQUIRE(fx.port->apply(fx.dev, {Change::Op::Modify, wide}).ok());
    CHECK(find_fh(tc_filters(fx.net.server, fx.dev), "801::800")["options"].value("flowid", "") == "f5:2");
    REQUIRE(fx.port->apply(fx.dev, {Change::Op::Remove, wide}).ok());
    CHECK(find_fh(tc_filters(fx.net.server, fx.dev), "801::800").is_null());
}

TEST_CASE("reading a device that does not exist fails with no such device", "[kernel][tc]") {
    PortFixture fx;
    auto got = fx.port->read("fst-nonexistent");
    REQUIRE_FALSE(got.ok());
    CHECK(got.error().code == ENODEV);
    CHECK(got.error().detail == "no such device");
    Status st = fx.port->apply("fst-nonexistent", {Change::Op::Add, tc::HtbQdisc{}});
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == ENODEV);
    CHECK(fx.port->changes_sent() == 0);
}

TEST_CASE("a leaf qdisc's limit changes in place and the leaf can be removed", "[kernel][tc]") {
    PortFixture fx;
    auto want = reference_state();
    fx.apply_all(build_changes(want));
    auto leaf = want.leaves.at(0);
    leaf.limit_packets = 250;
    REQUIRE(fx.port->apply(fx.dev, {Change::Op::Modify, leaf}).ok());
    auto got = fx.port->read(fx.dev);
    REQUIRE(got.ok());
    REQUIRE(got->state.leaves.size() == 1);
    CHECK(got->state.leaves[0] == leaf);
    bool seen = false;
    for (const auto& q : tc_qdiscs(fx.net.server, fx.dev))
        if (q.value("parent", "") == "f5:100") seen = q["options"].value("limit", 0) == 250;
    CHECK(seen);

    REQUIRE(fx.port->apply(fx.dev, {Change::Op::Remove, leaf}).ok());
    got = fx.port->read(fx.dev);
    REQUIRE(got.ok());
    CHECK(got->state.leaves.empty());
    CHECK(find_class(got->state, kHostV4) != nullptr);
}
