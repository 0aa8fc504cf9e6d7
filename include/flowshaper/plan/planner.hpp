// plan: Policy + heavy set -> the tc objects each device should have. Pure: no kernel, no clock.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "flowshaper/common/net.hpp"
#include "flowshaper/common/result.hpp"
#include "flowshaper/policy/policy.hpp"
#include "flowshaper/tc/features.hpp"
#include "flowshaper/tc/model.hpp"

namespace flowshaper::plan {

// A client that a [[detect]] rule found heavy: it gets a class of its own for the traffic that
// carries the rule's DSCP (u32) or its mark (fw).
struct HeavyClient {
    size_t rule_index = 0;  // into Policy::detects
    net::Address client;
    uint32_t mark = 0;  // fw classifier: the client's ctmark value (within mark_mask); else 0

    auto operator<=>(const HeavyClient&) const = default;
};

enum class ClassifierKind { U32, Fw };

// The classifier and leaf qdisc actually used once `auto` met the kernel's features.
struct Resolved {
    ClassifierKind classifier = ClassifierKind::U32;
    std::string leaf_kind = "pfifo";  // "pfifo" means: the kernel's default leaf, nothing created
    std::string leaf_reason;          // why that kind: "auto: the kernel has neither fq_codel nor sfq ..."
    uint64_t leaf_queue_ms = 100;     // bfifo: how long each leaf holds at its class's ceil
    std::vector<std::string> notes;   // why: "classifier auto -> u32: the kernel has no cls_fw"
};

Result<Resolved> resolve(const policy::Settings& settings, const tc::Features& features);

// Whom a client class serves, as typed data (the class label is only for people to read).
struct ClassOwner {
    enum class Kind { Cap, Heavy } kind = Kind::Cap;
    std::string name;                    // the [[cap]] or [[detect]] rule
    std::optional<net::Address> client;  // Heavy: the capped client
    bool operator==(const ClassOwner&) const = default;
};

struct DevicePlan {
    tc::DeviceState desired;
    std::map<tc::Handle, ClassOwner> owners;  // every client class of `desired`
    uint64_t link_rate_bits_per_s = 0;
    size_t client_classes = 0;
    size_t wide_prefixes = 0;  // prefixes that cannot be hashed and sit in the short linear list
    std::string leaf_kind;     // Resolved::leaf_kind, for `plan`
    std::string leaf_reason;   // Resolved::leaf_reason
};

struct PlanInput {
    const policy::Policy* policy = nullptr;
    std::vector<HeavyClient> heavy;
    Resolved resolved;
    // What each device has now (flowshaper's objects only). Ids already given to a client are
    // kept, so that re-planning changes nothing that did not change. Empty on a first apply.
    std::map<std::string, tc::DeviceState> observed;
};

// One plan per [[interface]], in policy order. Errors: more clients than ids, a hash bucket
// overflow, a default class that is also a parent.
Result<std::vector<DevicePlan>> make_plan(const PlanInput& input);

// The minors flowshaper uses: 1 the root class, 2 the default class, 3..0xff the policy's other
// classes (0xf5 skipped: leaf qdisc majors equal class minors), 0x100.. one per client class.
inline constexpr uint16_t kDefaultClassMinor = 2;
inline constexpr uint16_t kFirstClientMinor = 0x100;

// u32 layout: IPv4 at prio 10, IPv6 at prio 11; fw at prio 5.
inline constexpr uint16_t kPrioFw = 5;
inline constexpr uint16_t kPrioV4 = 10;
inline constexpr uint16_t kPrioV6 = 11;
inline constexpr uint32_t kTableV4Host = 0x100;      // hash on the last byte of the v4 address
inline constexpr uint32_t kTableV4Net24 = 0x101;     // hash on byte 2: prefixes /24../31
inline constexpr uint32_t kTableV4Net16 = 0x102;     // hash on byte 1: prefixes /16../23
inline constexpr uint32_t kTableV4Net8 = 0x103;      // hash on byte 0: prefixes /8../15
inline constexpr uint32_t kTableV6Host = 0x200;      // hash on the last byte of the v6 address
inline constexpr uint32_t kTableV6Net = 0x201;       // hash on byte 7: prefixes /64../127
inline constexpr uint32_t kTableV6Net48 = 0x202;     // hash on byte 5: prefixes /48../63
inline constexpr uint32_t kTableV6Net32 = 0x203;     // hash on byte 3: prefixes /32../47
inline constexpr uint32_t kFirstStaticNode = 0x800;  // heavy (DSCP) nodes come first in a bucket

// HTB bucket sizes: about 1 ms at the rate plus one full-size frame.
uint32_t burst_for(uint64_t bytes_per_s);
uint32_t quantum_for(uint64_t bytes_per_s);

}  // namespace flowshaper::plan

namespace flowshaper::plan {

// The heavy clients whose classes a device already has (u32 layout: DSCP-keyed host nodes;
// the rule is the first [[detect]] rule of the device with that DSCP). For adoption after a
// restart. The fw layout carries no address: those are adopted from conntrack marks instead.
std::vector<HeavyClient> heavy_clients_in(const policy::Policy& policy, const tc::DeviceState& state);

}  // namespace flowshaper::plan
