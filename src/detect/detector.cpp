#include "flowshaper/detect/detector.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>

#include "client_state.hpp"
#include "flow_table.hpp"
#include "flowshaper/tc/model.hpp"

namespace flowshaper::detect {

using internal::ClientState;
using internal::FlowRecord;
using internal::FlowTable;

const char* to_string(DecisionKind kind) {
    switch (kind) {
        case DecisionKind::Mark:
            return "mark";
        case DecisionKind::Release:
            return "release";
    }
    return "?";
}

const char* to_string(Measure measure) {
    switch (measure) {
        case Measure::FlowBytes:
            return "flow_bytes";
        case Measure::ClientBytes:
            return "client_bytes";
        case Measure::ClientRate:
            return "client_rate";
        case Measure::QuietRate:
            return "quiet_rate";
    }
    return "?";
}

namespace {

constexpr uint64_t kUnset = std::numeric_limits<uint64_t>::max();

struct ClientKey {
    size_t rule = 0;
    net::Address address;
    bool operator==(const ClientKey&) const = default;
};

struct ClientKeyHash {
    size_t operator()(const ClientKey& k) const {
        uint64_t h = k.rule * 0x9e3779b97f4a7c15ULL ^ static_cast<uint64_t>(k.address.family);
        for (uint8_t b : k.address.bytes) h = (h ^ b) * 0x100000001b3ULL;
        return static_cast<size_t>(h ^ (h >> 29));
    }
};

// One observe() call's view of time and its by-products.
struct Poll {
    uint64_t prev_ms = 0;  // detector clock at the previous poll
    uint64_t now_ms = 0;   // detector clock now
    bool timed = false;    // a regular step: rates, streaks and quiet time move
    bool baseline = false;
    double alpha = 1;  // moving-average weight of this poll's rate
};

uint64_t rate_bits_per_s(uint64_t bytes, uint64_t ms) {
    if (ms == 0) return 0;
    unsigned __int128 r = static_cast<unsigned __int128>(bytes) * 8000 / ms;
    return r > kUnset ? kUnset : static_cast<uint64_t>(r);
}

// The per-poll rate below which a heavy client counts as quiet (see detector.hpp).
uint64_t release_rate_of(const policy::Detect& rule) {
    uint64_t r = rule.limit.rate_bits_per_s > 0 ? rule.limit.rate_bits_per_s / 2 : kUnset;
    if (rule.client_bytes && rule.window_ms > 0)
        r = std::min(r, rate_bits_per_s(*rule.client_bytes, rule.window_ms));
    if (rule.client_rate_bits_per_s) r = std::min(r, *rule.client_rate_bits_per_s);
    return r == kUnset ? 0 : r;
}

// How long the wire may go on after conntrack went quiet: the heavy class's full leaf queue
// (sized as plan sizes it, at the limit's ceil) drained at the limit's guaranteed rate.
uint64_t queue_drain_ms(const policy::Detect& rule, uint64_t leaf_queue_ms) {
    uint64_t rate = std::max<uint64_t>(1, rule.limit.rate_bits_per_s / 8);
    uint64_t ceil = std::max<uint64_t>(rate, rule.limit.ceil_bits_per_s / 8);
    return tc::leaf_queue_drain_ms(tc::leaf_queue_bytes(ceil, leaf_queue_ms), rate);
}

std::string n(uint64_t v) {
    return std::to_string(v);
}

}  // namespace

struct Detector::State {
    std::vector<policy::Detect> rules;
    std::vector<uint64_t> release_rate_bits_per_s;  // per rule
    std::vector<uint64_t> release_wait_ms;          // per rule: release_after + leaf queue drain time
    LocalAddresses local;
    Options options;
    uint64_t max_step_ms = 0;

    FlowTable flows;
    std::vector<ClientState> clients;
    std::vector<uint32_t> free_slots;
    std::unordered_map<ClientKey, uint32_t, ClientKeyHash> client_index;
    bool reclassify = false;

    bool started = false;
    uint64_t last_now_ms = 0;
    uint64_t clock_ms = 0;
    uint64_t anomalies = 0;

