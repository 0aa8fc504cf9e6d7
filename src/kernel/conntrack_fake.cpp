// FakeConntrackPort: an in-memory conntrack table for logic tests.
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "flowshaper/kernel/conntrack_port.hpp"

namespace flowshaper::kernel {

FakeConntrackPort::FakeConntrackPort() : event_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

FakeConntrackPort::~FakeConntrackPort() {
    if (event_fd_ >= 0) close(event_fd_);
}

void FakeConntrackPort::push_event(FlowEventType type, const FlowSample& flow) {
    FlowEvent e{type, flow};
    if (type == FlowEventType::New) {
        e.flow.orig_bytes = e.flow.reply_bytes = e.flow.orig_packets = e.flow.reply_packets = 0;
    }
    events_.push_back(e);
    uint64_t one = 1;
    if (event_fd_ >= 0 && write(event_fd_, &one, sizeof one) < 0) {
        // A full eventfd counter is still readable: nothing is lost.
    }
}

uint32_t FakeConntrackPort::upsert(FlowSample flow, bool assured) {
    auto it =
        std::find_if(table_.begin(), table_.end(), [&](const Entry& e) { return e.flow.same_tuple(flow); });
    if (it != table_.end()) {
        flow.id = it->flow.id;
        flow.mark = it->flow.mark;  // new counters; the ctmark stays what the kernel holds
        it->flow = flow;
        it->assured = assured;
        return flow.id;
    }
    if (flow.id == 0) flow.id = next_id_++;
    table_.push_back(Entry{flow, assured});
    push_event(FlowEventType::New, flow);
    return flow.id;
}

bool FakeConntrackPort::or_mark(uint32_t id, uint32_t bits) {
    auto it = std::find_if(table_.begin(), table_.end(), [&](const Entry& e) { return e.flow.id == id; });
    if (it == table_.end()) return false;
    it->flow.mark |= bits;
    return true;
}

bool FakeConntrackPort::remove(uint32_t id) {
    auto it = std::find_if(table_.begin(), table_.end(), [&](const Entry& e) { return e.flow.id == id; });
    if (it == table_.end()) return false;
    push_event(FlowEventType::Destroy, it->flow);
    table_.erase(it);
    return true;
}

const FlowSample* FakeConntrackPort::find(uint32_t id) const {
    auto it = std::find_if(table_.begin(), table_.end(), [&](const Entry& e) { return e.flow.id == id; });
    return it == table_.end() ? nullptr : &it->flow;
}

void FakeConntrackPort::overflow_events() {
    events_.clear();
    lost_ = true;
    uint64_t one = 1;
    if (event_fd_ >= 0 && write(event_fd_, &one, sizeof one) < 0) {
        // A full eventfd counter is still readable.
    }
}

Status FakeConntrackPort::dump(const DumpFilter& filter, const FlowSink& sink) {
    ++dumps_;
    if (!filter.empty()) ++filtered_dumps_;
    if (int err = std::exchange(dump_error_, 0); err != 0)
        return make_error("dump conntrack", "table", err, std::strerror(err));
    for (const Entry& e : table_)
        if (filter.matches(e.flow, e.assured)) sink(e.flow);
    return {};
}

Status FakeConntrackPort::set_mark(const FlowSample& flow, uint32_t value, uint32_t mask) {
    if (int err = std::exchange(mark_error_, 0); err != 0)
        return make_error("set ctmark", flow.orig_src.str(), err, std::strerror(err));
    auto it =
        std::find_if(table_.begin(), table_.end(), [&](const Entry& e) { return e.flow.same_tuple(flow); });
    if (it == table_.end())
        return make_error("set ctmark", flow.orig_src.str(), ENOENT, std::strerror(ENOENT));
    it->flow.mark = (it->flow.mark & ~mask) | (value & mask);
    mark_writes_.push_back(MarkWrite{it->flow, value, mask});
    return {};
}

Result<bool> FakeConntrackPort::drain_events(const EventSink& sink) {
    uint64_t counter = 0;
    if (event_fd_ >= 0 && read(event_fd_, &counter, sizeof counter) < 0) {
        // EAGAIN: nothing was signalled.
    }
    while (!events_.empty()) {
        FlowEvent e = events_.front();
        events_.pop_front();
        sink(e);
    }
    return std::exchange(lost_, false);
}

}  // namespace flowshaper::kernel
