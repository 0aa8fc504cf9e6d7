// Without CAP_NET_ADMIN the kernel refuses flowshaper's changes: the ports must pass its EPERM on
// as EPERM and say what is missing (a libnl code stored as an errno once turned it into ENOSPC).
// The refusal itself is checked with the same tools run without the capability.
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <thread>

#include "flowshaper/kernel/conntrack_port.hpp"
#include "flowshaper/kernel/link_port.hpp"
#include "tc_check.hpp"

using namespace flowshaper;
using namespace flowshaper::testing;

namespace {

// Clears CAP_NET_ADMIN from the calling thread's effective set (capabilities are per thread:
// the rest of the test process keeps it).
void drop_net_admin_of_this_thread() {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    REQUIRE(syscall(SYS_capget, &header, data) == 0);
    data[CAP_TO_INDEX(CAP_NET_ADMIN)].effective &= ~CAP_TO_MASK(CAP_NET_ADMIN);
    REQUIRE(syscall(SYS_capset, &header, data) == 0);
}

// Runs `body` on a thread inside `ns` that lacks CAP_NET_ADMIN.
template <typename Body>
void without_net_admin(const Netns& ns, Body body) {
    std::thread worker([&] {
        EnterNetns inside(ns);
        drop_net_admin_of_this_thread();
        body();
    });
    worker.join();
}

bool says_cap_net_admin(const Error& e) {
    return e.text().find("needs CAP_NET_ADMIN") != std::string::npos;
}

}  // namespace

TEST_CASE("without CAP_NET_ADMIN a tc change fails with EPERM and says what is missing", "[kernel][tc]") {
    require_netns_privileges();
    VethPair net("priv");
    Status st;
    bool listed = false;
    without_net_admin(net.server, [&] {
        auto port = kernel::NetlinkTcPort::open();
        REQUIRE(port.ok());
        st = (*port)->apply(VethPair::kServerDev, {tc::Change::Op::Add, tc::HtbQdisc{tc::kRootQdisc, 0, 10}});
        kernel::NetlinkLinkPort links;  // reading needs no privilege
        auto all = links.links();
        listed = all.ok() && !all->empty();
    });
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == EPERM);
    CHECK(says_cap_net_admin(st.error()));
    CHECK(listed);
    // The kernel refuses tc itself the same way, and nothing was created.
    std::string out;
    CHECK(net.server.exec("setpriv --bounding-set=-net_admin --inh-caps=-net_admin tc qdisc add dev " +
                              std::string(VethPair::kServerDev) + " root handle f5: htb 2>&1",
                          &out) != 0);
    CHECK(out.find("Operation not permitted") != std::string::npos);
    CHECK(tc_qdiscs(net.server, VethPair::kServerDev).dump().find("\"htb\"") == std::string::npos);
}

TEST_CASE("without CAP_NET_ADMIN a conntrack dump fails with EPERM and says what is missing",
          "[kernel][conntrack]") {
    require_netns_privileges();
    Netns ns("priv-ct");
    Status st;
    without_net_admin(ns, [&] {
        auto port = kernel::make_nfct_conntrack_port({false});
        REQUIRE(port.ok());
        st = (*port)->dump({}, [](const kernel::FlowSample&) {});
    });
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == EPERM);
    CHECK(says_cap_net_admin(st.error()));
    std::string out;
    CHECK(ns.exec("setpriv --bounding-set=-net_admin --inh-caps=-net_admin conntrack -L 2>&1", &out) != 0);
    CHECK(out.find("CAP_NET_ADMIN") != std::string::npos);  // conntrack-tools says EPERM this way
}
