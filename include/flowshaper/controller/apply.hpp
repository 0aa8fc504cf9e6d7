// Reconcile: read what the kernel has, plan, diff, send only the changes; roll back on failure.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "flowshaper/common/result.hpp"
#include "flowshaper/kernel/conntrack_port.hpp"
#include "flowshaper/kernel/link_port.hpp"
#include "flowshaper/kernel/mangle_port.hpp"
#include "flowshaper/kernel/tc_port.hpp"
#include "flowshaper/plan/planner.hpp"
#include "flowshaper/policy/policy.hpp"

namespace flowshaper::controller {

struct ApplyOptions {
    bool force = false;    // replace a root qdisc flowshaper did not create
    bool dry_run = false;  // plan and diff, send nothing
    // The heavy clients to keep classes for. Unset (the `apply` command): the ones the devices
    // already have stay, so that an apply while the daemon runs lifts no cap.
    std::optional<std::vector<plan::HeavyClient>> heavy;
    // Only these devices of the policy (the daemon reconciles each device on its own, so that
    // one device that is gone does not hold up the others). Unset: every device.
    std::optional<std::vector<std::string>> devices;
    // What this process applied last, per device (the daemon remembers it): a client filter
    // someone deleted is put back pointing at the client's class it had, whose id and counters
    // survive, instead of the client getting a new class (the kernel names a class's client only
    // through its filter).
    const std::map<std::string, tc::DeviceState>* remembered = nullptr;
};

struct DeviceOutcome {
    std::string device;
    std::vector<tc::Change> changes;  // sent (or, in a dry run, that would be sent)
    bool created_root = false;
};

struct ApplyReport {
    std::vector<DeviceOutcome> devices;
    std::map<std::string, tc::DeviceState> desired;  // what each device has now (after the apply)
    std::vector<std::string> notes;
    size_t changes_sent = 0;
};

// Validates against the kernel first (devices exist, roots may be replaced, kinds exist), then
// sends the changes device by device. On a kernel error every device touched by this call is
// brought back to what it had (a root flowshaper created is removed again) and the error says
// which change failed. Whatever a failed rollback leaves, the next apply converges.
Result<ApplyReport> apply_policy(const policy::Policy& policy, kernel::TcPort& port,
                                 const ApplyOptions& options);

// Plans without sending: the same checks as apply, for `plan` on a live system.
Result<std::vector<plan::DevicePlan>> plan_policy(const policy::Policy& policy, kernel::TcPort& port,
                                                  const std::vector<plan::HeavyClient>& heavy,
                                                  std::vector<std::string>* notes);

struct FlushReport {
    std::vector<std::string> devices;  // where flowshaper's root was removed
    bool mangle_removed = false;       // flowshaper's mangle chain was there and is gone
    size_t marks_cleared = 0;          // connections whose flowshaper ctmark bits were cleared
};

// Removes flowshaper's root qdisc (with everything below it) from the given devices, or from
// every device when `devices` is empty. Nothing that is not flowshaper's is touched.
Result<FlushReport> flush(kernel::TcPort& port, kernel::LinkPort& links,
                          const std::vector<std::string>& devices);

// The same, and also flowshaper's mangle chains (IPv4 and IPv6) and its bits in every
// connection's ctmark (the mask is read back from the chain's restore rule).
Result<FlushReport> flush_all(kernel::TcPort& port, kernel::LinkPort& links, kernel::ManglePort& mangle,
                              kernel::ConntrackPort& conntrack, const std::vector<std::string>& devices);

}  // namespace flowshaper::controller
