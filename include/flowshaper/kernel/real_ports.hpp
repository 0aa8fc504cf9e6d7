// The one place where the real kernel ports are opened (the CLI's commands and the daemon), each
// bound to the network namespace of the calling thread.
#pragma once

#include <memory>

#include "flowshaper/common/result.hpp"
#include "flowshaper/kernel/conntrack_port.hpp"
#include "flowshaper/kernel/link_port.hpp"
#include "flowshaper/kernel/mangle_port.hpp"
#include "flowshaper/kernel/tc_port.hpp"
#include "flowshaper/policy/policy.hpp"

namespace flowshaper::kernel {

// Owns the real ports. `mangle` and `conntrack` are null when RealPortsOptions said so; `tc`
// and `links` are never null.
struct RealPorts {
    std::unique_ptr<TcPort> tc;                // NetlinkTcPort (libnl-route)
    std::unique_ptr<ManglePort> mangle;        // nftables or libiptc (mangle_backend.hpp)
    std::unique_ptr<ConntrackPort> conntrack;  // libnetfilter_conntrack
    std::unique_ptr<LinkPort> links;           // NetlinkLinkPort (libnl-route)
};

struct RealPortsOptions {
    // Open the mangle port (`plan`, `apply` and `show` do not touch the firewall).
    bool mangle = true;
    // Open the conntrack port (`plan`, `apply` and `show` need only tc and links; the netlink
    // sockets the conntrack port opens need CAP_NET_ADMIN to be of any use).
    bool conntrack = true;
    // With its event socket (NEW/DESTROY), which only the daemon reads.
    bool conntrack_events = true;
    // Its receive buffer (flow export wants every DESTROY event: 16 MiB takes 10,000 new
    // connections per second without loss here).
    uint32_t event_rcvbuf_bytes = 4 * 1024 * 1024;
    // Which mangle backend (policy settings.firewall; auto probes). Either removes both's objects.
    policy::Firewall firewall = policy::Firewall::Auto;
};

// Opens every port asked for, or none: the error names the port that could not be opened (the
// operation, e.g. "open tc port: open netlink socket NETLINK_ROUTE"), keeps its errno in
// Error::code, and says "needs CAP_NET_ADMIN" where that is why.
Result<RealPorts> open_real_ports(const RealPortsOptions& options = {});

}  // namespace flowshaper::kernel
