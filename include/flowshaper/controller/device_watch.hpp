// Which of the policy's devices exist and under which index. A device that appears, or that is
// created again (a new index: the kernel dropped its qdiscs), needs its tree applied; one that
// goes away keeps its place in the policy and gets its tree back when it returns.
#pragma once

#include <spdlog/logger.h>

#include <map>
#include <string>
#include <vector>

#include "flowshaper/kernel/link_port.hpp"
#include "flowshaper/policy/policy.hpp"

namespace flowshaper::controller {

class DeviceWatch {
public:
    DeviceWatch(kernel::LinkPort& links, spdlog::logger& log) : links_(links), log_(log) {}

    // Forget what was seen: the next refresh() reports devices that are missing at warning level,
    // as at start (a new policy).
    void restart() {
        index_.clear();
        first_ = true;
    }
    // Reads the host's devices; returns true when a device of `policy` needs its tree applied
    // (appeared or created again). A failed read changes nothing and returns false.
    bool refresh(const policy::Policy& policy);

    bool present(const std::string& device) const { return index_.count(device) != 0; }
    int ifindex(const std::string& device) const;
    size_t count() const { return index_.size(); }

private:
    kernel::LinkPort& links_;
    spdlog::logger& log_;
    std::map<std::string, int> index_;  // the policy's devices that exist, and their index
    bool first_ = true;
};

}  // namespace flowshaper::controller
