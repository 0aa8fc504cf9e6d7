// NetlinkTcPort: whose root a device has, removing flowshaper's root, the kernel's features, the
// fw classifier and fq_codel leaves (built where the kernel has them, a clear error where not),
// link speed, and packets landing in the right class.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdlib>
#include <fstream>

#include "kernel_has.hpp"
#include "nl_tc.hpp"
#include "tc_check.hpp"

using namespace flowshaper;
using namespace flowshaper::testing;
using tc::Change;
using Owner = tc::RootInfo::Owner;

namespace {

uint64_t packets_of(const tc::ObservedDevice& d, tc::Handle id) {
    for (const auto& s : d.stats)
        if (s.classid == id) return s.packets;
    FAIL("no stats for " << tc::format_handle(id));
    return 0;
}

std::map<tc::Handle, uint64_t> all_packets(kernel::NetlinkTcPort& port, const std::string& dev) {
    auto d = port.read(dev);
    REQUIRE(d.ok());
    std::map<tc::Handle, uint64_t> out;
    for (const auto& s : d->stats) out[s.classid] = s.packets;
    return out;
}

// Sends `count` datagrams and checks that exactly `target` (among the leaf classes) counted them.
void check_lands_in(PortFixture& fx, const std::string& address, int dscp, tc::Handle target) {
    INFO("traffic to " << address << " dscp " << dscp << " should land in " << tc::format_handle(target));
    auto before = all_packets(*fx.port, fx.dev);
    REQUIRE(send_udp(address, 20, dscp) == 20);
    auto after = all_packets(*fx.port, fx.dev);
    CHECK(after[target] >= before[target] + 20);
    for (tc::Handle leaf : {kHostV4, kHostV6, kNetV6, kHeavyV4, kWideV4}) {
        INFO("class " << tc::format_handle(leaf));
        if (leaf != target) CHECK(after[leaf] == before[leaf]);
    }
    // tc agrees on the target's counter.
    auto tc_view = tc_classes(fx.net.server, fx.dev)[tc::format_handle(target)];
    CHECK(std::stoull(tc_view["packets"]) == after[target]);
}

}  // namespace

TEST_CASE("a fresh veth has the kernel's default root and nothing of ours", "[kernel][tc]") {
    PortFixture fx;
    auto got = fx.port->read(fx.dev);
    REQUIRE(got.ok());
    CHECK(got->ifindex > 0);
    CHECK(got->root_info.owner == Owner::KernelDefault);
    CHECK(got->root_info.kind == "noqueue");
    CHECK(got->root_info.handle == 0);
    CHECK_FALSE(got->state.root.has_value());
    CHECK(got->state.classes.empty());
    REQUIRE(fx.port->remove_root(fx.dev).ok());  // nothing of ours: nothing done
    CHECK(fx.port->changes_sent() == 0);
}

TEST_CASE("remove_root deletes our root and the kernel's default comes back", "[kernel][tc]") {
    PortFixture fx;
    fx.apply_all(build_changes(reference_state()));
    REQUIRE(fx.port->read(fx.dev)->root_info.owner == Owner::Ours);
    REQUIRE(fx.port->remove_root(fx.dev).ok());
    auto got = fx.port->read(fx.dev);
    REQUIRE(got.ok());
    CHECK(got->root_info.owner == Owner::KernelDefault);
    CHECK(got->root_info.kind == "noqueue");
    auto qdiscs = tc_qdiscs(fx.net.server, fx.dev);
    REQUIRE(qdiscs.size() == 1);
    CHECK(qdiscs[0].value("kind", "") == "noqueue");
    CHECK(tc_filters(fx.net.server, fx.dev).empty());
}

