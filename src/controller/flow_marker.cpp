#include "flowshaper/controller/flow_marker.hpp"

#include <cerrno>

#include "flowshaper/controller/daemon.hpp"

namespace flowshaper::controller {

std::optional<HeavyKey> FlowMarker::heavy_key_of(const MarkContext& ctx, const kernel::FlowSample& flow) {
    auto c = detect::classify(to_detect(flow), ctx.local, ctx.rules);
    if (!c) return std::nullopt;
    HeavyKey key{c->rule, c->client};
    const HeavyEntry* e = ctx.heavy.find(key);
    if (!e || !e->placed || e->releasing) return std::nullopt;  // class first, then marks
    return key;
}

size_t FlowMarker::mark(const MarkContext& ctx, const std::vector<kernel::FlowSample>& flows) {
    const uint32_t mask = ctx.marks.mask();
    size_t written = 0;
    for (const auto& f : flows) {
        auto key = heavy_key_of(ctx, f);
        if (!key) continue;
        uint32_t want = ctx.heavy.find(*key)->mark | ctx.marks.candidate_bit();
        if ((f.mark & mask) == want) continue;
        auto st = conntrack_.set_mark(f, want, mask);
        if (st) {
            ++written;
            continue;
        }
        if (st.error().code == ENOENT) continue;  // ended meanwhile
        // A flow without ports (ICMP and the like) is counted but cannot be named to the kernel by
        // its tuple alone: it keeps no mark. Not worth a warning per flow and poll.
        if (st.error().code == EPROTONOSUPPORT)
            log_.debug("not marking a portless flow of {}: {}", key->client.str(), st.error().text());
        else
            log_.warn("set ctmark on a connection of {}: {}", key->client.str(), st.error().text());
    }
    return written;
}

size_t FlowMarker::clear(const MarkContext& ctx, const std::set<HeavyKey>* only, uint32_t bits,
                         std::set<HeavyKey>* incomplete) {
    std::vector<std::pair<kernel::FlowSample, std::optional<HeavyKey>>> marked;
    auto st = conntrack_.dump({}, [&](const kernel::FlowSample& f) {
        if ((f.mark & bits) == 0) return;
        if (!only) {
            marked.emplace_back(f, std::nullopt);
            return;
        }
        auto c = detect::classify(to_detect(f), ctx.local, ctx.rules);
        if (!c) return;
        HeavyKey key{c->rule, c->client};
        if (only->count(key)) marked.emplace_back(f, key);
    });
    if (!st) {
        log_.warn("conntrack dump to clear marks: {}", st.error().text());
        if (incomplete && only) *incomplete = *only;
    }
    size_t cleared = 0;
    for (const auto& [f, key] : marked) {
        auto w = conntrack_.set_mark(f, 0, bits);
        if (w) {
            ++cleared;
        } else if (w.error().code != ENOENT) {
            log_.warn("clear ctmark: {}", w.error().text());
            if (incomplete && key) incomplete->insert(*key);
        }
    }
    return cleared;
}

std::map<HeavyKey, uint32_t> FlowMarker::marked_clients(const MarkContext& ctx) {
    std::map<HeavyKey, uint32_t> out;
    const uint32_t client_bits = ctx.marks.client_mask();
    if (client_bits == 0) return out;
    auto st = conntrack_.dump({}, [&](const kernel::FlowSample& f) {
        if ((f.mark & client_bits) == 0) return;
        auto c = detect::classify(to_detect(f), ctx.local, ctx.rules);
        const uint32_t mark = f.mark & ctx.marks.restore_mask();
        if (!c || ctx.marks.rule_of(mark) != c->rule) return;  // another rule's mark: not its own
        out.emplace(HeavyKey{c->rule, c->client}, mark);
    });
    if (!st) log_.warn("conntrack dump to find marked clients: {}", st.error().text());
    return out;
}

}  // namespace flowshaper::controller
