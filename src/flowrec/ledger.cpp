// The per-connection ledger (see ledger.hpp).
#include "flowshaper/flowrec/ledger.hpp"

#include <array>

namespace flowshaper::flowrec {
namespace {

// What moved since `last` (a total below the last one: the counters were zeroed, all of it is new).
uint64_t delta(uint64_t total, uint64_t last, bool& reset) {
    if (total >= last) return total - last;
    reset = true;
    return total;
}

bool moved(const Ledger::Counters& c) {
    return c.orig_bytes || c.orig_packets || c.reply_bytes || c.reply_packets;
}

// FlowSample::same_tuple without linking the kernel module (the ledger uses only its value types).
bool same_tuple(const kernel::FlowSample& a, const kernel::FlowSample& b) {
    return a.family == b.family && a.l4proto == b.l4proto && a.orig_src == b.orig_src &&
           a.orig_dst == b.orig_dst && a.orig_sport == b.orig_sport && a.orig_dport == b.orig_dport;
}

// How long a connection closed as vanished still takes its late DESTROY (which then adds only
// what it had not exported): polls after the grace.
constexpr uint32_t kKeepVanishedPolls = 30;

uint64_t ns_to_ms(uint64_t ns) {
    return ns / 1000000;
}

}  // namespace

FlowRecord make_record(const kernel::FlowSample& t, const Ledger::Counters& d, uint64_t start_ms,
                       uint64_t end_ms, EndReason reason, uint8_t tos) {
    FlowRecord r;
    r.family = t.family;
    r.l4proto = t.l4proto;
    r.tos = tos;
    r.reason = reason;
    r.src = t.orig_src;
    r.dst = t.orig_dst;
    r.sport = t.orig_sport;
    r.dport = t.orig_dport;
    // The original direction after NAT is the reply tuple turned around.
    const std::array<uint8_t, 16> none{};
    const bool has_reply = t.reply_src.bytes != none || t.reply_dst.bytes != none;
    r.post_src = has_reply ? t.reply_dst : t.orig_src;
    r.post_dst = has_reply ? t.reply_src : t.orig_dst;
    r.post_sport = has_reply ? t.reply_dport : t.orig_sport;
    r.post_dport = has_reply ? t.reply_sport : t.orig_dport;
    r.start_ms = start_ms;
    r.end_ms = end_ms < start_ms ? start_ms : end_ms;
    r.octets = d.orig_bytes;
    r.packets = d.orig_packets;
    r.rev_octets = d.reply_bytes;
    r.rev_packets = d.reply_packets;
    return r;
}

Ledger::Ledger(const LedgerOptions& options) : options_(options) {}

void Ledger::begin_poll(uint64_t now_ms) {
    now_ms_ = now_ms;
    ++poll_;
}

void Ledger::account(Entry& e, const kernel::FlowSample& s) {
    bool reset = false;
    e.pending.orig_bytes += delta(s.orig_bytes, e.tuple.orig_bytes, reset);
    e.pending.orig_packets += delta(s.orig_packets, e.tuple.orig_packets, reset);
    e.pending.reply_bytes += delta(s.reply_bytes, e.tuple.reply_bytes, reset);
    e.pending.reply_packets += delta(s.reply_packets, e.tuple.reply_packets, reset);
    if (reset) ++stats_.counter_resets;
    e.tuple.orig_bytes = s.orig_bytes;
    e.tuple.orig_packets = s.orig_packets;
    e.tuple.reply_bytes = s.reply_bytes;
    e.tuple.reply_packets = s.reply_packets;
    if (s.stop_ns) e.tuple.stop_ns = s.stop_ns;
}

void Ledger::emit(Entry& e, uint64_t end_ms, EndReason reason, std::vector<FlowRecord>& out) {
    if (moved(e.pending) || reason != EndReason::ActiveTimeout)
        out.push_back(make_record(e.tuple, e.pending, e.period_start_ms, end_ms, reason, e.tos));
    e.pending = {};
    e.period_start_ms = end_ms;
}

void Ledger::add(const kernel::FlowSample& s, uint8_t dscp) {
    Entry e;
    e.tuple = s;
    e.tuple.orig_bytes = e.tuple.orig_packets = e.tuple.reply_bytes = e.tuple.reply_packets = 0;
    e.period_start_ms = s.start_ns ? ns_to_ms(s.start_ns) : now_ms_;
    if (e.period_start_ms > now_ms_) e.period_start_ms = now_ms_;
    e.tos = static_cast<uint8_t>(dscp << 2);
    account(e, s);
    e.last_seen_ms = now_ms_;
    e.seen_poll = poll_;
    entries_.emplace(s.id, std::move(e));
}

void Ledger::observe(const kernel::FlowSample& s, uint8_t dscp, std::vector<FlowRecord>& out) {
    auto it = entries_.find(s.id);
    if (it != entries_.end() && !same_tuple(it->second.tuple, s)) {
        // The id was reused: the old connection ended without an event.
        ++stats_.vanished;
        emit(it->second, it->second.last_seen_ms, EndReason::LackOfResources, out);
        entries_.erase(it);
        it = entries_.end();
    }
    if (it == entries_.end()) {
        if (entries_.size() >= options_.max_connections) {
            ++stats_.untracked;
            return;
        }
        add(s, dscp);
        return;
    }
    Entry& e = it->second;
    account(e, s);
    e.tos = static_cast<uint8_t>(dscp << 2);
    e.last_seen_ms = now_ms_;
    e.seen_poll = poll_;
    // A poll a little late followed by one on time must not push the period end a whole poll.
    const uint64_t slack = std::min<uint64_t>(options_.poll_interval_ms / 10, 100);
    const uint64_t due = options_.active_timeout_ms - std::min(options_.active_timeout_ms / 2, slack);
    if (now_ms_ >= e.period_start_ms + due) emit(e, now_ms_, EndReason::ActiveTimeout, out);
}

void Ledger::destroyed(const kernel::FlowSample& s, uint64_t now_ms, uint8_t dscp,
                       std::vector<FlowRecord>& out) {
    const uint64_t end_ms = s.stop_ns ? ns_to_ms(s.stop_ns) : now_ms;
    for (auto* table : {&entries_, &vanished_}) {
        auto it = table->find(s.id);
        if (it == table->end() || !same_tuple(it->second.tuple, s)) continue;
        Entry& e = it->second;
        account(e, s);
        if (table == &entries_ || moved(e.pending)) {
            if (dscp) e.tos = static_cast<uint8_t>(dscp << 2);
            emit(e, end_ms, EndReason::EndOfFlow, out);
        }
        table->erase(it);
        return;
    }
    // Never seen in a dump (began and ended between polls, or not tracked): all of it.
    kernel::FlowSample zero = s;
    zero.orig_bytes = zero.orig_packets = zero.reply_bytes = zero.reply_packets = 0;
    Ledger::Counters all{s.orig_bytes, s.orig_packets, s.reply_bytes, s.reply_packets};
    const uint64_t start_ms = s.start_ns ? ns_to_ms(s.start_ns) : end_ms;
    out.push_back(
        make_record(zero, all, start_ms, end_ms, EndReason::EndOfFlow, static_cast<uint8_t>(dscp << 2)));
}

void Ledger::end_poll(bool complete, std::vector<FlowRecord>& out) {
    if (!complete) return;
    const uint32_t grace = options_.vanish_after_polls;
    std::erase_if(vanished_,
                  [&](const auto& kv) { return poll_ - kv.second.seen_poll > grace + kKeepVanishedPolls; });
    for (auto it = entries_.begin(); it != entries_.end();) {
        // An entry that timed out leaves the dump before the kernel's garbage collector sends its
        // DESTROY: wait a few polls for the event (and its exact counters) before giving up.
        if (poll_ - it->second.seen_poll < grace) {
            ++it;
            continue;
        }
        ++stats_.vanished;
        emit(it->second, it->second.last_seen_ms, EndReason::LackOfResources, out);
        vanished_.emplace(it->first, std::move(it->second));
        it = entries_.erase(it);
    }
}

void Ledger::flush(uint64_t now_ms, std::vector<FlowRecord>& out) {
    for (auto& [id, e] : entries_) emit(e, now_ms, EndReason::ForcedEnd, out);
    entries_.clear();
    vanished_.clear();
}

}  // namespace flowshaper::flowrec
