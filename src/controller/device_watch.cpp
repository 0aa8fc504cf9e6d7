#include "flowshaper/controller/device_watch.hpp"

namespace flowshaper::controller {

int DeviceWatch::ifindex(const std::string& device) const {
    auto it = index_.find(device);
    return it == index_.end() ? 0 : it->second;
}

bool DeviceWatch::refresh(const policy::Policy& policy) {
    auto links = links_.links();
    if (!links) {
        log_.warn("reading this host's devices: {}", links.error().text());
        return false;
    }
    std::map<std::string, int> now;
    for (const auto& l : *links)
        if (policy.find_interface(l.name)) now[l.name] = l.ifindex;
    bool dirty = false;
    for (const auto& iface : policy.interfaces) {
        auto was = index_.find(iface.device);
        auto is = now.find(iface.device);
        if (was != index_.end() && is == now.end()) {
            log_.warn("device {} is gone: its tree will be applied again when it comes back", iface.device);
        } else if (was == index_.end() && is != now.end()) {
            if (!first_) log_.info("device {} appeared: applying its tree", iface.device);
            dirty = true;
        } else if (was != index_.end() && is != now.end() && was->second != is->second) {
            log_.info("device {} was created again (index {} -> {}): applying its tree", iface.device,
                      was->second, is->second);
            dirty = true;
        } else if (first_ && is == now.end()) {
            log_.warn("device {} does not exist (yet): its tree is applied when it appears", iface.device);
        }
    }
    index_ = std::move(now);
    first_ = false;
    return dirty;
}

}  // namespace flowshaper::controller
