// The mangle port's convergence and retry logic, through FakeManglePort (which runs the same
// engine as the real port against an in-memory table with libiptc's rules).
#include <catch2/catch.hpp>
#include <cerrno>

#include "flowshaper/kernel/mangle_fake_port.hpp"

using flowshaper::kernel::FakeManglePort;
using flowshaper::kernel::MangleSpec;
using flowshaper::net::Family;

namespace {

MangleSpec two_rules() {
    MangleSpec spec;
    spec.mark_mask = 0x00ff0000;
    spec.dscp_rules.push_back({0x00010000, 0x000f0000, 8, "imap-sync-loop"});
    spec.dscp_rules.push_back({0x00020000, 0x000f0000, 10, ""});
    return spec;
}

const std::vector<std::string> kTwoRulesLines{
    ":FLOWSHAPER -",
    "-A POSTROUTING -j FLOWSHAPER",
    "-A FLOWSHAPER -j CONNMARK --restore-mark --nfmask 0xff0000 --ctmask 0xff0000",
    "-A FLOWSHAPER -m connmark --mark 0x10000/0xf0000 -m comment --comment imap-sync-loop -j DSCP --set-dscp "
    "0x08",
    "-A FLOWSHAPER -m connmark --mark 0x20000/0xf0000 -j DSCP --set-dscp 0x0a",
};

}  // namespace

TEST_CASE("ensure on an empty table creates the chain, its rules and the jump in one commit") {
    FakeManglePort port;
    REQUIRE(port.ensure(Family::V4, two_rules()));
    CHECK(port.commits() == 1);
    CHECK(port.lines(Family::V4) == kTwoRulesLines);
    CHECK(port.lines(Family::V6).empty());  // the other family is untouched
}

TEST_CASE("ensuring the same spec twice commits nothing the second time") {
    FakeManglePort port;
    REQUIRE(port.ensure(Family::V6, two_rules()));
    REQUIRE(port.ensure(Family::V6, two_rules()));
    CHECK(port.commits() == 1);
    CHECK(port.commit_attempts() == 1);
    CHECK(port.lines(Family::V6) == kTwoRulesLines);
}

TEST_CASE("read returns the spec that ensure wrote, and nothing before and after") {
    FakeManglePort port;
    auto before = port.read(Family::V4);
    REQUIRE(before);
    CHECK_FALSE(before->has_value());
    REQUIRE(port.ensure(Family::V4, two_rules()));
    auto during = port.read(Family::V4);
    REQUIRE(during);
    REQUIRE(during->has_value());
    CHECK(**during == two_rules());
    REQUIRE(port.remove_all(Family::V4));
    auto after = port.read(Family::V4);
    REQUIRE(after);
    CHECK_FALSE(after->has_value());
}

TEST_CASE("a changed DSCP replaces only that rule, in one commit, with a constant rule count") {
    FakeManglePort port;
    REQUIRE(port.ensure(Family::V4, two_rules()));
    MangleSpec changed = two_rules();
    changed.dscp_rules[1].dscp = 46;
    REQUIRE(port.ensure(Family::V4, changed));
    CHECK(port.commits() == 2);
    auto lines = port.lines(Family::V4);
    CHECK(lines.size() == kTwoRulesLines.size());
    CHECK(lines.back() == "-A FLOWSHAPER -m connmark --mark 0x20000/0xf0000 -j DSCP --set-dscp 0x2e");
    CHECK(lines[3] == kTwoRulesLines[3]);
}

TEST_CASE("a changed mark mask and fewer rules converge in one commit") {
    FakeManglePort port;
    REQUIRE(port.ensure(Family::V4, two_rules()));
    MangleSpec smaller;
    smaller.mark_mask = 0x0000ff00;
    smaller.dscp_rules.push_back({0x00000100, 0x00000f00, 8, ""});
    REQUIRE(port.ensure(Family::V4, smaller));
    CHECK(port.commits() == 2);
    CHECK(port.lines(Family::V4) ==
          std::vector<std::string>{":FLOWSHAPER -", "-A POSTROUTING -j FLOWSHAPER",
                                   "-A FLOWSHAPER -j CONNMARK --restore-mark --nfmask 0xff00 --ctmask 0xff00",
                                   "-A FLOWSHAPER -m connmark --mark 0x100/0xf00 -j DSCP --set-dscp 0x08"});
}

