// Rule buffers: what flowshaper builds parses back to the same rule, and shapes it did not build
// (conditions, other revisions, other options) are not taken for its own.
#include <arpa/inet.h>
#include <linux/netfilter/x_tables.h>
#include <linux/netfilter/xt_connbytes.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstring>

#include "mangle_xt_rules.hpp"

using namespace flowshaper::kernel::mangle;
using flowshaper::net::Family;

TEST_CASE("built rules have the kernel's sizes and parse back to themselves in both families") {
    const Family family = GENERATE(Family::V4, Family::V6);
    const size_t header = family == Family::V4 ? sizeof(ipt_entry) : sizeof(ip6t_entry);

    Bytes restore = build_restore_rule(family, 0x00ff0000);
    // entry + CONNMARK target (32-byte header + 16-byte tginfo2)
    CHECK(restore.size() == header + 32 + 16);
    CHECK(next_offset(family, restore.data()) == restore.size());
    CHECK(target_name(family, restore) == "CONNMARK");
    CHECK(parse_rule(family, restore, "CONNMARK") == KnownRule{RestoreRule{0x00ff0000}});

    DscpRule plain{0x10000, 0xff0000, 8, ""};
    Bytes dscp = build_dscp_rule(family, plain);
    // entry + connmark match (32 + 16) + DSCP target (32 + 8)
    CHECK(dscp.size() == header + 48 + 40);
    CHECK(parse_rule(family, dscp, "DSCP") == KnownRule{plain});

    DscpRule commented{0x20000, 0xff0000, 46, "imap sync \"loop\""};
    Bytes with_comment = build_dscp_rule(family, commented);
    CHECK(with_comment.size() == header + 48 + 32 + 256 + 40);
    CHECK(parse_rule(family, with_comment, "DSCP") == KnownRule{commented});

    CandidateRule flag{500'000'000, 0x00800000};
    Bytes candidate = build_candidate_rule(family, flag);
    // entry + connbytes match (32 + 24) + CONNMARK target (32 + 16)
    CHECK(candidate.size() == header + 56 + 48);
    CHECK(target_name(family, candidate) == "CONNMARK");
    CHECK(parse_rule(family, candidate, "CONNMARK") == KnownRule{flag});

    Bytes jump = build_jump_rule(family, "FLOWSHAPER");
    CHECK(jump.size() == header + XT_ALIGN(sizeof(xt_standard_target)));
    CHECK(parse_rule(family, jump, "FLOWSHAPER") == KnownRule{JumpRule{"FLOWSHAPER"}});
}

TEST_CASE("a rule with a condition in its header is not flowshaper's") {
    Bytes jump = build_jump_rule(Family::V4, "FLOWSHAPER");
    set_source_v4(jump, htonl(0x0a000001), htonl(0xffffffff));
    CHECK_FALSE(parse_rule(Family::V4, jump, "FLOWSHAPER").has_value());
}

TEST_CASE("another revision or another CONNMARK mode is not flowshaper's") {
    Bytes restore = build_restore_rule(Family::V4, 0xff);
    const size_t target_at = sizeof(ipt_entry);
    SECTION("revision 1") {
        restore[target_at + offsetof(xt_entry_target, u.user.revision)] = 1;
        CHECK_FALSE(parse_rule(Family::V4, restore, "CONNMARK").has_value());
    }
    SECTION("--save-mark instead of --restore-mark") {
        restore[target_at + sizeof(xt_entry_target) + 14] = 1;  // tginfo2.mode (XT_CONNMARK_SAVE)
        CHECK_FALSE(parse_rule(Family::V4, restore, "CONNMARK").has_value());
    }
    SECTION("a truncated entry") {
        restore.resize(restore.size() - 8);
        CHECK_FALSE(parse_rule(Family::V4, restore, "CONNMARK").has_value());
    }
}

TEST_CASE("a connbytes rule with a bound, another direction, another mode or several bits is not ours") {
    Bytes rule = build_candidate_rule(Family::V4, {1'000'000, 0x100});
    const size_t info_at = sizeof(ipt_entry) + sizeof(xt_entry_match);
    const size_t target_info_at = sizeof(ipt_entry) + 32 + 24 + sizeof(xt_entry_target);
    REQUIRE(parse_rule(Family::V4, rule, "CONNMARK").has_value());
    SECTION("an upper bound") {
        xt_connbytes_info info;
        std::memcpy(&info, rule.data() + info_at, sizeof info);
        info.count.to = 2'000'000;
        std::memcpy(rule.data() + info_at, &info, sizeof info);
    }
    SECTION("the reply direction only") {
        rule[info_at + offsetof(xt_connbytes_info, direction)] = XT_CONNBYTES_DIR_REPLY;
    }
    SECTION("packets instead of bytes") {
        rule[info_at + offsetof(xt_connbytes_info, what)] = XT_CONNBYTES_PKTS;
    }
    SECTION("two bits set") {
        rule[target_info_at] = 0x03;      // tginfo2.ctmark, low byte: 0x103
        rule[target_info_at + 4] = 0x03;  // tginfo2.ctmask, low byte: 0x103
    }
    CHECK_FALSE(parse_rule(Family::V4, rule, "CONNMARK").has_value());
}