TEST_CASE("someone else's root reads as foreign and remove_root leaves it alone", "[kernel][tc]") {
    PortFixture fx;
    const char* roots[] = {"root handle 1: htb default 10",
                           "root handle 2: tbf rate 1mbit burst 10kb latency 50ms"};
    for (const char* root : roots) {
        INFO(root);
        fx.net.server.exec_ok(std::string("tc qdisc replace dev veth-s ") + root);
        fx.net.server.exec_ok(
            "tc class add dev veth-s parent 1: classid 1:10 htb rate 1mbit 2>/dev/null || true");
        auto got = fx.port->read(fx.dev);
        REQUIRE(got.ok());
        CHECK(got->root_info.owner == Owner::Foreign);
        CHECK_FALSE(got->state.root.has_value());
        CHECK(got->state.classes.empty());
        REQUIRE(fx.port->remove_root(fx.dev).ok());
        auto still = tc_qdiscs(fx.net.server, fx.dev);
        REQUIRE(!still.empty());
        CHECK(still[0].value("root", false));
        CHECK(still[0].value("kind", "") == got->root_info.kind);
    }
    CHECK(fx.port->changes_sent() == 0);
}

TEST_CASE("the htb root cannot be modified in place and says why", "[kernel][tc]") {
    PortFixture fx;
    fx.apply_all(build_changes(reference_state()));
    Status st = fx.port->apply(fx.dev, {Change::Op::Modify, tc::HtbQdisc{tc::kRootQdisc, kInner, 10}});
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == EOPNOTSUPP);
    CHECK(st.error().detail.find("recreated") != std::string::npos);
}

TEST_CASE("features() answers what the kernel's config and modules say, touching no device", "[kernel][tc]") {
    PortFixture fx;
    auto f = fx.port->features();
    INFO("features source: " << f.source);
    CHECK(f.cls_fw == kernel_has("CONFIG_NET_CLS_FW", "cls_fw"));
    CHECK(f.fq_codel == kernel_has("CONFIG_NET_SCH_FQ_CODEL", "sch_fq_codel"));
    CHECK(f.sfq == kernel_has("CONFIG_NET_SCH_SFQ", "sch_sfq"));
    struct stat st {};
    if (::stat("/proc/config.gz", &st) == 0)
        CHECK(f.source == "/proc/config.gz");
    else  // a distribution kernel: its modules directory answers
        CHECK(f.source.find("/lib/modules/") != std::string::npos);
    // Nothing changed on the device.
    CHECK(fx.port->read(fx.dev)->root_info.owner == Owner::KernelDefault);
}

TEST_CASE("features() falls back to modules.builtin and module files, else says unknown", "[kernel][tc]") {
    char dir_template[] = "/tmp/fst-features-XXXXXX";
    REQUIRE(mkdtemp(dir_template) != nullptr);
    std::string dir = dir_template;
    std::string modules = dir + "/modules";
    REQUIRE(system(("mkdir -p " + modules + "/kernel/net/sched " + dir + "/sys/module/sch_sfq").c_str()) ==
            0);
    std::ofstream(modules + "/modules.builtin")
        << "kernel/net/sched/cls_u32.ko\nkernel/net/sched/cls_fw.ko\n";
    std::ofstream(modules + "/kernel/net/sched/sch_fq_codel.ko.xz") << "";

    kernel::detail::FeatureSources sources{dir + "/no-config.gz", modules, dir + "/sys/module"};
    auto f = kernel::detail::probe_features(sources);
    CHECK(f.cls_fw);    // built in
    CHECK(f.fq_codel);  // a module file
    CHECK(f.sfq);       // loaded
    CHECK(f.source.find("modules.builtin") != std::string::npos);
    CHECK(f.source.find("/sys/module") != std::string::npos);

    kernel::detail::FeatureSources nothing{dir + "/no-config.gz", dir + "/no-modules", dir + "/no-sys"};
    auto unknown = kernel::detail::probe_features(nothing);
    CHECK_FALSE(unknown.cls_fw);
    CHECK_FALSE(unknown.fq_codel);
    CHECK_FALSE(unknown.sfq);
    CHECK(unknown.source.rfind("unknown", 0) == 0);
    REQUIRE(system(("rm -rf " + dir).c_str()) == 0);
}

