// The parts of the conntrack port shared by every implementation.
#include "flowshaper/kernel/conntrack_port.hpp"

namespace flowshaper::kernel {

bool FlowSample::same_tuple(const FlowSample& o) const {
    return family == o.family && l4proto == o.l4proto && orig_src == o.orig_src && orig_dst == o.orig_dst &&
           orig_sport == o.orig_sport && orig_dport == o.orig_dport;
}

bool DumpFilter::matches(const FlowSample& flow, bool assured) const {
    if (family && flow.family != *family) return false;
    if (mark && (flow.mark & mark->mask) != mark->value) return false;
    return !assured_only || assured;
}

Result<std::vector<FlowSample>> ConntrackPort::dump_all(const DumpFilter& filter) {
    std::vector<FlowSample> flows;
    Status s = dump(filter, [&](const FlowSample& f) { flows.push_back(f); });
    if (!s) return s.error();
    return flows;
}

}  // namespace flowshaper::kernel
