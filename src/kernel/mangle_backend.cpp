// Picks the mangle backend and wraps its port so that remove_all() clears both backends.
#include "flowshaper/kernel/mangle_backend.hpp"

#include <cerrno>

#include "nft_session.hpp"

namespace flowshaper::kernel {

std::string backend_name(MangleBackend backend) {
    return backend == MangleBackend::Nftables ? "nftables" : "iptables";
}

std::vector<ModuleNeed> backend_modules(MangleBackend backend, net::Family family) {
    const bool v4 = family == net::Family::V4;
    if (backend == MangleBackend::Nftables) return {{"nf_tables", true}, {"nft_ct", true}};
    std::vector<ModuleNeed> out{{v4 ? "ip_tables" : "ip6_tables", false},
                                {v4 ? "iptable_mangle" : "ip6table_mangle", true}};
    // The matches and targets of the chain (mangle_xt_rules.cpp) and the capped-client sets.
    for (const char* m :
         {"xt_connmark", "xt_DSCP", "xt_connbytes", "xt_multiport", "xt_comment", "xt_set", "ip_set_hash_ip"})
        out.push_back({m, true});
    return out;
}

BackendProbe probe_backends() {
    BackendProbe probe;
    auto session = nft::Session::open(true);
    auto listed =
        session ? session->run("list tables", "list", "nf_tables") : Result<std::string>(session.error());
    probe.nftables_usable = static_cast<bool>(listed);
    if (!listed) probe.nftables_error = listed.error().text();
    auto legacy = legacy_iptables_in_use();
    probe.legacy_in_use = legacy && *legacy;
    return probe;
}

BackendChoice choose_backend(policy::Firewall setting, const BackendProbe& probe) {
    switch (setting) {
        case policy::Firewall::Nftables:
            return {MangleBackend::Nftables, "firewall = \"nftables\" in the policy"};
        case policy::Firewall::Iptables:
            return {MangleBackend::Iptables, "firewall = \"iptables\" in the policy"};
        case policy::Firewall::Auto:
            break;
    }
    if (!probe.nftables_usable)
        return {MangleBackend::Iptables, "firewall = \"auto\": nftables is not usable here (" +
                                             probe.nftables_error + "): legacy iptables (libiptc)"};
    if (probe.legacy_in_use)
        return {
            MangleBackend::Iptables,
            "firewall = \"auto\": the legacy iptables tables hold rules (this host uses iptables-legacy): "
            "libiptc, so that flowshaper's rules sit where the admin's are"};
    return {
        MangleBackend::Nftables,
        "firewall = \"auto\": nf_tables answers and legacy iptables holds no rules: table inet flowshaper"};
}

namespace {

// Errors that mean "this backend does not exist here", so it has nothing of ours to remove.
bool absent(const Error& e) {
    return e.code == ENOENT || e.code == EPROTONOSUPPORT || e.code == EOPNOTSUPP || e.code == ENOPROTOOPT ||
           e.code == EAFNOSUPPORT;
}

class CleaningPort final : public ManglePort {
public:
    CleaningPort(std::unique_ptr<ManglePort> chosen, std::unique_ptr<ManglePort> other)
        : chosen_(std::move(chosen)), other_(std::move(other)) {}

    std::string backend() const override { return chosen_->backend(); }
    Status ensure(net::Family f, const MangleSpec& spec) override { return chosen_->ensure(f, spec); }
    Status remove_all(net::Family f) override {
        Status first = chosen_->remove_all(f);
        if (other_) {
            Status second = other_->remove_all(f);
            if (first && !second && !absent(second.error())) return second;
        }
        return first;
    }
    Result<std::optional<MangleSpec>> read(net::Family f) override { return chosen_->read(f); }
    Result<std::optional<MangleSpec>> read_any(net::Family f) override {
        auto mine = chosen_->read(f);
        if ((mine && *mine) || !other_) return mine;
        auto theirs = other_->read(f);
        return theirs && *theirs ? theirs : mine;
    }
    Status add_capped(const CappedClient& m) override { return chosen_->add_capped(m); }
    Status remove_capped(const CappedClient& m) override { return chosen_->remove_capped(m); }
    Result<std::vector<CappedClient>> read_capped() override { return chosen_->read_capped(); }
    Status flush_capped() override { return chosen_->flush_capped(); }
    Result<bool> ensure_conntrack_accounting() override { return chosen_->ensure_conntrack_accounting(); }
    int change_fd() override { return chosen_->change_fd(); }
    bool drain_changes() override { return chosen_->drain_changes(); }
    uint64_t commits() const override { return chosen_->commits(); }
    bool has_kernel_sets() const override { return chosen_->has_kernel_sets(); }

private:
    std::unique_ptr<ManglePort> chosen_;
    std::unique_ptr<ManglePort> other_;
};

}  // namespace

std::unique_ptr<ManglePort> with_cleanup_of(std::unique_ptr<ManglePort> chosen,
                                            std::unique_ptr<ManglePort> other) {
    return std::make_unique<CleaningPort>(std::move(chosen), std::move(other));
}

Result<std::unique_ptr<ManglePort>> make_mangle_port(MangleBackend backend, IptcOptions iptc,
                                                     NftOptions nft) {
    if (backend == MangleBackend::Iptables) {
        nft.events = false;
        auto other = make_nft_mangle_port(nft);  // absent nf_tables: nothing of ours to remove there
        return with_cleanup_of(make_iptc_mangle_port(std::move(iptc)), other ? std::move(*other) : nullptr);
    }
    auto chosen = make_nft_mangle_port(std::move(nft));
    if (!chosen) return chosen.error();
    return with_cleanup_of(std::move(*chosen), make_iptc_mangle_port(std::move(iptc)));
}

}  // namespace flowshaper::kernel
