// The real TcPort: one NETLINK_ROUTE socket (libnl-route), one synchronous request/ACK per change.
//
// u32 handles with table 0 ("::n", "0:0:n") mean "in the root table the kernel created for this
// prio": the kernel numbers those tables itself (800: for the first u32 prio of the qdisc, then
// 801:, 802:, ... from a cyclic allocator, so the id depends on the qdisc's history). read()
// reports nodes of a root table with table 0 and leaves root tables out; apply() resolves table 0
// to the id the kernel gave that prio.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "flowshaper/kernel/tc_port.hpp"

namespace flowshaper::kernel {

namespace detail {
class NlSocket;
struct Target;
}  // namespace detail

class NetlinkTcPort final : public TcPort {
public:
    // Connects the socket in the calling thread's network namespace: every later call talks to
    // that namespace, whichever thread or namespace it comes from.
    static Result<std::unique_ptr<NetlinkTcPort>> open();
    ~NetlinkTcPort() override;
    NetlinkTcPort(const NetlinkTcPort&) = delete;
    NetlinkTcPort& operator=(const NetlinkTcPort&) = delete;

    Result<tc::ObservedDevice> read(const std::string& device) override;
    Status apply(const std::string& device, const tc::Change& change) override;
    Status remove_root(const std::string& device) override;
    // From /proc/config.gz, else modules.builtin and the module files, else /sys/module.
    TcFeatures features() override;
    // ethtool on a socket of the calling thread's namespace.
    uint64_t link_speed_bits_per_s(const std::string& device) override;
    uint64_t changes_sent() const override { return changes_sent_; }

    // How long removing a u32 hash table waits for the kernel to release it after its last link
    // node went away.
    static constexpr std::chrono::milliseconds kTableReleaseWait{2000};

private:
    explicit NetlinkTcPort(std::unique_ptr<detail::NlSocket> sock);
    Status apply_u32(const detail::Target& t, const tc::Change& change);
    Status remove_table_later(const detail::Target& t, const tc::U32Filter& table, Status busy);
    Result<uint32_t> root_table(const detail::Target& t, uint16_t prio, bool refresh);
    void forget_root_tables(int ifindex);

    std::unique_ptr<detail::NlSocket> sock_;
    uint64_t changes_sent_ = 0;
    std::optional<TcFeatures> features_;
    std::map<std::pair<int, uint16_t>, uint32_t> root_tables_;  // (ifindex, prio) -> table id
    // Device name -> ifindex, learned by read() and the first apply(); refreshed when the kernel
    // says the device is gone (it may have been re-created under the same name).
    std::map<std::string, int> ifindex_;
    Result<int> ifindex_of(const std::string& device, bool fresh);
    Status apply_once(const std::string& device, const tc::Change& change, bool fresh);
};

}  // namespace flowshaper::kernel
