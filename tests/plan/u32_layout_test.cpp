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

namespace {

// `text` with every bit beyond `length` cleared (the form a policy's prefix always has).
net::Prefix masked(const char* text, int length) {
    net::Prefix p{*net::Address::parse(text), static_cast<uint8_t>(length)};
    for (int bit = length; bit < p.address.bit_width(); ++bit)
        p.address.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
    return p;
}

// The match node the planner writes for `id`: its prio, protocol, table and bucket from the layout,
// its keys from keys_for.
tc::U32Filter node_for(const plan::MatchIdentity& id) {
    auto place = plan::place_for(id.prefix);
    tc::U32Filter f;
    f.role = tc::U32Filter::Role::Match;
    f.prio = place.prio;
    f.protocol = place.protocol;
    f.handle = tc::u32_handle(place.table, place.bucket, plan::kFirstStaticNode);
    f.keys = plan::keys_for(id);
    return f;
}

}  // namespace

TEST_CASE("every prefix length of IPv4 and IPv6 comes back from its u32 node, with and without a DSCP") {
    struct Family {
        const char* addresses[3];
        int bits;
    };
    int checked = 0;
    for (const auto& fam :
         {Family{{"255.255.255.255", "203.0.113.7", "10.128.1.3"}, 32},
          Family{{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8:7:42:1:2:3:4", "fd00:8000::1"},
                 128}}) {
        for (const char* text : fam.addresses) {
            for (int length = 0; length <= fam.bits; ++length) {
                for (int dscp : {-1, 0, 10, 46, 63}) {
                    plan::MatchIdentity id{masked(text, length), dscp};
                    INFO(id.prefix.str() << " dscp " << dscp);
                    auto f = node_for(id);
                    auto back = plan::identity_of(f);
                    REQUIRE(back);
                    CHECK(*back == id);
                    // The decoded prefix belongs in the table and bucket the node sits in.
                    auto place = plan::place_for(back->prefix);
                    CHECK(tc::u32_table_of(f.handle) == place.table);
                    CHECK(tc::u32_bucket_of(f.handle) == place.bucket);
                    ++checked;
                }
            }
        }
    }
    CHECK(checked == 3 * 33 * 5 + 3 * 129 * 5);
}

TEST_CASE("identity_of refuses nodes that keys_for would not have written") {
    plan::MatchIdentity id{prefix("2001:db8:7::/64"), 8};
    auto good = node_for(id);
    REQUIRE(plan::identity_of(good));
    auto link = good;
    link.role = tc::U32Filter::Role::Link;
    CHECK_FALSE(plan::identity_of(link));
    auto arp = good;
    arp.protocol = 0x0806;
    CHECK_FALSE(plan::identity_of(arp));
    auto holes = good;  // a /64 written without its first word: not contiguous
    holes.keys.erase(holes.keys.begin() + 1);
    CHECK_FALSE(plan::identity_of(holes));
    auto odd_mask = good;  // 0xfff0ffff is no prefix mask
    odd_mask.keys[1].mask = 0xfff0ffff;
    CHECK_FALSE(plan::identity_of(odd_mask));
    auto host_bits = node_for({prefix("198.51.100.0/24"), -1});  // 198.51.100.9 under a /24 mask
    host_bits.keys[0].value |= 9;
    CHECK_FALSE(plan::identity_of(host_bits));
    auto dscp_mask = good;  // a TOS match with the ECN bits too
    dscp_mask.keys[0].mask = 0x0ff00000;
    CHECK_FALSE(plan::identity_of(dscp_mask));
}