TEST_CASE("the jump goes on top of POSTROUTING and other rules and chains stay as they were") {
    FakeManglePort port;
    port.add_foreign_rule(Family::V4, "POSTROUTING", "ACCEPT");
    port.add_foreign_rule(Family::V4, "USERCHAIN", "RETURN");
    port.add_foreign_rule(Family::V4, "POSTROUTING", "USERCHAIN");
    const auto before = port.lines(Family::V4);
    REQUIRE(port.ensure(Family::V4, two_rules()));
    CHECK(port.lines(Family::V4) ==
          std::vector<std::string>{":FLOWSHAPER -", ":USERCHAIN -", "-A POSTROUTING -j FLOWSHAPER",
                                   "-A POSTROUTING -j ACCEPT", "-A POSTROUTING -j USERCHAIN",
                                   kTwoRulesLines[2], kTwoRulesLines[3], kTwoRulesLines[4],
                                   "-A USERCHAIN -j RETURN"});
    REQUIRE(port.remove_all(Family::V4));
    CHECK(port.lines(Family::V4) == before);
}

TEST_CASE("a jump that is already there, lower down, is kept and not duplicated") {
    FakeManglePort port;
    REQUIRE(port.ensure(Family::V4, two_rules()));
    REQUIRE(port.remove_all(Family::V4));
    port.add_foreign_rule(Family::V4, "POSTROUTING", "ACCEPT");
    REQUIRE(port.ensure(Family::V4, two_rules()));
    // Someone moved our jump below their rule: it stays where it is.
    port.add_foreign_rule(Family::V4, "POSTROUTING", "RETURN");
    REQUIRE(port.ensure(Family::V4, two_rules()));
    CHECK(port.commits() == 3);
    auto lines = port.lines(Family::V4);
    CHECK(std::count(lines.begin(), lines.end(), "-A POSTROUTING -j FLOWSHAPER") == 1);
}

TEST_CASE("a second jump to the chain, made by hand, is removed") {
    FakeManglePort port;
    REQUIRE(port.ensure(Family::V4, two_rules()));
    port.add_foreign_rule(Family::V4, "POSTROUTING", "ACCEPT");
    port.add_foreign_rule(Family::V4, "POSTROUTING", "FLOWSHAPER");
    REQUIRE(port.ensure(Family::V4, two_rules()));
    CHECK(port.commits() == 2);
    auto lines = port.lines(Family::V4);
    CHECK(std::count(lines.begin(), lines.end(), "-A POSTROUTING -j FLOWSHAPER") == 1);
    CHECK(std::count(lines.begin(), lines.end(), "-A POSTROUTING -j ACCEPT") == 1);
}

TEST_CASE("a rule someone wrote into flowshaper's chain is reported by read and replaced by ensure") {
    FakeManglePort port;
    REQUIRE(port.ensure(Family::V4, two_rules()));
    port.add_foreign_rule(Family::V4, "FLOWSHAPER", "ACCEPT");
    auto read = port.read(Family::V4);
    REQUIRE_FALSE(read);
    CHECK(read.error().code == EPROTO);
    CHECK_THAT(read.error().text(), Catch::Contains("rule 4 was not written by flowshaper"));
    REQUIRE(port.ensure(Family::V4, two_rules()));
    CHECK(port.lines(Family::V4) == kTwoRulesLines);
}

TEST_CASE("a commit that fails with EAGAIN once is redone on a fresh snapshot") {
    FakeManglePort port;
    port.fail_next_commits(EAGAIN, 1);
    REQUIRE(port.ensure(Family::V4, two_rules()));
    CHECK(port.commit_attempts() == 2);
    CHECK(port.commits() == 1);
    CHECK(port.lines(Family::V4) == kTwoRulesLines);
}

