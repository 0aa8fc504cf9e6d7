// Writes and clears the ctmark of heavy clients' connections. A connection is marked only when
// its client's class is in the kernel (placed) and the client is not being released: class
// first, then marks; marks cleared first, then the class.
#pragma once

#include <map>

#include <spdlog/logger.h>

#include <optional>
#include <set>
#include <vector>

#include "flowshaper/controller/heavy_set.hpp"
#include "flowshaper/detect/classify.hpp"
#include "flowshaper/kernel/conntrack_port.hpp"
#include "flowshaper/plan/marks.hpp"
#include "flowshaper/policy/policy.hpp"

namespace flowshaper::controller {

struct MarkContext {
    const std::vector<policy::Detect>& rules;
    const detect::LocalAddresses& local;
    const plan::MarkLayout& marks;
    const HeavySet& heavy;
};

class FlowMarker {
public:
    FlowMarker(kernel::ConntrackPort& conntrack, spdlog::logger& log) : conntrack_(conntrack), log_(log) {}

    // The (rule, client) a connection belongs to when that client is placed and not releasing.
    static std::optional<HeavyKey> heavy_key_of(const MarkContext& ctx, const kernel::FlowSample& flow);

    // Gives every connection of a placed heavy client its mark (and, with the prefilter, the
    // candidate flag so that filtered dumps keep measuring all of its traffic). Returns how many
    // connections were written.
    size_t mark(const MarkContext& ctx, const std::vector<kernel::FlowSample>& flows);

    // Clears `bits` on the connections that carry any of them (only: those of these clients), in
    // one dump. `incomplete`: the clients some of whose connections could not be read or cleared.
    size_t clear(const MarkContext& ctx, const std::set<HeavyKey>* only, uint32_t bits,
                 std::set<HeavyKey>* incomplete = nullptr);

    // fw: the clients whose connections carry a per-client mark of their rule (`client_mask`
    // bits set), with that mark (restore bits only), in one dump. Connections of one client that
    // disagree keep the first mark seen.
    std::map<HeavyKey, uint32_t> marked_clients(const MarkContext& ctx);

private:
    kernel::ConntrackPort& conntrack_;
    spdlog::logger& log_;
};

}  // namespace flowshaper::controller
