// Internal to the kernel module: building and reading tc objects with libnl-route. One function
// per object kind and operation; NetlinkTcPort dispatches to them.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "flowshaper/common/result.hpp"
#include "flowshaper/kernel/tc_port.hpp"
#include "flowshaper/tc/model.hpp"
#include "nl_socket.hpp"

namespace flowshaper::kernel::detail {

// The device a request is about.
struct Target {
    NlSocket& sock;
    int ifindex = 0;
    std::string device;
};

// Resolves a device name in the socket's namespace. ENODEV -> "no such device".
Result<int> resolve_ifindex(NlSocket& sock, const std::string& device);

// --- qdiscs and classes (nl_htb.cpp) --------------------------------------------------------

// What the root qdisc of the device is; fills `ours` when it is flowshaper's htb, and `below_ours`
// with every qdisc whose parent is a class of major kMajor (the caller keeps those of its classes).
Result<tc::RootInfo> read_qdiscs(const Target& t, std::optional<tc::HtbQdisc>& ours,
                                 std::vector<tc::LeafQdisc>& below_ours);
// flowshaper's classes (major kMajor) and their counters.
Status read_classes(const Target& t, tc::DeviceState& state, std::vector<tc::ClassStats>& stats);

Status apply_root(const Target& t, tc::Change::Op op, const tc::HtbQdisc& q);
Status apply_class(const Target& t, tc::Change::Op op, const tc::HtbClass& c);
// `has_kind` false: the kernel was found to lack the leaf's kind (used for the error text).
Status apply_leaf(const Target& t, tc::Change::Op op, const tc::LeafQdisc& l, bool has_kind);

// --- filters (nl_filters.cpp) -----------------------------------------------------------------

struct FilterDump {
    std::vector<tc::U32Filter> u32;  // nodes of a prio's root table carry table 0 in their handle
    std::vector<tc::FwFilter> fw;
    std::map<uint16_t, uint32_t> root_tables;  // prio -> the table id (12 bits) the kernel gave it
};

// Every u32 and fw filter attached to flowshaper's root qdisc (chain 0).
Result<FilterDump> read_filters(const Target& t);

// `root_table`: the 12-bit id of the prio's root table when the node's handle says table 0;
// 0 when no filter exists yet at that prio (the kernel then creates the prio and its root table).
Status apply_u32(const Target& t, tc::Change::Op op, const tc::U32Filter& f, uint32_t root_table);
// `has_fw` false: the kernel was found to lack cls_fw (turns ENOENT into the clear message).
Status apply_fw(const Target& t, tc::Change::Op op, const tc::FwFilter& f, bool has_fw);

// --- features (tc_features.cpp) -------------------------------------------------------------

// Where features() looks; tests point these at files of their own.
struct FeatureSources {
    std::string config_gz = "/proc/config.gz";
    std::string modules_dir;  // "/lib/modules/<uname -r>"; empty: derived from uname
    std::string sys_module = "/sys/module";
};
TcFeatures probe_features(const FeatureSources& sources);

// ETHTOOL_GLINKSETTINGS, then ETHTOOL_GSET, on a socket of the calling thread's namespace.
uint64_t ethtool_speed_bits_per_s(const std::string& device);

}  // namespace flowshaper::kernel::detail