TEST_CASE("EINVAL from a commit is retried on a fresh snapshot") {
    FakeManglePort port;
    port.fail_next_commits(EINVAL, 1);
    REQUIRE(port.ensure(Family::V4, two_rules()));
    CHECK(port.commit_attempts() == 2);
    CHECK(port.lines(Family::V4) == kTwoRulesLines);
}

TEST_CASE("a commit that replaced the table but then failed is found done on the re-read") {
    FakeManglePort port;
    port.fail_next_commits(EINVAL, 1, /*applied=*/true);
    REQUIRE(port.ensure(Family::V4, two_rules()));
    CHECK(port.commit_attempts() == 1);  // the second snapshot already matched: no second commit
    CHECK(port.lines(Family::V4) == kTwoRulesLines);
}

TEST_CASE("a concurrent change before the commit is kept: the retry starts from the new table") {
    FakeManglePort port;
    port.add_foreign_rule(Family::V4, "POSTROUTING", "RETURN");
    port.change_before_next_commit(Family::V4);  // appends "-A POSTROUTING -j ACCEPT", kernel says EAGAIN
    REQUIRE(port.ensure(Family::V4, two_rules()));
    CHECK(port.commit_attempts() == 2);
    auto lines = port.lines(Family::V4);
    CHECK(std::vector<std::string>(lines.begin() + 1, lines.begin() + 4) ==
          std::vector<std::string>{"-A POSTROUTING -j FLOWSHAPER", "-A POSTROUTING -j RETURN",
                                   "-A POSTROUTING -j ACCEPT"});
}

TEST_CASE("EAGAIN on every attempt gives up after a bounded number of attempts and changes nothing") {
    FakeManglePort port;
    port.fail_next_commits(EAGAIN, 1000);
    auto st = port.ensure(Family::V4, two_rules());
    REQUIRE_FALSE(st);
    CHECK(st.error().code == EAGAIN);
    CHECK(port.commit_attempts() == 5);
    CHECK_THAT(st.error().text(), Catch::Contains("gave up after 5 attempts"));
    CHECK_THAT(st.error().text(), Catch::Contains("xtables lock"));
    CHECK(port.commits() == 0);
    CHECK(port.lines(Family::V4).empty());
}

TEST_CASE("a permission error is not retried and says which capability is missing") {
    FakeManglePort port;
    port.fail_next_commits(EPERM, 1);
    auto st = port.ensure(Family::V6, two_rules());
    REQUIRE_FALSE(st);
    CHECK(st.error().code == EPERM);
    CHECK(port.commit_attempts() == 1);
    CHECK_THAT(st.error().text(), Catch::Contains("CAP_NET_ADMIN"));
    CHECK_THAT(st.error().text(), Catch::Contains("mangle (IPv6)"));
    CHECK(port.lines(Family::V6).empty());
}

TEST_CASE("a missing kernel module is reported with the modules to load") {
    FakeManglePort port;
    port.fail_next_commits(ENOENT, 1);
    auto st = port.ensure(Family::V4, two_rules());
    REQUIRE_FALSE(st);
    CHECK_THAT(st.error().text(), Catch::Contains("xt_DSCP"));
    CHECK(port.commit_attempts() == 1);  // not retried
}

TEST_CASE("remove_all with nothing of ours commits nothing") {
    FakeManglePort port;
    port.add_foreign_rule(Family::V4, "POSTROUTING", "ACCEPT");
    REQUIRE(port.remove_all(Family::V4));
    CHECK(port.commit_attempts() == 0);
    CHECK(port.lines(Family::V4) == std::vector<std::string>{"-A POSTROUTING -j ACCEPT"});
}

