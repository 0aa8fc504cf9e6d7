// The port through which flowshaper reads and changes a device's tc objects.
// Real implementation: NetlinkTcPort (libnl-route). Fake: FakeTcPort (in memory).
#pragma once

#include <cstdint>
#include <string>

#include "flowshaper/common/result.hpp"
#include "flowshaper/tc/features.hpp"
#include "flowshaper/tc/model.hpp"

namespace flowshaper::kernel {

// Which optional tc kinds the running kernel has (a value type plan may use: tc/features.hpp).
using TcFeatures = tc::Features;

class TcPort {
public:
    virtual ~TcPort() = default;

    // Reads the device: its root qdisc's owner, flowshaper's objects, class counters.
    // Errors: ENODEV (no such device) and netlink failures.
    virtual Result<tc::ObservedDevice> read(const std::string& device) = 0;

    // Sends one change and waits for the kernel's acknowledgement.
    // Add of an HtbQdisc replaces whatever root the device had (the caller checked it may).
    // Modify updates in place (classes keep their counters). Remove deletes by handle.
    virtual Status apply(const std::string& device, const tc::Change& change) = 0;

    // Removes flowshaper's root qdisc (and with it every class, leaf and filter below it).
    // Succeeds when there is nothing of ours.
    virtual Status remove_root(const std::string& device) = 0;

    // Which optional kinds the kernel has. Never changes anything on any device.
    virtual TcFeatures features() = 0;

    // Link speed in bits/s when the driver reports one, else 0.
    virtual uint64_t link_speed_bits_per_s(const std::string& device) = 0;

    // Number of messages that changed kernel state since construction (for tests and stats).
    virtual uint64_t changes_sent() const = 0;
};

}  // namespace flowshaper::kernel
