#include "top_source.hpp"

#include <algorithm>
#include <chrono>
#include <fstream>

#include "faces_format.hpp"
#include "flowshaper/controller/client_view.hpp"
#include "flowshaper/controller/daemon.hpp"
#include "flowshaper/controller/snapshot_json.hpp"
#include "flowshaper/controller/status_client.hpp"
#include "flowshaper/detect/client_rates.hpp"
#include "flowshaper/kernel/real_ports.hpp"

namespace flowshaper::cli {

namespace {

class DaemonSource final : public TopSource {
public:
    DaemonSource(std::string socket, uint64_t watch_ms) : socket_(std::move(socket)), watch_ms_(watch_ms) {}
    Status connect() { return client_.connect(socket_); }
    std::string describe() const override { return "from the daemon at " + socket_; }
    Result<TopFrame> sample() override {
        auto answer = client_.request({{"cmd", "clients"}, {"watch_ms", watch_ms_}});
        if (!answer) return answer.error();
        const auto& j = *answer;
        if (j.value("ok", false) != true)
            return make_error("ask the daemon for clients", socket_, 0, j.value("error", std::string("?")));
        TopFrame frame;
        frame.at_unix_ms = j.value("taken_unix_ms", uint64_t{0});
        frame.complete = j.value("complete", true);
        for (const auto& c : j.at("clients")) {
            auto client = controller::client_from_json(c);
            if (!client) return client.error();
            frame.clients.push_back(std::move(*client));
        }
        return frame;
    }

private:
    controller::StatusClient client_;
    std::string socket_;
    uint64_t watch_ms_;
};

std::string accounting_state() {
    std::ifstream in("/proc/sys/net/netfilter/nf_conntrack_acct");
    std::string v;
    if (!(in >> v)) return "accounting unknown (no /proc/sys/net/netfilter/nf_conntrack_acct)";
    return v == "1" ? "accounting on" : "accounting OFF (net.netfilter.nf_conntrack_acct=0: no byte counts)";
}

uint64_t mono_ms() {
    using namespace std::chrono;
    return static_cast<uint64_t>(duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count());
}

class ConntrackSource final : public TopSource {
public:
    explicit ConntrackSource(kernel::RealPorts ports) : ports_(std::move(ports)) {}
    std::string describe() const override {
        return "no daemon: reading conntrack directly, " + accounting_state();
    }
    Result<TopFrame> sample() override {
        auto local = ports_.links->local_addresses();
        if (!local) return local.error();
        auto dump = ports_.conntrack->dump_all();
        if (!dump) return dump.error();
        rates_.observe(mono_ms(), controller::to_detect(*dump), detect::LocalAddresses(*local));
        TopFrame frame;
        frame.at_unix_ms = now_unix_ms();
        frame.clients = controller::client_snapshots(rates_.rows(), controller::Snapshot{}, frame.at_unix_ms);
        return frame;
    }

private:
    kernel::RealPorts ports_;
    detect::ClientRates rates_;
};

}  // namespace

std::unique_ptr<TopSource> daemon_source(const std::string& socket, uint64_t interval_ms, Error* why) {
    auto source = std::make_unique<DaemonSource>(socket, std::max<uint64_t>(10'000, 3 * interval_ms));
    if (auto s = source->connect(); !s) {
        *why = s.error();
        return nullptr;
    }
    return source;
}

Result<std::unique_ptr<TopSource>> conntrack_source() {
    kernel::RealPortsOptions options;
    options.mangle = false;
    options.conntrack_events = false;
    auto ports = kernel::open_real_ports(options);
    if (!ports) return ports.error();
    return std::unique_ptr<TopSource>(std::make_unique<ConntrackSource>(std::move(*ports)));
}

void sort_clients(std::vector<controller::ClientSnapshot>& clients, SortKey key) {
    auto value = [key](const controller::ClientSnapshot& c) -> uint64_t {
        switch (key) {
            case SortKey::To:
                return c.to_bits_per_s[0];
            case SortKey::From:
                return c.from_bits_per_s[0];
            case SortKey::Bytes:
                return c.to_bytes + c.from_bytes;
            case SortKey::Conns:
                return c.flows;
        }
        return 0;
    };
    std::stable_sort(clients.begin(), clients.end(),
                     [&](const auto& a, const auto& b) { return value(a) > value(b); });
}

std::vector<std::string> client_lines(const std::vector<controller::ClientSnapshot>& clients) {
    Table t({"client", ">to 2s", ">10s", ">40s", ">from 2s", ">10s", ">40s", ">flows", ">total", "state",
             "release"});
    for (const auto& c : clients)
        t.row({c.client.str(), human_rate(c.to_bits_per_s[0]), human_rate(c.to_bits_per_s[1]),
               human_rate(c.to_bits_per_s[2]), human_rate(c.from_bits_per_s[0]),
               human_rate(c.from_bits_per_s[1]), human_rate(c.from_bits_per_s[2]), std::to_string(c.flows),
               human_bytes(c.to_bytes + c.from_bytes), c.state.empty() ? "-" : c.state,
               c.release_in_ms ? "in " + human_duration(*c.release_in_ms) : ""});
    return t.lines("");
}

}  // namespace flowshaper::cli
