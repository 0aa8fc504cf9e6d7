// The per-class figures of the snapshot: each device's classes with their counters, the rate
// measured between two reads, and which policy class, cap or rule each one serves. Sums of the
// client classes per rule and per cap stay monotonic when a client's class goes away (its last
// counters are kept in the sum), as Prometheus counters must.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "flowshaper/controller/snapshot.hpp"
#include "flowshaper/kernel/tc_port.hpp"
#include "flowshaper/plan/planner.hpp"
#include "flowshaper/policy/policy.hpp"

namespace flowshaper::controller {

class TreeStats {
public:
    // The classes the tree should have (after an apply): names and owners come from the plan.
    void set_plans(const std::vector<plan::DevicePlan>& plans, const policy::Policy& policy);
    // Reads `device`'s classes and counters (now_ms: monotonic, for the rate).
    Status read(kernel::TcPort& tc, const std::string& device, uint64_t now_ms);
    void forget(const std::string& device);

    std::vector<ClassSnapshot> classes(const std::string& device) const;
    // The class the last plan gave `client` of rule `rule` on `device` ("f5:104"), or "".
    std::string heavy_class(const std::string& device, const std::string& rule,
                            const net::Address& client) const;
    // Adds the per-rule and per-cap sums to `counters`.
    void fill(Counters& counters) const;

private:
    struct Label {
        std::string name;
        ClassSnapshot::Kind kind = ClassSnapshot::Kind::Policy;
        std::string owner;
        std::optional<net::Address> client;  // Heavy
    };
    struct Seen {
        ClassSnapshot snap;
        uint64_t at_ms = 0;
    };
    void retire(const Seen& seen);

    std::map<std::string, std::map<tc::Handle, Label>> labels_;  // device -> classid -> label
    std::map<std::string, std::map<tc::Handle, Seen>> seen_;     // device -> classid -> last read
    // Counters of client classes that went away, per owner.
    std::map<std::string, uint64_t> retired_rule_bytes_, retired_rule_packets_, retired_rule_drops_;
    std::map<std::string, uint64_t> retired_cap_bytes_, retired_cap_packets_, retired_cap_drops_;
};

}  // namespace flowshaper::controller
