// The port that lists network devices (for `flush` and `show` without a policy).
#pragma once

#include <string>
#include <vector>

#include "flowshaper/common/net.hpp"
#include "flowshaper/common/result.hpp"

namespace flowshaper::kernel {

class LinkPort {
public:
    virtual ~LinkPort() = default;
    // Names of every network device in the current namespace.
    virtual Result<std::vector<std::string>> devices() = 0;
    // Every address configured on this host (any device), IPv4 and IPv6: the endpoints of a
    // flow that are *not* one of these are its clients.
    virtual Result<std::vector<net::Address>> local_addresses() = 0;
};

// libnl-route implementation.
class NetlinkLinkPort final : public LinkPort {
public:
    Result<std::vector<std::string>> devices() override;
    Result<std::vector<net::Address>> local_addresses() override;
};

class FakeLinkPort final : public LinkPort {
public:
    explicit FakeLinkPort(std::vector<std::string> names, std::vector<net::Address> addresses = {})
        : names_(std::move(names)), addresses_(std::move(addresses)) {}
    Result<std::vector<std::string>> devices() override { return names_; }
    Result<std::vector<net::Address>> local_addresses() override { return addresses_; }

private:
    std::vector<std::string> names_;
    std::vector<net::Address> addresses_;
};

}  // namespace flowshaper::kernel
