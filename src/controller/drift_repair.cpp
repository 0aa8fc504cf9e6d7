#include "flowshaper/controller/drift_repair.hpp"

namespace flowshaper::controller {

DriftRepair::DriftRepair(EventLoop& loop, Daemon& daemon, kernel::ManglePort& mangle, spdlog::logger& log,
                         DriftOptions options)
    : loop_(loop), daemon_(daemon), mangle_(mangle), log_(log), guard_(options) {}

std::optional<uint64_t> DriftRepair::mangle_fingerprint() const {
    if (mangle_.backend() != "iptables") return std::nullopt;
    auto v4 = kernel::legacy_mangle_fingerprint(net::Family::V4);
    auto v6 = kernel::legacy_mangle_fingerprint(net::Family::V6);
    if (!v4 && !v6) return std::nullopt;
    return v4.value_or(0) * 1000003u ^ v6.value_or(0);
}

Status DriftRepair::open(int rcvbuf) {
    auto watch = kernel::RtnlWatch::open(rcvbuf);
    if (!watch) return watch.error();
    rtnl_.emplace(std::move(*watch));
    auto st = loop_.add_fd(rtnl_->fd(), EPOLLIN, [this](uint32_t) {
        auto changes = rtnl_->drain();
        if (changes.lost)
            schedule("rtnetlink events were lost");
        else if (changes.any())
            schedule(changes.tc ? "a qdisc, class or filter changed" : "a link changed");
    });
    if (!st) return st;
    if (int fd = mangle_.change_fd(); fd >= 0) {
        st = loop_.add_fd(fd, EPOLLIN, [this](uint32_t) {
            if (mangle_.drain_changes()) schedule("the nftables ruleset changed");
        });
        if (!st) return st;
    }
    fingerprint_ = mangle_fingerprint();
    guard_.full_checked(loop_.now_ms());
    return {};
}

void DriftRepair::schedule(const std::string& why) {
    if (why_.empty()) why_ = why;
    if (pending_) return;  // one repair covers every trigger before it runs
    uint64_t now = loop_.now_ms();
    uint64_t at = guard_.on_trigger(now);
    pending_ = loop_.add_timer(at - now, 0, [this] { run_repair(); });
}

void DriftRepair::run_repair() {
    pending_.reset();
    std::string why = why_.empty() ? "check" : why_;
    why_.clear();
    uint64_t now = loop_.now_ms();
    auto result = daemon_.repair(why, now);
    // Our own repair writes are no drift: drain what they announced, take the new fingerprint.
    if (rtnl_) (void)rtnl_->drain();
    fingerprint_ = mangle_fingerprint();
    size_t changes = result ? *result : 1;  // a failed repair counts as a disturbance
    if (guard_.repaired(now, changes))
        log_.error(
            "flowshaper's objects keep being removed or changed by something else ({}); repairing at most "
            "every {} ms until it stops",
            why, guard_.backoff_ms());
}

void DriftRepair::after_poll() {
    uint64_t now = loop_.now_ms();
    if (guard_.full_check_due(now)) {
        guard_.full_checked(now);
        schedule("periodic full check");
        return;
    }
    auto fp = mangle_fingerprint();
    if (fp != fingerprint_) {
        fingerprint_ = fp;
        schedule("the legacy mangle table changed");
    }
}

}  // namespace flowshaper::controller
