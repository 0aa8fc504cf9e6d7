// Helpers of the NetlinkTcPort tests: the reference DeviceState, independent readings of the kernel
// through `tc` (JSON where tc prints it, text for classes: iproute2 6.1 prints no JSON for
// `tc class show`), and test traffic from the server namespace.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "flowshaper/kernel/netlink_tc_port.hpp"
#include "flowshaper/tc/model.hpp"
#include "netns.hpp"

namespace flowshaper::testing {

// Layout facts of the plan module, repeated here so these tests stand alone.
inline constexpr uint16_t kPrioV4 = 10;
inline constexpr uint16_t kPrioV6 = 11;
inline constexpr uint32_t kTableV4 = 0x100;
inline constexpr uint32_t kTableV6Host = 0x200;
inline constexpr uint32_t kTableV6Net = 0x201;

// Classes of the reference state.
inline constexpr tc::Handle kDefault = tc::make_handle(tc::kMajor, 2);
inline constexpr tc::Handle kInner = tc::make_handle(tc::kMajor, 3);
inline constexpr tc::Handle kHostV4 = tc::make_handle(tc::kMajor, 0x100);   // 10.200.0.2, under kInner
inline constexpr tc::Handle kHostV6 = tc::make_handle(tc::kMajor, 0x101);   // fd00:200::2
inline constexpr tc::Handle kNetV6 = tc::make_handle(tc::kMajor, 0x102);    // fd00:300::/64
inline constexpr tc::Handle kHeavyV4 = tc::make_handle(tc::kMajor, 0x103);  // 10.200.0.3 with DSCP CS1
inline constexpr tc::Handle kWideV4 = tc::make_handle(tc::kMajor, 0x104);   // 10.201.0.0/16, root table

tc::HtbClass htb_class(tc::Handle id, tc::Handle parent, uint64_t rate_mbit, uint64_t ceil_mbit);
tc::U32Filter u32_table(uint16_t prio, uint16_t protocol, uint32_t table);
tc::U32Filter u32_link(uint16_t prio, uint16_t protocol, uint32_t node, uint32_t table, int32_t hash_offset);
tc::U32Filter u32_match(uint16_t prio, uint16_t protocol, uint32_t handle, std::vector<tc::U32Key> keys,
                        tc::Handle classid);

// Root, root class, 7 classes (two levels below the root class), a pfifo leaf, IPv4 and IPv6
// hash tables, their links, and match nodes: v4 host, v6 host, v6 /64, DSCP-keyed v4 host, and a
// v4 /16 in the root table.
tc::DeviceState reference_state();
// The Add changes that build `s`, parents first, tables before links.
std::vector<tc::Change> build_changes(const tc::DeviceState& s);
// The Remove changes that take it apart again, children first, the root left in place.
std::vector<tc::Change> teardown_changes(const tc::DeviceState& s);

// `tc class show` (text), one entry per class: "rate"/"ceil" as tc prints them ("5Mbit"),
// "parent" ("root" or a handle), "leaf", "bytes", "packets".
std::map<std::string, std::map<std::string, std::string>> tc_classes(const Netns& ns, const std::string& dev);
// `tc -j filter show` with each u32 key as "match0", "match1", ... (tc repeats the "match" key).
nlohmann::json tc_filters(const Netns& ns, const std::string& dev);
nlohmann::json tc_qdiscs(const Netns& ns, const std::string& dev);
// The filter whose "fh" is `fh`, or null.
nlohmann::json find_fh(const nlohmann::json& filters, const std::string& fh);

// Sends `count` UDP datagrams to `address` (v4 or v6) from the calling thread's namespace, with
// the given DSCP (-1: none). Returns how many sendto() accepted.
int send_udp(const std::string& address, int count, int dscp = -1);

// A veth pair and a NetlinkTcPort opened inside the server namespace (the test thread stays
// there while the fixture lives).
struct PortFixture {
    PortFixture();
    VethPair net;
    EnterNetns inside;
    std::unique_ptr<kernel::NetlinkTcPort> port;
    const std::string dev = VethPair::kServerDev;

    void apply_all(const std::vector<tc::Change>& changes);
};

}  // namespace flowshaper::testing
