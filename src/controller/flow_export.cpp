#include "flowshaper/controller/flow_export.hpp"

#include <algorithm>
#include <chrono>

namespace flowshaper::controller {

namespace {
uint64_t system_ms() {
    using namespace std::chrono;
    return static_cast<uint64_t>(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}
}  // namespace

FlowExport::FlowExport(EventLoop& loop, spdlog::logger& log, std::function<uint8_t(uint32_t)> dscp_of,
                       std::function<uint64_t()> wall_ms)
    : loop_(loop),
      log_(log),
      dscp_of_(std::move(dscp_of)),
      wall_ms_(wall_ms ? std::move(wall_ms) : system_ms) {}

FlowExport::~FlowExport() {
    for (auto& t : targets_) unwatch(*t);
}

Result<std::unique_ptr<FlowExport::Target>> FlowExport::open_target(const policy::Export& target,
                                                                    uint64_t poll_interval_ms) {
    flowrec::ExporterOptions eo;
    eo.notice = [this, name = target.target](const std::string& text) {
        log_.warn("export {}: {}", name, text);
    };
    auto exporter = flowrec::Exporter::open(target, eo, loop_.now_ms());
    if (!exporter) {
        auto e = exporter.error();
        e.operation = "open export target " + target.target + ": " + e.operation;
        return e;
    }
    auto t = std::make_unique<Target>();
    t->config = target;
    flowrec::LedgerOptions lo;
    lo.active_timeout_ms = target.active_timeout_ms;
    lo.poll_interval_ms = poll_interval_ms;
    t->ledger = std::make_unique<flowrec::Ledger>(lo);
    t->exporter = std::move(*exporter);
    log_.info("export: IPFIX to {} (active timeout {} ms, {} bytes per message)", target.target,
              target.active_timeout_ms, t->exporter->max_message_bytes());
    return t;
}

Status FlowExport::open(const std::vector<policy::Export>& targets, uint64_t poll_interval_ms) {
    for (const auto& target : targets) {
        auto t = open_target(target, poll_interval_ms);
        if (!t) return t.error();
        targets_.push_back(std::move(*t));
        rewatch(*targets_.back());
    }
    return {};
}

Status FlowExport::reconfigure(const std::vector<policy::Export>& targets, uint64_t poll_interval_ms) {
    auto named = [](const std::vector<policy::Export>& list, const std::string& target) {
        return std::find_if(list.begin(), list.end(), [&](const auto& e) { return e.target == target; });
    };
    for (auto it = targets_.begin(); it != targets_.end();) {
        Target& t = **it;
        auto now = named(targets, t.config.target);
        if (now != targets.end()) {
            if (now->active_timeout_ms != t.config.active_timeout_ms ||
                now->template_refresh_ms != t.config.template_refresh_ms ||
                now->observation_domain != t.config.observation_domain)
                log_.warn("export {}: changed settings take effect at the next start (kept as they were)",
                          t.config.target);
            ++it;
            continue;
        }
        close_all(t, {});
        unwatch(t);
        log_.info("export {}: removed; its open connections were closed (forced end)", t.config.target);
        it = targets_.erase(it);
    }
    std::vector<policy::Export> added;
    for (const auto& target : targets)
        if (std::none_of(targets_.begin(), targets_.end(),
                         [&](const auto& t) { return t->config.target == target.target; }))
            added.push_back(target);
    return open(added, poll_interval_ms);
}

void FlowExport::unwatch(Target& t) {
    if (t.watched_fd >= 0) loop_.remove_fd(t.watched_fd);
    t.watched_fd = -1;
    if (t.timer) loop_.cancel_timer(*t.timer);
    t.timer.reset();
}

// The exporter's descriptor and deadline may change after any call (a TCP reconnect).
void FlowExport::rewatch(Target& t) {
    int fd = t.exporter->fd();
    uint32_t events = fd >= 0 ? t.exporter->wanted_events() : 0;
    if (fd != t.watched_fd || events != t.watched_events) {
        if (t.watched_fd >= 0 && t.watched_fd != fd) loop_.remove_fd(t.watched_fd);
        t.watched_fd = -1;
        t.watched_events = 0;
        if (fd >= 0 && events != 0) {
            Target* tp = &t;
            auto st = loop_.add_fd(fd, events, [this, tp](uint32_t ev) {
                tp->exporter->on_events(ev, loop_.now_ms());
                rewatch(*tp);
            });
            if (st) {
                t.watched_fd = fd;
                t.watched_events = events;
            } else {
                log_.warn("export {}: {}", t.exporter->target(), st.error().text());
            }
        }
    }
    if (t.timer) loop_.cancel_timer(*t.timer);
    t.timer.reset();
    if (auto at = t.exporter->next_deadline_ms()) {
        uint64_t now = loop_.now_ms();
        Target* tp = &t;
        t.timer = loop_.add_timer(*at > now ? *at - now : 0, 0, [this, tp] {
            tp->timer.reset();
            tp->exporter->on_timer(loop_.now_ms());
            rewatch(*tp);
        });
    }
}

void FlowExport::on_poll(uint64_t now_ms, const std::vector<kernel::FlowSample>& dump, bool full,
                         const std::vector<kernel::FlowSample>& ended, const detect::LocalAddresses&) {
    uint64_t wall = wall_ms_();
    for (auto& t : targets_) {
        scratch_.clear();
        t->ledger->begin_poll(wall);
        for (const auto& f : dump) t->ledger->observe(f, dscp_of_(f.mark), scratch_);
        for (const auto& f : ended) t->ledger->destroyed(f, wall, dscp_of_(f.mark), scratch_);
        t->ledger->end_poll(full, scratch_);
        if (!scratch_.empty()) t->exporter->submit(scratch_, now_ms);
        rewatch(*t);
    }
}

void FlowExport::close_all(Target& t, const std::vector<kernel::FlowSample>& last_dump) {
    const uint64_t wall = wall_ms_();
    scratch_.clear();
    if (!last_dump.empty()) {
        t.ledger->begin_poll(wall);
        for (const auto& f : last_dump) t.ledger->observe(f, dscp_of_(f.mark), scratch_);
    }
    t.ledger->flush(wall, scratch_);
    if (!scratch_.empty()) t.exporter->submit(scratch_, loop_.now_ms());
    if (!t.exporter->flush(loop_.now_ms()))
        log_.warn("export {}: {} records could not be sent", t.exporter->target(), t.exporter->queued());
}

void FlowExport::finish(const std::vector<kernel::FlowSample>& last_dump) {
    for (auto& t : targets_) close_all(*t, last_dump);
}

}  // namespace flowshaper::controller
