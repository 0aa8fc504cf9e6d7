// The nftables mangle port: reads table inet flowshaper as JSON, compares, and replaces the
// whole table in one transaction when it differs (see mangle_nft_port.hpp).
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "flowshaper/kernel/mangle_backend.hpp"
#include "flowshaper/kernel/mangle_nft_port.hpp"
#include "nft_events.hpp"
#include "nft_rules.hpp"
#include "nft_session.hpp"

namespace flowshaper::kernel {

Result<bool> enable_conntrack_accounting(const std::string& path);  // mangle_conntrack_acct.cpp

namespace nft {
namespace {

const std::string kTableObject = std::string("table inet ") + kNftTable;

class NftManglePort final : public ManglePort {
public:
    NftManglePort(NftOptions options, std::optional<EventSocket> events)
        : options_(std::move(options)), events_(std::move(events)) {}

    std::string backend() const override { return "nftables"; }

    Status ensure(net::Family family, const MangleSpec& spec) override {
        if (auto st = validate(spec); !st) return st;
        if (options_.load_modules && !modules_loaded_) {
            // The kernel would load them itself (nfnetlink, nft expressions): only a refused
            // insert of one it cannot load is an error.
            auto loaded = load_modules(backend_modules(MangleBackend::Nftables, family));
            if (!loaded) return loaded.error();
            modules_loaded_ = true;
        }
        auto state = load();
        if (!state && state.error().code != EPROTO) return state.error();
        TableState now = state ? *state : TableState{};  // not ours: replaced whole
        std::optional<MangleSpec>& mine = family == net::Family::V4 ? now.v4 : now.v6;
        if (state && mine == spec) return {};
        mine = spec;
        return write(now);
    }

    Status remove_all(net::Family family) override {
        auto state = load();
        if (!state && state.error().code != EPROTO) return state.error();
        if (state && !state->exists) return {};
        TableState now = state ? *state : TableState{};  // not ours: the whole table goes
        (family == net::Family::V4 ? now.v4 : now.v6).reset();
        return write(now);
    }

    Result<std::optional<MangleSpec>> read(net::Family family) override {
        auto state = load();
        if (!state) return state.error();
        return family == net::Family::V4 ? state->v4 : state->v6;
    }

    Status add_capped(const CappedClient& m) override { return element("add", m); }
    Status remove_capped(const CappedClient& m) override {
        auto st = element("delete", m);
        if (!st && st.error().code == ENOENT) return {};  // not there (or no set): nothing to remove
        return st;
    }
    Result<std::vector<CappedClient>> read_capped() override {
        auto state = load();
        if (!state) return state.error();
        return state->members;
    }
    Status flush_capped() override {
        auto state = load();
        if (!state) return state.error();
        std::string commands;
        for (auto family : {net::Family::V4, net::Family::V6}) {
            const auto& spec = family == net::Family::V4 ? state->v4 : state->v6;
            for (size_t i = 0; spec && i < spec->capped.size(); ++i)
                commands += "flush set inet " + std::string(kNftTable) + " " + set_name(family, i) + "\n";
        }
        if (commands.empty() || state->members.empty()) return {};
        return run(commands, "flush", "capped-client sets in " + kTableObject);
    }

    Result<bool> ensure_conntrack_accounting() override {
        return enable_conntrack_accounting(options_.conntrack_acct_path);
    }
    int change_fd() override { return events_ ? events_->fd() : -1; }
    bool drain_changes() override { return events_ && events_->drain(); }
    uint64_t commits() const override { return commits_; }
    bool has_kernel_sets() const override { return true; }

private:
    // One libnftables context per network namespace, kept between calls: a context's netlink
    // socket belongs to the namespace current when it was made, and making and freeing one per
    // call cost ~10 ms each (closing its socket waits in the kernel). The namespace is known by
    // its inode, which cannot be reused while our socket holds the namespace.
    Result<Session*> session(bool json) {
        struct stat st {};
        if (stat("/proc/thread-self/ns/net", &st) != 0)
            return make_error("identify", "the current network namespace", errno, std::strerror(errno));
        if (!session_ || netns_ != st.st_ino) {
            auto fresh = Session::open(json);
            if (!fresh) return fresh.error();
            session_.emplace(std::move(*fresh));
            netns_ = st.st_ino;
        }
        session_->json_output(json);
        return &*session_;
    }

    // The table as the kernel has it; exists = false when there is none.
    Result<TableState> load() {
        auto session = this->session(true);
        if (!session) return session.error();
        auto out = (*session)->run("list table inet " + std::string(kNftTable), "list", kTableObject);
        if (!out && out.error().code == ENOENT) return TableState{};
        if (!out) return out.error();
        return parse_table(*out);
    }

    Status run(const std::string& commands, const std::string& operation, const std::string& object) {
        auto session = this->session(false);
        if (!session) return session.error();
        auto out = (*session)->run(commands, operation, object);
        if (!out) return out.error();
        ++commits_;
        return {};
    }

    // Replaces the table with `state` (members of sets that no longer exist dropped), or
    // deletes it when neither family is left.
    Status write(TableState state) {
        auto has_set = [&](const CappedClient& m) {
            const auto& spec = m.client.family == net::Family::V4 ? state.v4 : state.v6;
            return spec && m.rule < spec->capped.size();
        };
        std::erase_if(state.members, [&](const CappedClient& m) { return !has_set(m); });
        return run(render_nft_table(state.v4, state.v6, state.members), "replace", kTableObject);
    }

    Status element(const std::string& verb, const CappedClient& m) {
        const std::string set = set_name(m.client.family, m.rule);
        return run(verb + " element inet " + kNftTable + " " + set + " { " + m.client.str() + " }\n",
                   verb + " " + m.client.str() + " in", "set " + set + " of " + kTableObject);
    }

    NftOptions options_;
    std::optional<EventSocket> events_;
    bool modules_loaded_ = false;
    std::optional<Session> session_;
    ino_t netns_ = 0;
    uint64_t commits_ = 0;
};

}  // namespace
}  // namespace nft

Result<std::unique_ptr<ManglePort>> make_nft_mangle_port(NftOptions options) {
    // A first context proves the library and the kernel's nf_tables answer.
    auto session = nft::Session::open(true);
    if (!session) return session.error();
    if (auto out = session->run("list tables", "list", "nf_tables"); !out) return out.error();
    std::optional<nft::EventSocket> events;
    if (options.events) {
        auto sock = nft::EventSocket::open();
        if (!sock) return sock.error();
        events.emplace(std::move(*sock));
    }
    return std::unique_ptr<ManglePort>(
        std::make_unique<nft::NftManglePort>(std::move(options), std::move(events)));
}

}  // namespace flowshaper::kernel
