// The port that lists network devices (for `flush` and `show` without a policy).
#pragma once

#include <string>
#include <vector>

#include "flowshaper/common/net.hpp"
#include "flowshaper/common/result.hpp"

namespace flowshaper::kernel {

// A network device: its name and its index (a device deleted and created again under the same
// name gets a new index, and has lost its qdiscs).
struct LinkInfo {
    std::string name;
    int ifindex = 0;
    bool operator==(const LinkInfo&) const = default;
};

class LinkPort {
public:
    virtual ~LinkPort() = default;
    // Every network device in the current namespace.
    virtual Result<std::vector<LinkInfo>> links() = 0;
    // Their names.
    Result<std::vector<std::string>> devices();
    // Every address configured on this host (any device), IPv4 and IPv6: the endpoints of a
    // flow that are *not* one of these are its clients.
    virtual Result<std::vector<net::Address>> local_addresses() = 0;
};

// libnl-route implementation.
class NetlinkLinkPort final : public LinkPort {
public:
    Result<std::vector<LinkInfo>> links() override;
    Result<std::vector<net::Address>> local_addresses() override;
};

// Devices get indexes 1, 2, ... in the order they are added.
class FakeLinkPort final : public LinkPort {
public:
    explicit FakeLinkPort(std::vector<std::string> names, std::vector<net::Address> addresses = {});
    Result<std::vector<LinkInfo>> links() override { return links_; }
    Result<std::vector<net::Address>> local_addresses() override { return addresses_; }

    void add(const std::string& name);     // a new device (a new index, even for an old name)
    void remove(const std::string& name);  // the device is gone

private:
    std::vector<LinkInfo> links_;
    std::vector<net::Address> addresses_;
    int next_ifindex_ = 1;
};

}  // namespace flowshaper::kernel
