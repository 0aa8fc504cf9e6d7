// RtnlWatch against the real kernel: a burst of tc changes overflows a tiny receive buffer, and
// the watch reports the loss (lost = true) instead of silently missing deletions; a normal
// buffer sees the same burst whole. Changes are made with `tc -batch`, an independent tool.
#include <catch2/catch.hpp>
#include <fstream>

#include "flowshaper/kernel/kernel_watch.hpp"
#include "netns.hpp"

using namespace flowshaper::testing;

namespace {

// `n` HTB classes added and deleted again on dev "w0" in one tc -batch run: 2n messages (each a few KiB of
// buffer).
void tc_burst(const Netns& ns, int n) {
    std::string path = "/tmp/fs-watch-burst-" + ns.name() + ".tc";
    {
        std::ofstream out(path);
        for (int i = 1; i <= n; ++i)
            out << "class add dev w0 parent 7: classid 7:" << std::hex << i << std::dec
                << " htb rate 1mbit\n";
        for (int i = 1; i <= n; ++i)
            out << "class del dev w0 classid 7:" << std::hex << i << std::dec << "\n";
    }
    ns.exec_ok("tc -batch " + path);
    std::remove(path.c_str());
}

}  // namespace

TEST_CASE("RtnlWatch with a tiny receive buffer reports lost events after a burst of tc changes") {
    require_netns_privileges();
    Netns ns("watch");
    ns.exec_ok("ip link add w0 type veth peer name w1");
    ns.exec_ok("ip link set w0 up");
    ns.exec_ok("tc qdisc add dev w0 root handle 7: htb");
    std::optional<flowshaper::kernel::RtnlWatch> tiny, roomy;
    {
        EnterNetns in(ns);
        auto t = flowshaper::kernel::RtnlWatch::open(1);  // the kernel rounds it up to its minimum
        REQUIRE(t);
        tiny.emplace(std::move(*t));
        auto r = flowshaper::kernel::RtnlWatch::open(8 << 20);
        REQUIRE(r);
        roomy.emplace(std::move(*r));
    }
    tc_burst(ns, 50);

    auto small = tiny->drain();
    CHECK(small.lost);
    auto whole = roomy->drain();
    CHECK_FALSE(whole.lost);  // the same burst fits a big buffer: the loss above is the buffer's
    CHECK(whole.tc);

    // After the overflow the socket keeps working: one deletion is seen, and nothing is lost.
    ns.exec_ok("tc qdisc del dev w0 root");
    auto after = tiny->drain();
    CHECK(after.tc);
    CHECK_FALSE(after.lost);
}

TEST_CASE("RtnlWatch sees a link deleted and created again in its namespace only") {
    require_netns_privileges();
    Netns ns("watchlink");
    Netns other("watchother");
    std::optional<flowshaper::kernel::RtnlWatch> watch;
    {
        EnterNetns in(ns);
        auto w = flowshaper::kernel::RtnlWatch::open();
        REQUIRE(w);
        watch.emplace(std::move(*w));
    }
    other.exec_ok("ip link add o0 type veth peer name o1");
    CHECK_FALSE(watch->drain().any());  // another namespace's links are not ours
    ns.exec_ok("ip link add w0 type veth peer name w1");
    ns.exec_ok("ip link del w0");
    auto changes = watch->drain();
    CHECK(changes.link);
    CHECK_FALSE(changes.tc);
    CHECK_FALSE(changes.lost);
}
