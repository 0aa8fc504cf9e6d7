#include <catch2/catch.hpp>

#include "flowshaper/plan/planner.hpp"
#include "flowshaper/plan/render.hpp"
#include "policy_builder.hpp"

using namespace flowshaper;
using flowshaper::testing::prefix;

namespace {

plan::DevicePlan plan_one(const policy::Policy& p, std::vector<plan::HeavyClient> heavy = {},
                          plan::ClassifierKind kind = plan::ClassifierKind::U32) {
    plan::PlanInput in;
    in.policy = &p;
    in.heavy = std::move(heavy);
    in.resolved.classifier = kind;
    auto plans = plan::make_plan(in);
    REQUIRE(plans);
    REQUIRE(plans->size() == 1);
    return plans->front();
}

const tc::HtbClass* find_class(const tc::DeviceState& st, const std::string& label) {
    for (const auto& c : st.classes)
        if (c.label == label) return &c;
    return nullptr;
}

size_t matches_to(const tc::DeviceState& st, tc::Handle classid) {
    size_t n = 0;
    for (const auto& f : st.u32)
        if (f.role == tc::U32Filter::Role::Match && f.classid == classid) ++n;
    return n;
}

}  // namespace

TEST_CASE("the plan has flowshaper's root, a root class at link rate and the default class at f5:2") {
    auto p = testing::small_policy();
    auto dp = plan_one(p);
    REQUIRE(dp.desired.root);
    CHECK(dp.desired.root->handle == tc::make_handle(0xf5, 0));
    CHECK(dp.desired.root->default_class == tc::make_handle(0xf5, 2));
    auto* root = find_class(dp.desired, "root");
    REQUIRE(root);
    CHECK(root->classid == tc::kRootClass);
    CHECK(root->rate_bytes_per_s == 125'000'000);
    CHECK(root->ceil_bytes_per_s == 125'000'000);
    auto* normal = find_class(dp.desired, "class normal");
    REQUIRE(normal);
    CHECK(normal->classid == tc::make_handle(0xf5, 2));
    CHECK(normal->parent == tc::kRootClass);
    CHECK(normal->rate_bytes_per_s == 112'500'000);
    auto* bulk = find_class(dp.desired, "class bulk");
    REQUIRE(bulk);
    CHECK(bulk->classid == tc::make_handle(0xf5, 3));
    CHECK(bulk->prio == 1);
}

