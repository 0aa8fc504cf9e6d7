// Where `flowshaper top` gets its rows: the running daemon (status socket, "clients"), or, with
// no daemon, conntrack read directly with the same per-client accounting (detect::ClientRates).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "flowshaper/common/result.hpp"
#include "flowshaper/controller/snapshot.hpp"

namespace flowshaper::cli {

struct TopFrame {
    uint64_t at_unix_ms = 0;
    bool complete = true;  // false: the daemon's polls read only the prefilter's candidates
    std::vector<controller::ClientSnapshot> clients;
};

class TopSource {
public:
    virtual ~TopSource() = default;
    virtual Result<TopFrame> sample() = 0;
    virtual std::string describe() const = 0;  // one line for the header
};

// The daemon at `socket`; nullptr and `why` filled when none answers there.
std::unique_ptr<TopSource> daemon_source(const std::string& socket, uint64_t interval_ms, Error* why);
// conntrack in this network namespace (needs CAP_NET_ADMIN).
Result<std::unique_ptr<TopSource>> conntrack_source();

enum class SortKey { To, From, Bytes, Conns };
void sort_clients(std::vector<controller::ClientSnapshot>& clients, SortKey key);
// Header and rows as aligned text lines (plain output and the curses screen share them).
std::vector<std::string> client_lines(const std::vector<controller::ClientSnapshot>& clients);

}  // namespace flowshaper::cli
