#include <map>

#include <catch2/catch.hpp>

#include "flowshaper/plan/planner.hpp"
#include "policy_builder.hpp"
#include "u32_layout.hpp"

using namespace flowshaper;
using flowshaper::testing::prefix;

TEST_CASE("an IPv4 host is hashed on its last byte in the IPv4 host table") {
    auto place = plan::place_for(prefix("203.0.113.7"));
    CHECK(place.table == plan::kTableV4Host);
    CHECK(place.bucket == 7);
    CHECK(place.prio == plan::kPrioV4);
    CHECK(place.protocol == tc::kEthPIp);
    auto keys = plan::keys_for({prefix("203.0.113.7"), -1});
    REQUIRE(keys.size() == 1);
    CHECK(keys[0] == tc::U32Key{0xcb007107, 0xffffffff, 16});
}

TEST_CASE("an IPv6 /64 is hashed on byte 7 and an IPv6 host on byte 15") {
    auto net64 = plan::place_for(prefix("2001:db8:7:42::/64"));
    CHECK(net64.table == plan::kTableV6Net);
    CHECK(net64.bucket == 0x42);
    auto host = plan::place_for(prefix("2001:db8::1:2:3:4:5fe"));
    CHECK(host.table == plan::kTableV6Host);
    CHECK(host.bucket == 0xfe);
    auto keys = plan::keys_for({prefix("2001:db8:7:42::/64"), -1});
    REQUIRE(keys.size() == 2);
    CHECK(keys[0] == tc::U32Key{0x20010db8, 0xffffffff, 24});
    CHECK(keys[1] == tc::U32Key{0x00070042, 0xffffffff, 28});
}

TEST_CASE("a prefix is hashed on the last byte wholly inside it, so every address lands in one bucket") {
    struct Case {
        const char* text;
        uint32_t table;
        uint32_t bucket;
    };
    for (auto c :
         {Case{"198.51.100.0/24", plan::kTableV4Net24, 100},
          Case{"198.51.100.128/25", plan::kTableV4Net24, 100},
          Case{"198.51.100.252/31", plan::kTableV4Net24, 100}, Case{"172.16.0.0/16", plan::kTableV4Net16, 16},
          Case{"172.16.0.0/20", plan::kTableV4Net16, 16}, Case{"10.0.0.0/8", plan::kTableV4Net8, 10},
          Case{"10.0.0.0/12", plan::kTableV4Net8, 10}, Case{"2001:db8:bad::/48", plan::kTableV6Net48, 0xad},
          Case{"2001:db8:bad:ff00::/56", plan::kTableV6Net48, 0xad},
          Case{"2001:db8::/32", plan::kTableV6Net32, 0xb8},
          Case{"2001:db8:7:42::/80", plan::kTableV6Net, 0x42}}) {
        INFO(c.text);
        auto place = plan::place_for(prefix(c.text));
        CHECK(place.table == c.table);
        CHECK(place.bucket == c.bucket);
    }
}

TEST_CASE("only prefixes shorter than every hash table go to the short list in the root table") {
    CHECK(plan::place_for(prefix("192.0.0.0/7")).table == 0);
    CHECK(plan::place_for(prefix("0.0.0.0/0")).table == 0);
    CHECK(plan::place_for(prefix("2000::/16")).table == 0);
    auto keys = plan::keys_for({prefix("198.51.100.0/22"), -1});
    REQUIRE(keys.size() == 1);
    CHECK(keys[0] == tc::U32Key{0xc6336400, 0xfffffc00, 16});
}

TEST_CASE("each hash table's link hashes the byte its prefixes are keyed on") {
    auto all = plan::fixed_u32_nodes({plan::kTableV4Net24, plan::kTableV4Net16, plan::kTableV4Net8,
                                      plan::kTableV6Net48, plan::kTableV6Net32});
    std::map<uint32_t, const tc::U32Filter*> link_to;
    for (const auto& f : all)
        if (f.role == tc::U32Filter::Role::Link) link_to[tc::u32_table_of(f.link_table)] = &f;
    REQUIRE(link_to.size() == 8);
    auto hashed = [&](uint32_t table) {
        return std::pair{link_to[table]->hash_offset, link_to[table]->hash_mask};
    };
    CHECK(hashed(plan::kTableV4Host) == std::pair{16, 0x000000ffu});
    CHECK(hashed(plan::kTableV4Net24) == std::pair{16, 0x0000ff00u});
    CHECK(hashed(plan::kTableV4Net16) == std::pair{16, 0x00ff0000u});
    CHECK(hashed(plan::kTableV4Net8) == std::pair{16, 0xff000000u});
    CHECK(hashed(plan::kTableV6Host) == std::pair{36, 0x000000ffu});
    CHECK(hashed(plan::kTableV6Net) == std::pair{28, 0x000000ffu});
    CHECK(hashed(plan::kTableV6Net48) == std::pair{28, 0x00ff0000u});
    CHECK(hashed(plan::kTableV6Net32) == std::pair{24, 0x000000ffu});
    // Without prefix clients only the host tables (and IPv6 /64s) are there.
    CHECK(plan::fixed_u32_nodes().size() == 6);
}

TEST_CASE("a heavy match also keys on the DSCP in the TOS byte or traffic class") {
    auto v4 = plan::keys_for({prefix("10.0.0.9"), 8});
    REQUIRE(v4.size() == 2);
    CHECK(v4[0] == tc::U32Key{8u << 18, 0x00fc0000, 0});
    auto v6 = plan::keys_for({prefix("fd00::9"), 46});
    CHECK(v6[0] == tc::U32Key{46u << 22, 0x0fc00000, 0});
}

TEST_CASE("identity_of reverses keys_for for every layout and rejects foreign keys") {
    for (const char* text : {"10.1.2.3", "10.1.2.0/24", "10.0.0.0/8", "0.0.0.0/0", "2001:db8::1",
                             "2001:db8:1::/48", "2001:db8:1:2::/64", "2001:db8:1:2:3::/80", "::/0"}) {
        for (int dscp : {-1, 0, 8, 63}) {
            plan::MatchIdentity id{prefix(text), dscp};
            tc::U32Filter f;
            f.role = tc::U32Filter::Role::Match;
            f.protocol = id.prefix.family() == net::Family::V4 ? tc::kEthPIp : tc::kEthPIpv6;
            f.keys = plan::keys_for(id);
            auto back = plan::identity_of(f);
            INFO(text << " dscp " << dscp);
            REQUIRE(back);
            CHECK(*back == id);
        }
    }
    tc::U32Filter odd;
    odd.role = tc::U32Filter::Role::Match;
    odd.keys = {{0x50, 0xff, 8}};  // someone's TTL match
    CHECK_FALSE(plan::identity_of(odd));
}
