// `show`: the live tree with per-class counters and current rates, read from the kernel.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "flowshaper/common/result.hpp"
#include "flowshaper/kernel/link_port.hpp"
#include "flowshaper/kernel/tc_port.hpp"

namespace flowshaper::controller {

struct ClassView {
    tc::HtbClass cls;
    tc::ClassStats stats;
    uint64_t rate_bits_per_s = 0;  // measured over the sampling interval
    std::string what;              // "client 203.0.113.7", "heavy 10.0.0.9 dscp 8", "root", ...
    bool is_default = false;
};

struct DeviceView {
    std::string device;
    std::vector<ClassView> classes;  // parents before children
    size_t match_filters = 0;
    size_t fw_filters = 0;
    std::vector<std::string> leaf_kinds;
};

// Reads flowshaper's devices (the given ones, or every device with flowshaper's root) twice,
// `sample_ms` apart, to measure each class's current rate (no second read when 0).
Result<std::vector<DeviceView>> collect_status(kernel::TcPort& port, kernel::LinkPort& links,
                                               const std::vector<std::string>& devices, uint64_t sample_ms);

std::string render_status(const std::vector<DeviceView>& views);
nlohmann::json status_json(const std::vector<DeviceView>& views);

}  // namespace flowshaper::controller
