// In-memory TcPort for logic tests: keeps the kernel's rules that matter to flowshaper (parents
// before children, EBUSY for referenced classes, ENOENT for missing tables and kinds) and can be
// told to fail a chosen change.
#pragma once

#include <functional>
#include <map>
#include <vector>

#include "flowshaper/kernel/tc_port.hpp"

namespace flowshaper::kernel {

class FakeTcPort final : public TcPort {
public:
    FakeTcPort();

    // A device with the kernel's default root (noqueue), or a foreign one.
    void add_device(const std::string& device,
                    tc::RootInfo root = {tc::RootInfo::Owner::KernelDefault, "noqueue", 0});
    // The device is gone, and with it everything on it (as when a link is deleted).
    void remove_device(const std::string& device) { devices_.erase(device); }
    void set_features(TcFeatures features) { features_ = std::move(features); }
    // The n-th change from now (0 = the next one) fails with `err`.
    void fail_change(uint64_t nth, int err);
    // Every change for which `pred` is true fails with `err`.
    void fail_when(std::function<bool(const tc::Change&)> pred, int err);

    // Every change sent, in order (for assertions).
    const std::vector<tc::Change>& log() const { return log_; }
    const tc::DeviceState* state(const std::string& device) const;
    // Adds traffic to a class's counters, as packets would.
    void count(const std::string& device, tc::Handle classid, uint64_t bytes, uint64_t packets);

    Result<tc::ObservedDevice> read(const std::string& device) override;
    Status apply(const std::string& device, const tc::Change& change) override;
    Status remove_root(const std::string& device) override;
    TcFeatures features() override { return features_; }
    uint64_t link_speed_bits_per_s(const std::string&) override { return 10'000'000'000ull; }
    uint64_t changes_sent() const override { return log_.size(); }

private:
    struct Device {
        int ifindex = 0;
        tc::RootInfo root;
        tc::DeviceState state;
        std::map<tc::Handle, tc::ClassStats> stats;
    };
    Status check(Device& dev, const tc::Change& change) const;
    void commit(Device& dev, const tc::Change& change);

    std::map<std::string, Device> devices_;
    TcFeatures features_;
    std::vector<tc::Change> log_;
    uint64_t attempts_ = 0;
    std::map<uint64_t, int> fail_at_;
    std::vector<std::pair<std::function<bool(const tc::Change&)>, int>> fail_preds_;
};

}  // namespace flowshaper::kernel