TEST_CASE("each client of a cap gets its own class unless the cap is shared") {
    auto p = testing::small_policy();
    auto dp = plan_one(p);
    auto* v4 = find_class(dp.desired, "cap customer-42 203.0.113.7");
    auto* v6 = find_class(dp.desired, "cap customer-42 2001:db8:7::/64");
    auto* shared = find_class(dp.desired, "cap scrapers");
    REQUIRE(v4);
    REQUIRE(v6);
    REQUIRE(shared);
    CHECK(v4->classid != v6->classid);
    CHECK(v4->rate_bytes_per_s == 625'000);
    CHECK(v4->ceil_bytes_per_s == 1'250'000);
    CHECK(tc::minor_of(v4->classid) >= plan::kFirstClientMinor);
    CHECK(matches_to(dp.desired, v4->classid) == 1);
    CHECK(matches_to(dp.desired, shared->classid) == 2);
    CHECK(dp.client_classes == 3);
    CHECK(dp.wide_prefixes == 0);  // both scraper prefixes are hashed
}

TEST_CASE("a capped IPv4 host sits in the bucket of its last byte, after the heavy range") {
    auto p = testing::small_policy();
    auto dp = plan_one(p);
    auto* v4 = find_class(dp.desired, "cap customer-42 203.0.113.7");
    REQUIRE(v4);
    const tc::U32Filter* node = nullptr;
    for (const auto& f : dp.desired.u32)
        if (f.role == tc::U32Filter::Role::Match && f.classid == v4->classid) node = &f;
    REQUIRE(node);
    CHECK(tc::u32_table_of(node->handle) == plan::kTableV4Host);
    CHECK(tc::u32_bucket_of(node->handle) == 7);
    CHECK(tc::u32_node_of(node->handle) >= plan::kFirstStaticNode);
    CHECK(node->prio == plan::kPrioV4);
}

TEST_CASE("a heavy client gets a class at the rule's limit and a DSCP-keyed node before static ones") {
    auto p = testing::small_policy();
    auto dp = plan_one(p, {{0, *net::Address::parse("203.0.113.7"), 0}});
    auto* heavy = find_class(dp.desired, "heavy imap-sync-loop 203.0.113.7");
    REQUIRE(heavy);
    CHECK(heavy->rate_bytes_per_s == 250'000);
    CHECK(heavy->ceil_bytes_per_s == 500'000);
    const tc::U32Filter* node = nullptr;
    for (const auto& f : dp.desired.u32)
        if (f.classid == heavy->classid) node = &f;
    REQUIRE(node);
    CHECK(tc::u32_bucket_of(node->handle) == 7);
    CHECK(tc::u32_node_of(node->handle) < plan::kFirstStaticNode);
    REQUIRE(node->keys.size() == 2);
    CHECK(node->keys[0].mask == 0x00fc0000);
}

TEST_CASE("with the fw classifier a heavy client is classified by its mark") {
    auto p = testing::small_policy();
    auto dp = plan_one(p, {{0, *net::Address::parse("203.0.113.9"), 0x00010000}}, plan::ClassifierKind::Fw);
    REQUIRE(dp.desired.fw.size() == 1);
    CHECK(dp.desired.fw[0].handle == 0x00010000);
    CHECK(dp.desired.fw[0].mask == 0x00ff0000);
    auto* heavy = find_class(dp.desired, "heavy imap-sync-loop 203.0.113.9");
    REQUIRE(heavy);
    CHECK(dp.desired.fw[0].classid == heavy->classid);
    CHECK(matches_to(dp.desired, heavy->classid) == 0);
}

TEST_CASE("asking for fw on a kernel without cls_fw is an error naming what is missing") {
    policy::Settings s;
    s.classifier = policy::Classifier::Fw;
    tc::Features none;
    none.source = "/proc/config.gz";
    auto r = plan::resolve(s, none);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().text(), Catch::Contains("no cls_fw (CONFIG_NET_CLS_FW"));
    s.classifier = policy::Classifier::Auto;
    auto a = plan::resolve(s, none);
    REQUIRE(a);
    CHECK(a->classifier == plan::ClassifierKind::U32);
    CHECK(a->leaf_kind == "bfifo");  // neither fq_codel nor sfq: a byte-sized fifo
    tc::Features all{true, true, true, "test"};
    auto b = plan::resolve(s, all);
    REQUIRE(b);
    CHECK(b->classifier == plan::ClassifierKind::Fw);
    CHECK(b->leaf_kind == "fq_codel");
}

TEST_CASE("a leaf qdisc is planned under every leaf class when the kernel has a better one than pfifo") {
    auto p = testing::small_policy();
    plan::PlanInput in;
    in.policy = &p;
    in.resolved.leaf_kind = "fq_codel";
    auto plans = plan::make_plan(in);
    REQUIRE(plans);
    const auto& st = plans->front().desired;
    CHECK(st.leaves.size() == st.classes.size() - 1);  // all but the root class
    for (const auto& q : st.leaves) CHECK(tc::major_of(q.handle) == tc::minor_of(q.parent));
}

TEST_CASE("a default class that is also a parent gets a leaf of its own for unclassified traffic") {
    auto p = testing::small_policy();
    p.caps[0].parent = "normal";
    auto dp = plan_one(p);
    auto* normal = find_class(dp.desired, "class normal");
    auto* rest = find_class(dp.desired, "class normal: unclassified traffic");
    REQUIRE(normal);
    REQUIRE(rest);
    CHECK(rest->classid == dp.desired.root->default_class);
    CHECK(rest->classid == tc::make_handle(0xf5, 2));
    CHECK(rest->parent == normal->classid);
    CHECK(normal->classid != tc::make_handle(0xf5, 2));
    auto* capped = find_class(dp.desired, "cap customer-42 203.0.113.7");
    REQUIRE(capped);
    CHECK(capped->parent == normal->classid);
}

TEST_CASE("re-planning with what the kernel has keeps every client's class and node ids") {
    auto p = testing::many_clients(300);
    auto first = plan_one(p);
    // The kernel gave client #17 another minor (an older flowshaper run): the plan must keep it.
    plan::PlanInput in;
    in.policy = &p;
    in.observed["eth0"] = first.desired;
    for (auto& f : in.observed["eth0"].u32)
        if (f.classid == tc::make_handle(0xf5, 0x100 + 17)) f.classid = tc::make_handle(0xf5, 0x7777);
    for (auto& c : in.observed["eth0"].classes)
        if (c.classid == tc::make_handle(0xf5, 0x100 + 17)) c.classid = tc::make_handle(0xf5, 0x7777);
    auto again = plan::make_plan(in);
    REQUIRE(again);
    const auto& st = again->front().desired;
    CHECK(std::any_of(st.classes.begin(), st.classes.end(),
                      [](auto& c) { return c.classid == tc::make_handle(0xf5, 0x7777); }));
    CHECK(st.classes.size() == first.desired.classes.size());
}

TEST_CASE("10,000 clients plan into 256 buckets without overflow") {
    auto p = testing::many_clients(10'000);
    auto dp = plan_one(p);
    CHECK(dp.client_classes == 10'000);
    std::map<uint32_t, int> per_bucket;
    for (const auto& f : dp.desired.u32)
        if (f.role == tc::U32Filter::Role::Match) ++per_bucket[tc::u32_bucket_of(f.handle)];
    CHECK(per_bucket.size() == 256);
    int largest = 0;
    for (auto& [b, n] : per_bucket) largest = std::max(largest, n);
    CHECK(largest <= 40);
}

TEST_CASE("the tc -batch rendering builds the same objects as the plan") {
    auto p = testing::small_policy();
    auto dp = plan_one(p);
    auto script = plan::render_tc_batch(dp);
    CHECK_THAT(script, Catch::StartsWith("qdisc add dev eth0 root handle f5: htb default 2 r2q 10\n"));
    CHECK_THAT(script,
               Catch::Contains("class add dev eth0 parent f5: classid f5:1 htb rate 1000000000bit ceil "
                               "1000000000bit"));
    CHECK_THAT(script, Catch::Contains(
                           "filter add dev eth0 parent f5: prio 10 protocol ip handle 100: u32 divisor 256"));
    CHECK_THAT(script,
               Catch::Contains("handle ::1 u32 match u32 0x00000000 0x00000000 at 0 link 100: hashkey mask "
                               "0x000000ff at 16"));
    CHECK_THAT(script, Catch::Contains("u32 ht 100:7: match u32 0xcb007107 0xffffffff at 16 flowid f5:"));
    size_t lines = std::count(script.begin(), script.end(), '\n');
    CHECK(lines == 1 + dp.desired.classes.size() + dp.desired.u32.size());
    auto text = plan::render_text(dp);
    CHECK_THAT(text, Catch::Contains("cap customer-42 203.0.113.7  rate 5mbit ceil 10mbit"));
}

TEST_CASE("heavy clients are found again in a device's state, by their DSCP-keyed nodes") {
    auto p = testing::small_policy();
    auto dp =
        plan_one(p, {{0, *net::Address::parse("203.0.113.7"), 0}, {0, *net::Address::parse("fd00::9"), 0}});
    auto found = plan::heavy_clients_in(p, dp.desired);
    REQUIRE(found.size() == 2);
    CHECK(found[0].rule_index == 0);
    CHECK(found[0].client == *net::Address::parse("203.0.113.7"));
    CHECK(found[1].client == *net::Address::parse("fd00::9"));
    CHECK(plan::heavy_clients_in(p, plan_one(p).desired).empty());  // static caps are not heavy
}
