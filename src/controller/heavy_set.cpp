#include "flowshaper/controller/heavy_set.hpp"

#include <algorithm>

namespace flowshaper::controller {

namespace {
// fw numbers handed out at most (a fw filter per client; far beyond any sensible heavy set).
constexpr uint32_t kMaxFwNumbers = 4096;
}  // namespace

void HeavySet::refill_pool() {
    free_numbers_.clear();
    if (!fw_) return;
    std::set<uint32_t> used;
    for (const auto& [key, e] : entries_)
        if (auto n = marks_.client_number_of(e.mark)) used.insert(*n);
    for (uint32_t n = 1; n <= marks_.max_clients() && n <= kMaxFwNumbers; ++n)
        if (!used.count(n)) free_numbers_.insert(n);
}

void HeavySet::reset(const plan::MarkLayout& marks, bool fw) {
    marks_ = marks;
    fw_ = fw;
    entries_.clear();
    refill_pool();
}

std::optional<uint32_t> HeavySet::add(const HeavyKey& key, HeavyWhy why) {
    if (auto* e = find(key)) return e->mark;
    uint32_t mark = marks_.rule_value(key.rule);
    if (fw_) {
        if (free_numbers_.empty()) return std::nullopt;
        uint32_t n = *free_numbers_.begin();
        free_numbers_.erase(free_numbers_.begin());
        mark = marks_.client_value(key.rule, n);
    }
    entries_[key] = HeavyEntry{mark, false, false, std::move(why)};
    return mark;
}

void HeavySet::adopt(const HeavyKey& key, HeavyWhy why, std::optional<uint32_t> fw_mark) {
    if (contains(key)) return;
    uint32_t mark = marks_.rule_value(key.rule);
    if (fw_ && fw_mark) {
        auto n = marks_.client_number_of(*fw_mark);
        if (!n || !free_numbers_.count(*n)) return;  // not a number of this layout, or taken
        free_numbers_.erase(*n);
        mark = *fw_mark;
    }
    entries_[key] = HeavyEntry{mark, true, false, std::move(why)};
}

void HeavySet::drop(const HeavyKey& key) {
    finish_release(key);
}

void HeavySet::finish_release(const HeavyKey& key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return;
    if (fw_)
        if (auto n = marks_.client_number_of(it->second.mark)) free_numbers_.insert(*n);
    entries_.erase(it);
}

std::vector<HeavyKey> HeavySet::reload(const plan::MarkLayout& marks, bool fw,
                                       const std::vector<std::optional<size_t>>& rule_map) {
    std::vector<HeavyKey> gone;
    std::map<HeavyKey, HeavyEntry> kept;
    for (auto& [key, e] : entries_) {
        // A fw client keeps its number; one that no longer fits the new layout (or a switch
        // between u32 and fw) is let go like a client of a rule that is gone. (Plain values, not
        // optionals, past the checks: GCC 12 -O3 warns maybe-uninitialized on the optionals.)
        const bool mapped = key.rule < rule_map.size() && rule_map[key.rule].has_value();
        std::optional<uint32_t> number = fw_ ? marks_.client_number_of(e.mark) : std::nullopt;
        bool fits = !fw || (fw_ && number && *number <= marks.max_clients() && *number <= kMaxFwNumbers);
        if (!mapped || !fits) {
            gone.push_back(key);
            continue;
        }
        const size_t to = rule_map[key.rule].value_or(0);
        HeavyEntry moved = e;
        moved.mark = fw ? marks.client_value(to, number.value_or(0)) : marks.rule_value(to);
        kept[HeavyKey{to, key.client}] = std::move(moved);
    }
    marks_ = marks;
    fw_ = fw;
    entries_ = std::move(kept);
    refill_pool();
    return gone;
}

HeavyEntry* HeavySet::find(const HeavyKey& key) {
    auto it = entries_.find(key);
    return it == entries_.end() ? nullptr : &it->second;
}

const HeavyEntry* HeavySet::find(const HeavyKey& key) const {
    auto it = entries_.find(key);
    return it == entries_.end() ? nullptr : &it->second;
}

size_t HeavySet::placed() const {
    return static_cast<size_t>(
        std::count_if(entries_.begin(), entries_.end(), [](const auto& e) { return e.second.placed; }));
}

std::set<HeavyKey> HeavySet::releasing() const {
    std::set<HeavyKey> out;
    for (const auto& [key, e] : entries_)
        if (e.releasing) out.insert(key);
    return out;
}

std::vector<plan::HeavyClient> HeavySet::clients() const {
    std::vector<plan::HeavyClient> out;
    out.reserve(entries_.size());
    for (const auto& [key, e] : entries_) out.push_back({key.rule, key.client, e.mark});
    return out;
}

}  // namespace flowshaper::controller