TEST_CASE("garbage after a name's NUL, as the kernel leaves it, does not matter") {
    Bytes dscp = build_dscp_rule(Family::V6, {0x1, 0xf, 10, ""});
    const size_t match_at = sizeof(ip6t_entry);
    // "connmark" + NUL fills 9 of the 29 name bytes; the kernel does not write the rest.
    dscp[match_at + offsetof(xt_entry_match, u.user.name) + 12] = 0x5a;
    CHECK(parse_rule(Family::V6, dscp, "DSCP") == KnownRule{DscpRule{0x1, 0xf, 10, ""}});
}

TEST_CASE("rules are described as iptables-legacy-save prints them") {
    CHECK(describe(RestoreRule{0xff0000}) ==
          "-j CONNMARK --restore-mark --nfmask 0xff0000 --ctmask 0xff0000");
    CHECK(describe(DscpRule{0x10000, 0xff0000, 8, ""}) ==
          "-m connmark --mark 0x10000/0xff0000 -j DSCP --set-dscp 0x08");
    CHECK(describe(DscpRule{0x10000, 0xff0000, 8, "imap-sync_1"}) ==
          "-m connmark --mark 0x10000/0xff0000 -m comment --comment imap-sync_1 -j DSCP --set-dscp 0x08");
    CHECK(describe(DscpRule{0x10000, 0xff0000, 8, "flowshaper imap"}) ==
          "-m connmark --mark 0x10000/0xff0000 -m comment --comment \"flowshaper imap\" -j DSCP --set-dscp "
          "0x08");
    CHECK(describe(JumpRule{"FLOWSHAPER"}) == "-j FLOWSHAPER");
    CHECK(describe(CandidateRule{500'000'000, 0x800000}) ==
          "-m connbytes --connbytes 500000000 --connbytes-mode bytes --connbytes-dir both -j CONNMARK "
          "--set-xmark 0x800000/0x800000");
}

TEST_CASE("capped-client rules parse back with their protocol, and more than 15 ports take more rules") {
    const Family family = GENERATE(Family::V4, Family::V6);
    flowshaper::kernel::MangleSpec spec;
    spec.mark_mask = 0x00ff0000;
    spec.dscp_rules.push_back({0x00010000, 0x00ff0000, 8, ""});
    std::vector<uint16_t> many;
    for (uint16_t p = 1000; p < 1020; ++p) many.push_back(p);
    spec.capped.push_back({6, many, {25}});
    auto rules = capped_rules(spec, 0, 7);
    REQUIRE(rules.size() == 3);  // 15 + 5 source ports, 1 destination port
    CHECK(rules[0].ports.size() == 15);
    CHECK(rules[1].ports == std::vector<uint16_t>(many.begin() + 15, many.end()));
    CHECK_FALSE(rules[2].source_ports);
    for (const auto& r : rules) {
        Bytes entry = build_capped_rule(family, r);
        CHECK(parse_rule(family, entry, "CONNMARK") == KnownRule{r});
    }
    CHECK(describe(rules[2], "flowshaper-r0-v4") ==
          "-p tcp -m set --match-set flowshaper-r0-v4 dst -m multiport --dports 25 -j CONNMARK --set-xmark "
          "0x10000/0xff0000");
    // Without ports: one rule, with or without a protocol.
    spec.capped[0] = {0, {}, {}};
    auto any = capped_rules(spec, 0, 3);
    REQUIRE(any.size() == 1);
    CHECK(parse_rule(family, build_capped_rule(family, any[0]), "CONNMARK") == KnownRule{any[0]});
    // A protocol on a rule of another shape is not ours.
    Bytes restore = build_restore_rule(family, 0x00ff0000);
    Bytes with_proto = build_capped_rule(family, rules[0]);
    const size_t proto_at = family == Family::V4 ? offsetof(ipt_ip, proto) : offsetof(ip6t_ip6, proto);
    std::memcpy(restore.data() + proto_at, with_proto.data() + proto_at, 2);
    CHECK_FALSE(parse_rule(family, restore, "CONNMARK"));
}
