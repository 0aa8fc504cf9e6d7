// The port that lists network devices (for `flush` and `show` without a policy).
#pragma once

#include <string>
#include <vector>

#include "flowshaper/common/result.hpp"

namespace flowshaper::kernel {

class LinkPort {
public:
    virtual ~LinkPort() = default;
    // Names of every network device in the current namespace.
    virtual Result<std::vector<std::string>> devices() = 0;
};

// libnl-route implementation.
class NetlinkLinkPort final : public LinkPort {
public:
    Result<std::vector<std::string>> devices() override;
};

class FakeLinkPort final : public LinkPort {
public:
    explicit FakeLinkPort(std::vector<std::string> names) : names_(std::move(names)) {}
    Result<std::vector<std::string>> devices() override { return names_; }

private:
    std::vector<std::string> names_;
};

}  // namespace flowshaper::kernel
