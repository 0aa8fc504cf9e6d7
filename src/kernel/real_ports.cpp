#include "flowshaper/kernel/real_ports.hpp"

#include "flowshaper/kernel/mangle_backend.hpp"
#include "flowshaper/kernel/netlink_tc_port.hpp"

namespace flowshaper::kernel {

namespace {

// "open tc port: <what failed>", errno and detail kept.
Error opening(const char* port, Error e) {
    e.operation = std::string("open ") + port + " port: " + e.operation;
    return e;
}

}  // namespace

Result<RealPorts> open_real_ports(const RealPortsOptions& options) {
    RealPorts ports;
    auto tc = NetlinkTcPort::open();
    if (!tc) return opening("tc", tc.error());
    ports.tc = std::move(*tc);
    // flush and the other commands remove both backends' objects whichever is chosen.
    if (options.mangle) {
        auto mangle = make_mangle_port(choose_backend(options.firewall, probe_backends()).backend);
        if (!mangle) return opening("mangle", mangle.error());
        ports.mangle = std::move(*mangle);
    }
    if (options.conntrack) {
        NfctOptions nfct;
        nfct.events = options.conntrack_events;
        nfct.event_rcvbuf_bytes = options.event_rcvbuf_bytes;
        auto conntrack = make_nfct_conntrack_port(nfct);
        if (!conntrack) return opening("conntrack", conntrack.error());
        ports.conntrack = std::move(*conntrack);
    }
    ports.links = std::make_unique<NetlinkLinkPort>();
    return ports;
}

}  // namespace flowshaper::kernel