TEST_CASE("a fw filter is built where the kernel has cls_fw, else fails with the clear message",
          "[kernel][tc]") {
    PortFixture fx;
    fx.apply_all(build_changes(reference_state()));
    tc::FwFilter fw{5, tc::kEthPAll, 0x00010000, 0x00ff0000, kHostV4, "cap"};
    Status st = fx.port->apply(fx.dev, {Change::Op::Add, fw});
    if (kernel_has("CONFIG_NET_CLS_FW", "cls_fw")) {
        INFO((st.ok() ? std::string() : st.error().text()));
        REQUIRE(st.ok());
        auto got = fx.port->read(fx.dev);
        REQUIRE(got.ok());
        REQUIRE(got->state.fw.size() == 1);
        CHECK(got->state.fw[0].same_config(fw));
        // tc sees a fw filter with that handle and mask leading to the class.
        const std::string text = fx.net.server.exec_ok("tc filter show dev " + fx.dev + " parent f5:");
        INFO(text);
        CHECK(text.find("fw") != std::string::npos);
        CHECK(text.find("handle 0x10000/0xff0000") != std::string::npos);
        CHECK(text.find("classid f5:100") != std::string::npos);
        CHECK(fx.port->apply(fx.dev, {Change::Op::Remove, fw}).ok());
        CHECK(fx.port->read(fx.dev)->state.fw.empty());
        return;
    }
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == ENOENT);
    CHECK(st.error().detail == "the kernel has no cls_fw (CONFIG_NET_CLS_FW); use classifier = \"u32\"");
    CHECK(fx.port->read(fx.dev)->state.fw.empty());
}

TEST_CASE("an fq_codel leaf is built where the kernel has it, else fails with a clear message",
          "[kernel][tc]") {
    PortFixture fx;
    fx.apply_all(build_changes(reference_state()));
    tc::LeafQdisc leaf{kHostV6, tc::make_handle(0x101, 0), "fq_codel", 0};
    Status st = fx.port->apply(fx.dev, {Change::Op::Add, leaf});
    if (kernel_has("CONFIG_NET_SCH_FQ_CODEL", "sch_fq_codel")) {
        INFO((st.ok() ? std::string() : st.error().text()));
        REQUIRE(st.ok());
        bool seen = false;
        for (const auto& q : tc_qdiscs(fx.net.server, fx.dev))
            if (q.value("kind", "") == "fq_codel" && q.value("parent", "") == "f5:101") seen = true;
        CHECK(seen);
        return;
    }
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == ENOENT);
    CHECK(st.error().detail.find("CONFIG_NET_SCH_FQ_CODEL") != std::string::npos);
}

TEST_CASE("link speed of a veth is its reported 10 Gbit/s, unknown devices 0", "[kernel][tc]") {
    PortFixture fx;
    CHECK(fx.port->link_speed_bits_per_s(fx.dev) == 10'000'000'000ull);
    CHECK(fx.port->link_speed_bits_per_s("fst-nonexistent") == 0);
    CHECK(fx.port->link_speed_bits_per_s("lo") == 0);
}

TEST_CASE("packets to a client land in its class and in no other", "[kernel][tc]") {
    PortFixture fx;
    fx.apply_all(build_changes(reference_state()));
    fx.net.add_client_address("10.200.0.3/24");
    fx.net.server.exec_ok("ip route add 10.201.0.0/16 via 10.200.0.2");
    fx.net.server.exec_ok("ip -6 route add fd00:300::/64 via fd00:200::2");
    send_udp("10.200.0.3", 3);  // resolve the neighbours before counting
    send_udp("fd00:200::2", 3);

    SECTION("IPv4 host") {
        check_lands_in(fx, VethPair::kClientV4, -1, kHostV4);
    }
    SECTION("IPv6 host") {
        check_lands_in(fx, VethPair::kClientV6, -1, kHostV6);
    }
    SECTION("IPv6 /64 through the byte-7 table") {
        check_lands_in(fx, "fd00:300::1234", -1, kNetV6);
    }
    SECTION("IPv4 with the rule's DSCP") {
        check_lands_in(fx, "10.200.0.3", 8, kHeavyV4);
    }
    SECTION("IPv4 without the DSCP goes to the default class") {
        check_lands_in(fx, "10.200.0.3", -1, kDefault);
    }
    SECTION("IPv4 /16 in the root table, after the hash found nothing") {
        check_lands_in(fx, "10.201.7.9", -1, kWideV4);
    }
    auto d = fx.port->read(fx.dev);
    REQUIRE(d.ok());
    CHECK(packets_of(*d, tc::kRootClass) > 0);
}