TEST_CASE("remove_all refuses to delete the chain while another rule jumps to it") {
    FakeManglePort port;
    REQUIRE(port.ensure(Family::V4, two_rules()));
    port.add_foreign_rule(Family::V4, "USERCHAIN", "FLOWSHAPER");
    auto st = port.remove_all(Family::V4);
    REQUIRE_FALSE(st);
    CHECK(st.error().code == EMLINK);
    CHECK_THAT(st.error().text(), Catch::Contains("remove it first"));
    CHECK(port.lines(Family::V4).size() == kTwoRulesLines.size() + 2);  // nothing was committed
}

TEST_CASE("an invalid spec is refused before anything is read or committed") {
    FakeManglePort port;
    MangleSpec spec = two_rules();
    SECTION("DSCP above 63") {
        spec.dscp_rules[0].dscp = 64;
    }
    SECTION("value outside its mask") {
        spec.dscp_rules[0].ctmark_value = 0x01000000;
    }
    SECTION("mask outside mark_mask") {
        spec.dscp_rules[0].ctmark_mask = 0xff000000;
    }
    SECTION("no mark bits") {
        spec.mark_mask = 0;
    }
    SECTION("comment too long") {
        spec.dscp_rules[0].comment = std::string(256, 'x');
    }
    SECTION("a candidate flag of two bits") {
        spec.candidate = MangleSpec::Candidate{1000, 0x03000000};
    }
    SECTION("a candidate bit inside mark_mask") {
        spec.candidate = MangleSpec::Candidate{1000, 0x00800000};
    }
    SECTION("a candidate threshold of 0 bytes") {
        spec.candidate = MangleSpec::Candidate{0, 0x01000000};
    }
    auto st = port.ensure(Family::V4, spec);
    REQUIRE_FALSE(st);
    CHECK(st.error().code == EINVAL);
    CHECK(port.commit_attempts() == 0);
}

TEST_CASE("conntrack accounting reports whether it was already on") {
    FakeManglePort port;
    auto unloaded = port.ensure_conntrack_accounting();  // no rule has loaded conntrack yet
    REQUIRE_FALSE(unloaded);
    CHECK(unloaded.error().code == ENOENT);
    REQUIRE(port.ensure(Family::V4, two_rules()));
    auto first = port.ensure_conntrack_accounting();
    REQUIRE(first);
    CHECK_FALSE(*first);
    CHECK(port.conntrack_accounting());
    auto second = port.ensure_conntrack_accounting();
    REQUIRE(second);
    CHECK(*second);
    port.fail_conntrack_accounting(EROFS);
    CHECK_FALSE(port.ensure_conntrack_accounting());
}

TEST_CASE("the candidate flag rule follows the restore rule, and switching it on or off takes one commit") {
    FakeManglePort port;
    REQUIRE(port.ensure(Family::V4, two_rules()));
    MangleSpec flagged = two_rules();
    flagged.mark_mask = 0x007f0000;
    flagged.candidate = MangleSpec::Candidate{500'000'000, 0x00800000};
    CHECK(flagged.owned_bits() == 0x00ff0000);
    REQUIRE(port.ensure(Family::V4, flagged));
    CHECK(port.commits() == 2);
    auto lines = port.lines(Family::V4);
    REQUIRE(lines.size() == 6);
    CHECK(lines[2] == "-A FLOWSHAPER -j CONNMARK --restore-mark --nfmask 0x7f0000 --ctmask 0x7f0000");
    CHECK(lines[3] ==
          "-A FLOWSHAPER -m connbytes --connbytes 500000000 --connbytes-mode bytes --connbytes-dir both -j "
          "CONNMARK --set-xmark 0x800000/0x800000");
    auto read = port.read(Family::V4);
    REQUIRE(read);
    REQUIRE(read->has_value());
    CHECK(**read == flagged);
    REQUIRE(port.ensure(Family::V4, flagged));
    CHECK(port.commits() == 2);
    REQUIRE(port.ensure(Family::V4, two_rules()));
    CHECK(port.commits() == 3);
    CHECK(port.lines(Family::V4) == kTwoRulesLines);
}