    Poll advance_clock(uint64_t now_ms);
    uint64_t clock_at(uint64_t now_ms) const;
    uint32_t slot_for(size_t rule, const net::Address& address);
    void account_sample(const Poll& poll, FlowTable& next, const FlowSample& s);
    void account_duplicate(FlowRecord& dup, const FlowSample& s);
    void update_measures(const Poll& poll, ClientState& c);
    std::optional<Decision> heavy_check(const Poll& poll, ClientState& c);
    std::optional<Decision> release_check(const Poll& poll, ClientState& c);
    void raise_base_of(const std::vector<uint8_t>& selected);
    void forget_idle();
    Decision decision(DecisionKind kind, const ClientState& c) const;
};

Poll Detector::State::advance_clock(uint64_t now_ms) {
    Poll poll;
    if (!started) {
        started = true;
        last_now_ms = now_ms;
        clock_ms = now_ms;
        poll.prev_ms = poll.now_ms = clock_ms;
        poll.baseline = true;
        return poll;
    }
    poll.prev_ms = clock_ms;
    bool regular = now_ms > last_now_ms && now_ms - last_now_ms <= max_step_ms;
    if (regular) {
        uint64_t step = now_ms - last_now_ms;
        clock_ms += step;
        poll.timed = true;
        poll.alpha =
            options.rate_average_ms == 0
                ? 1.0
                : 1.0 - std::exp(-static_cast<double>(step) / static_cast<double>(options.rate_average_ms));
    } else if (now_ms != last_now_ms) {
        ++anomalies;
    }
    last_now_ms = now_ms;
    poll.now_ms = clock_ms;
    return poll;
}

// The detector clock that a caller's now_ms corresponds to, between polls.
uint64_t Detector::State::clock_at(uint64_t now_ms) const {
    if (!started || now_ms <= last_now_ms || now_ms - last_now_ms > max_step_ms) return clock_ms;
    return clock_ms + (now_ms - last_now_ms);
}

uint32_t Detector::State::slot_for(size_t rule, const net::Address& address) {
    auto [it, inserted] = client_index.try_emplace(ClientKey{rule, address}, 0);
    if (!inserted) return it->second;
    uint32_t slot = 0;
    if (!free_slots.empty()) {
        slot = free_slots.back();
        free_slots.pop_back();
    } else {
        slot = static_cast<uint32_t>(clients.size());
        clients.emplace_back();
    }
    ClientState& c = clients[slot];
    c = ClientState{};
    c.address = address;
    c.rule = static_cast<uint32_t>(rule);
    c.in_use = true;
    if (rules[rule].client_bytes) c.window.configure(rules[rule].window_ms);
    it->second = slot;
    return slot;
}

void Detector::State::account_duplicate(FlowRecord& dup, const FlowSample& s) {
    ClientState& c = clients[dup.client()];
    uint64_t cur = dup.has(FlowRecord::kOpened) ? s.reply_bytes : s.orig_bytes;
    if (cur > dup.last_bytes) {
        c.delta_bytes += cur - dup.last_bytes;
        dup.last_bytes = cur;
        if (dup.flow_bytes() > c.top_flow_bytes) {
            c.top_flow_bytes = dup.flow_bytes();
            c.top_flow_id = dup.id;
        }
    }
}

void Detector::State::account_sample(const Poll& poll, FlowTable& next, const FlowSample& s) {
    uint64_t fp = internal::fingerprint(s);
    if (FlowRecord* dup = next.find(s.id, fp)) return account_duplicate(*dup, s);
    const FlowRecord* old = flows.find(s.id, fp);
    uint32_t slot = 0;
    bool opened = false;
    bool moved = false;  // classified anew into another client: start from the current counter
    if (old && !reclassify) {
        slot = old->client();
        opened = old->has(FlowRecord::kOpened);
    } else {
        auto c = classify(s, local, rules);
        if (!c) return;
        slot = slot_for(c->rule, c->client);
        opened = c->client_opened;
        if (old && (old->client() != slot || old->has(FlowRecord::kOpened) != opened)) {
            old = nullptr;
            moved = true;
        }
    }
    uint64_t cur = opened ? s.reply_bytes : s.orig_bytes;
    FlowRecord& r = next.insert(s.id, fp);
    r.bits = slot | (opened ? FlowRecord::kOpened : 0);
    r.last_bytes = cur;
    uint64_t delta = 0;
    if (old && cur >= old->last_bytes) {
        delta = cur - old->last_bytes;
        r.base_bytes = old->base_bytes;
    } else {
        // A new connection (or a restarted counter); after an address change, unknown history.
        delta = (poll.baseline || moved || reclassify) ? 0 : cur;
    }
    ClientState& c = clients[slot];
    ++c.flows;
    c.delta_bytes += delta;
    if (c.flows == 1 || r.flow_bytes() > c.top_flow_bytes) {
        c.top_flow_bytes = r.flow_bytes();
        c.top_flow_id = s.id;
    }
}

void Detector::State::update_measures(const Poll& poll, ClientState& c) {
    if (c.window.enabled()) {
        c.window.advance(poll.now_ms);
        if (!poll.baseline) c.window.add(poll.now_ms, c.delta_bytes);
    }
    if (!poll.timed) return;
    c.poll_rate_bits_per_s = rate_bits_per_s(c.delta_bytes, poll.now_ms - poll.prev_ms);
    auto rate = static_cast<double>(c.poll_rate_bits_per_s);
    if (!c.rate_seeded) {
        c.rate_avg_bits_per_s = rate;
        c.rate_seeded = true;
    } else {
        c.rate_avg_bits_per_s += poll.alpha * (rate - c.rate_avg_bits_per_s);
    }
}

Decision Detector::State::decision(DecisionKind kind, const ClientState& c) const {
    Decision d;
    d.kind = kind;
    d.rule = c.rule;
    d.rule_name = rules[c.rule].name;
    d.client = c.address;
    return d;
}

std::optional<Decision> Detector::State::heavy_check(const Poll& poll, ClientState& c) {
    const policy::Detect& rule = rules[c.rule];
    Decision d = decision(DecisionKind::Mark, c);
    if (rule.flow_bytes && c.flows > 0 && c.top_flow_bytes >= *rule.flow_bytes) {
        d.measure = Measure::FlowBytes;
        d.measured = c.top_flow_bytes;
        d.threshold = *rule.flow_bytes;
        d.reason = "connection " + n(c.top_flow_id) + " moved " + n(d.measured) +
                   " bytes toward the client (flow_bytes " + n(d.threshold) + ")";
        return d;
    }
    if (rule.client_bytes && c.window.sum() >= *rule.client_bytes) {
        d.measure = Measure::ClientBytes;
        d.measured = c.window.sum();
        d.threshold = *rule.client_bytes;
        d.reason = n(d.measured) + " bytes toward the client within " + n(rule.window_ms) +
                   " ms (client_bytes " + n(d.threshold) + ")";
        return d;
    }
    if (!rule.client_rate_bits_per_s) return std::nullopt;
    uint64_t limit = *rule.client_rate_bits_per_s;
    if (poll.timed) {
        bool above = c.rate_avg_bits_per_s > static_cast<double>(limit);
        if (above && !c.above) c.above_since_ms = poll.prev_ms;
        c.above = above;
    }
    if (!c.above || poll.now_ms - c.above_since_ms < rule.for_ms) return std::nullopt;
    d.measure = Measure::ClientRate;
    d.measured = static_cast<uint64_t>(c.rate_avg_bits_per_s);
    d.threshold = limit;
    d.reason = "average rate " + n(d.measured) + " bit/s above " + n(limit) + " bit/s for " +
               n(poll.now_ms - c.above_since_ms) + " ms (for " + n(rule.for_ms) + " ms)";
    return d;
}

std::optional<Decision> Detector::State::release_check(const Poll& poll, ClientState& c) {
    if (!poll.timed) return std::nullopt;
    const policy::Detect& rule = rules[c.rule];
    uint64_t limit = release_rate_bits_per_s[c.rule];
    bool below = limit == 0 ? c.delta_bytes == 0 : c.poll_rate_bits_per_s < limit;
    if (!below) {
        c.quiet = false;
        return std::nullopt;
    }
    if (!c.quiet) {
        c.quiet = true;
        c.quiet_since_ms = std::max(poll.prev_ms, c.quiet_not_before_ms);
        c.quiet_max_rate_bits_per_s = 0;
    }
    c.quiet_max_rate_bits_per_s = std::max(c.quiet_max_rate_bits_per_s, c.poll_rate_bits_per_s);
    uint64_t quiet_ms = poll.now_ms > c.quiet_since_ms ? poll.now_ms - c.quiet_since_ms : 0;
    if (quiet_ms < release_wait_ms[c.rule]) return std::nullopt;
    Decision d = decision(DecisionKind::Release, c);
    d.measure = Measure::QuietRate;
    d.measured = c.quiet_max_rate_bits_per_s;
    d.threshold = limit;
    d.reason = "quiet for " + n(quiet_ms) + " ms (release_after " + n(rule.release_after_ms) + " ms + " +
               n(release_wait_ms[c.rule] - rule.release_after_ms) + " ms leaf queue drain): at most " +
               n(d.measured) + " bit/s per poll, below " + n(limit) + " bit/s";
    return d;
}

// A release: the selected clients' connections count flow_bytes afresh, from their counters now.
void Detector::State::raise_base_of(const std::vector<uint8_t>& selected) {
    flows.for_each([&](FlowRecord& r) {
        if (r.client() < selected.size() && selected[r.client()]) r.base_bytes = r.last_bytes;
    });
}

void Detector::State::forget_idle() {
    for (uint32_t slot = 0; slot < clients.size(); ++slot) {
        ClientState& c = clients[slot];
        if (!c.in_use || c.heavy || c.flows > 0 || c.window.sum() > 0) continue;
        client_index.erase(ClientKey{c.rule, c.address});
        c = ClientState{};
        free_slots.push_back(slot);
    }
}

Detector::Detector(std::vector<policy::Detect> rules, std::vector<net::Address> local_addresses,
                   Options options)
    : state_(std::make_unique<State>()) {
    State& s = *state_;
    s.rules = std::move(rules);
    for (const auto& r : s.rules) {
        s.release_rate_bits_per_s.push_back(release_rate_of(r));
        s.release_wait_ms.push_back(r.release_after_ms + queue_drain_ms(r, options.leaf_queue_ms));
    }
    s.local = LocalAddresses(std::move(local_addresses));
    s.options = options;
    s.max_step_ms =
        options.max_step_ms != 0 ? options.max_step_ms : 10 * std::max<uint64_t>(1, options.poll_interval_ms);
}

Detector::~Detector() = default;

std::vector<Decision> Detector::observe(uint64_t now_ms, const std::vector<FlowSample>& samples) {
    State& s = *state_;
    Poll poll = s.advance_clock(now_ms);
    for (auto& c : s.clients) c.begin_poll();
    FlowTable next(s.flows.size());
    for (const FlowSample& sample : samples) s.account_sample(poll, next, sample);
    s.flows = std::move(next);
    s.reclassify = false;

    std::vector<Decision> out;
    std::vector<uint8_t> released;
    for (uint32_t slot = 0; slot < s.clients.size(); ++slot) {
        ClientState& c = s.clients[slot];
        if (!c.in_use) continue;
        s.update_measures(poll, c);
        auto d = c.heavy ? s.release_check(poll, c) : s.heavy_check(poll, c);
        if (!d) continue;
        c.heavy = d->kind == DecisionKind::Mark;
        c.reset_hysteresis();
        if (!c.heavy) {
            c.window.clear();
            released.resize(s.clients.size(), 0);
            released[slot] = 1;
        }
        out.push_back(std::move(*d));
    }
    if (!released.empty()) s.raise_base_of(released);
    s.forget_idle();
    std::sort(out.begin(), out.end(), [](const Decision& a, const Decision& b) {
        return a.rule != b.rule ? a.rule < b.rule : a.client < b.client;
    });
    return out;
}

bool Detector::adopt(size_t rule, const net::Address& client, uint64_t now_ms) {
    State& s = *state_;
    if (rule >= s.rules.size()) return false;
    ClientState& c = s.clients[s.slot_for(rule, client)];
    c.heavy = true;
    c.reset_hysteresis();
    c.quiet_not_before_ms = s.clock_at(now_ms);
    return true;
}

void Detector::revoke(size_t rule, const net::Address& client) {
    State& s = *state_;
    auto it = s.client_index.find(ClientKey{rule, client});
    if (it == s.client_index.end() || !s.clients[it->second].heavy) return;
    s.clients[it->second].heavy = false;
    s.clients[it->second].reset_hysteresis();
}

void Detector::set_local_addresses(std::vector<net::Address> addresses) {
    state_->local = LocalAddresses(std::move(addresses));
    state_->reclassify = true;
}

bool Detector::is_heavy(size_t rule, const net::Address& client) const {
    auto it = state_->client_index.find(ClientKey{rule, client});
    return it != state_->client_index.end() && state_->clients[it->second].heavy;
}

std::vector<Detector::HeavyClient> Detector::heavy_clients() const {
    std::vector<HeavyClient> out;
    for (const auto& c : state_->clients)
        if (c.in_use && c.heavy) out.push_back({c.rule, c.address});
    std::sort(out.begin(), out.end());
    return out;
}

std::optional<Detector::ClientView> Detector::view(size_t rule, const net::Address& client) const {
    const State& s = *state_;
    auto it = s.client_index.find(ClientKey{rule, client});
    if (it == s.client_index.end()) return std::nullopt;
    const ClientState& c = s.clients[it->second];
    ClientView v;
    v.poll_rate_bits_per_s = c.poll_rate_bits_per_s;
    if (c.heavy && c.quiet)
        v.quiet_for_ms = s.clock_ms > c.quiet_since_ms ? s.clock_ms - c.quiet_since_ms : 0;
    v.release_after_ms = s.release_wait_ms[rule];
    v.release_rate_bits_per_s = s.release_rate_bits_per_s[rule];
    return v;
}

size_t Detector::tracked_flows() const {
    return state_->flows.size();
}
size_t Detector::tracked_clients() const {
    return state_->client_index.size();
}
uint64_t Detector::clock_anomalies() const {
    return state_->anomalies;
}
size_t Detector::flow_record_bytes() {
    return sizeof(FlowRecord);
}

}  // namespace flowshaper::detect
