// FakeManglePort: MangleEngine over an in-memory "kernel" table with libiptc's rules.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <set>

#include "flowshaper/kernel/mangle_fake_port.hpp"
#include "flowshaper/kernel/mangle_iptc_port.hpp"
#include "mangle_engine.hpp"

namespace flowshaper::kernel {

namespace {

using mangle::Bytes;
using mangle::TableRule;

const std::set<std::string> kBuiltins{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"};

// One family's table as the kernel holds it.
struct FakeKernelTable {
    std::map<std::string, std::vector<TableRule>> chains{
        {"PREROUTING", {}}, {"INPUT", {}}, {"FORWARD", {}}, {"OUTPUT", {}}, {"POSTROUTING", {}}};
    uint64_t generation = 0;  // bumped by every change, as the kernel's rule count would be
};

TableRule make_rule(net::Family family, Bytes entry) {
    std::string target = mangle::target_name(family, entry);
    return TableRule{std::move(entry), std::move(target)};
}

Error fake_error(const std::string& operation, const std::string& object, int err) {
    return make_error(operation, object, err, mangle::explain(err, std::strerror(err)));
}

}  // namespace

struct FakeManglePort::Impl : mangle::MangleTableSource {
    std::map<net::Family, FakeKernelTable> kernel{{net::Family::V4, {}}, {net::Family::V6, {}}};
    int fail_err = 0;
    int fail_count = 0;
    bool fail_applied = false;
    std::optional<net::Family> concurrent_change;
    uint64_t attempts = 0;
    bool acct_on = false;
    int acct_err = 0;
    bool conntrack_loaded = false;  // as the kernel: once a rule that needs conntrack went in
    mangle::MangleEngine engine{*this, 5};
    // The kernel's sets as ipset keeps them: name <-> index, and the members (as added).
    std::map<std::string, uint16_t> set_ids;
    uint16_t next_set_id = 0;
    std::vector<CappedClient> member_list;
    int set_err = 0;
    uint64_t set_changes = 0;

    Result<uint16_t> set_index(const std::string& name) const {
        auto it = set_ids.find(name);
        if (it == set_ids.end()) return fake_error("find", "ipset " + name, ENOENT);
        return it->second;
    }
    Result<std::string> set_name(uint16_t index) const {
        for (const auto& [name, id] : set_ids)
            if (id == index) return name;
        return fake_error("find", "ipset #" + std::to_string(index), ENOENT);
    }
    void create_sets(net::Family family, size_t count) {
        for (size_t rule = 0; rule < count; ++rule)
            if (set_ids.emplace(ipset_name(family, rule), next_set_id).second) ++next_set_id;
    }
    // Destroys the family's sets of rules >= from, with their members.
    void destroy_sets(net::Family family, size_t from) {
        std::erase_if(set_ids, [&](const auto& entry) {
            auto id = parse_ipset_name(entry.first);
            return id && id->second == family && id->first >= from;
        });
        std::erase_if(member_list, [&](const CappedClient& m) {
            return m.client.family == family && !set_ids.count(ipset_name(family, m.rule));
        });
    }

    Result<std::unique_ptr<mangle::MangleTable>> open(net::Family family) override;
    Status commit(net::Family family, const FakeKernelTable& snapshot);
    void append_foreign(net::Family family, const std::string& chain, const std::string& target) {
        FakeKernelTable& k = kernel[family];
        k.chains[chain].push_back(make_rule(family, mangle::build_jump_rule(family, target)));
        ++k.generation;
    }
};

namespace {

class FakeTable final : public mangle::MangleTable {
public:
    using CommitFn = std::function<Status(net::Family, const FakeKernelTable&)>;
    using IndexFn = std::function<Result<uint16_t>(const std::string&)>;
    using NameFn = std::function<Result<std::string>(uint16_t)>;
    FakeTable(CommitFn commit, IndexFn index, NameFn name, net::Family family, FakeKernelTable snapshot)
        : commit_(std::move(commit)),
          index_(std::move(index)),
          name_(std::move(name)),
          family_(family),
          t_(std::move(snapshot)) {}

    bool has_chain(const std::string& chain) override { return t_.chains.count(chain) != 0; }
    std::vector<TableRule> rules(const std::string& chain) override {
        auto it = t_.chains.find(chain);
        return it == t_.chains.end() ? std::vector<TableRule>{} : it->second;
    }
    Status create_chain(const std::string& chain) override {
        if (has_chain(chain)) return fake_error("create chain", chain, EEXIST);
        t_.chains[chain];
        return {};
    }
    Status delete_chain(const std::string& chain) override {
        if (!has_chain(chain)) return fake_error("delete chain", chain, ENOENT);
        if (kBuiltins.count(chain)) return fake_error("delete chain", chain, EPERM);
        if (!t_.chains[chain].empty()) return fake_error("delete chain", chain, ENOTEMPTY);
        for (const auto& [name, rules] : t_.chains)
            for (const TableRule& r : rules)
                if (r.target == chain) return fake_error("delete chain", chain, EMLINK);
        t_.chains.erase(chain);
        return {};
    }
    Status insert(const std::string& chain, unsigned position, const Bytes& entry) override {
        auto* rules = find(chain);
        if (!rules) return fake_error("insert rule in", chain, ENOENT);
        if (position > rules->size()) return fake_error("insert rule in", chain, E2BIG);
        rules->insert(rules->begin() + position, make_rule(family_, entry));
        return {};
    }
    Status replace(const std::string& chain, unsigned position, const Bytes& entry) override {
        auto* rules = find(chain);
        if (!rules) return fake_error("replace rule in", chain, ENOENT);
        if (position >= rules->size()) return fake_error("replace rule in", chain, E2BIG);
        (*rules)[position] = make_rule(family_, entry);
        return {};
    }
    Status append(const std::string& chain, const Bytes& entry) override {
        auto* rules = find(chain);
        if (!rules) return fake_error("append rule to", chain, ENOENT);
        rules->push_back(make_rule(family_, entry));
        return {};
    }
    Status erase(const std::string& chain, unsigned position) override {
        auto* rules = find(chain);
        if (!rules) return fake_error("delete rule from", chain, ENOENT);
        if (position >= rules->size()) return fake_error("delete rule from", chain, E2BIG);
        rules->erase(rules->begin() + position);
        return {};
    }
    Status commit() override { return commit_(family_, t_); }
    Result<uint16_t> set_index(const std::string& name) override { return index_(name); }
    Result<std::string> set_name(uint16_t index) override { return name_(index); }

private:
    std::vector<TableRule>* find(const std::string& chain) {
        auto it = t_.chains.find(chain);
        return it == t_.chains.end() ? nullptr : &it->second;
    }

    CommitFn commit_;
    IndexFn index_;
    NameFn name_;
    net::Family family_;
    FakeKernelTable t_;
};

}  // namespace

Result<std::unique_ptr<mangle::MangleTable>> FakeManglePort::Impl::open(net::Family family) {
    return std::unique_ptr<mangle::MangleTable>(std::make_unique<FakeTable>(
        [this](net::Family f, const FakeKernelTable& snapshot) { return commit(f, snapshot); },
        [this](const std::string& name) { return set_index(name); },
        [this](uint16_t index) { return set_name(index); }, family, kernel[family]));
}

Status FakeManglePort::Impl::commit(net::Family family, const FakeKernelTable& snapshot) {
    ++attempts;
    if (concurrent_change) {
        append_foreign(*concurrent_change, kMangleHook, "ACCEPT");
        concurrent_change.reset();
    }
    const std::string object = mangle::table_name(family);
    FakeKernelTable& k = kernel[family];
    if (fail_count > 0 && !fail_applied) {
        --fail_count;
        return fake_error("commit table", object, fail_err);
    }
    if (k.generation != snapshot.generation) return fake_error("commit table", object, EAGAIN);
    k.chains = snapshot.chains;
    ++k.generation;
    conntrack_loaded = true;
    if (fail_count > 0) {
        --fail_count;
        return fake_error("commit table", object, fail_err);
    }
    return {};
}

FakeManglePort::FakeManglePort() : impl_(std::make_unique<Impl>()) {}
FakeManglePort::~FakeManglePort() = default;

void FakeManglePort::set_conntrack_loaded(bool loaded) {
    impl_->conntrack_loaded = loaded;
}

void FakeManglePort::fail_next_commits(int err, int count, bool applied) {
    impl_->fail_err = err;
    impl_->fail_count = count;
    impl_->fail_applied = applied;
}

void FakeManglePort::change_before_next_commit(net::Family family) {
    impl_->concurrent_change = family;
}

void FakeManglePort::add_foreign_rule(net::Family family, const std::string& chain,
                                      const std::string& target) {
    impl_->append_foreign(family, chain, target);
}

std::vector<std::string> FakeManglePort::lines(net::Family family) const {
    const FakeKernelTable& k = impl_->kernel[family];
    std::vector<std::string> out;
    for (const auto& [name, rules] : k.chains)
        if (!kBuiltins.count(name)) out.push_back(":" + name + " -");
    auto list = [&](const std::string& name, const std::vector<TableRule>& rules) {
        for (const TableRule& r : rules) {
            auto known = mangle::parse_rule(family, r.entry, r.target);
            std::string set;
            if (const auto* c = known ? std::get_if<mangle::CappedRule>(&*known) : nullptr)
                if (auto n = impl_->set_name(c->set_index)) set = *n;
            out.push_back("-A " + name + " " + (known ? mangle::describe(*known, set) : "<unknown rule>"));
        }
    };
    for (const char* builtin : {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})
        list(builtin, k.chains.at(builtin));
    for (const auto& [name, rules] : k.chains)
        if (!kBuiltins.count(name)) list(name, rules);
    return out;
}

uint64_t FakeManglePort::commit_attempts() const {
    return impl_->attempts;
}
void FakeManglePort::set_conntrack_accounting(bool on) {
    impl_->acct_on = on;
}
bool FakeManglePort::conntrack_accounting() const {
    return impl_->acct_on;
}
void FakeManglePort::fail_conntrack_accounting(int err) {
    impl_->acct_err = err;
}

// As the libiptc port: the sets first, the rules, then the sets no rule refers to now.
Status FakeManglePort::ensure(net::Family family, const MangleSpec& spec) {
    if (auto st = validate(spec); !st) return st;
    impl_->create_sets(family, spec.capped.size());
    if (auto st = impl_->engine.ensure(family, spec); !st) return st;
    impl_->destroy_sets(family, spec.capped.size());
    return {};
}
Status FakeManglePort::remove_all(net::Family family) {
    if (auto st = impl_->engine.remove_all(family); !st) return st;
    impl_->destroy_sets(family, 0);
    return {};
}
Result<std::optional<MangleSpec>> FakeManglePort::read(net::Family family) {
    return impl_->engine.read(family);
}

void FakeManglePort::fail_set_operations(int err) {
    impl_->set_err = err;
}
uint64_t FakeManglePort::set_changes() const {
    return impl_->set_changes;
}

// The set of (rule, family) exists once a spec with capped matches for that rule was ensured.
Status FakeManglePort::add_capped(const CappedClient& m) {
    const std::string object = "ipset " + ipset_name(m.client.family, m.rule);
    if (impl_->set_err) return fake_error("add " + m.client.str() + " to", object, impl_->set_err);
    if (!impl_->set_ids.count(ipset_name(m.client.family, m.rule)))
        return fake_error("add " + m.client.str() + " to", object, ENOENT);
    if (std::find(impl_->member_list.begin(), impl_->member_list.end(), m) != impl_->member_list.end())
        return {};
    impl_->member_list.push_back(m);
    ++impl_->set_changes;
    return {};
}
Status FakeManglePort::remove_capped(const CappedClient& m) {
    const std::string object = "ipset " + ipset_name(m.client.family, m.rule);
    if (impl_->set_err) return fake_error("remove " + m.client.str() + " from", object, impl_->set_err);
    if (std::erase(impl_->member_list, m) == 0) return {};
    ++impl_->set_changes;
    return {};
}
Result<std::vector<CappedClient>> FakeManglePort::read_capped() {
    if (impl_->set_err) return fake_error("list", "capped-client sets", impl_->set_err);
    return impl_->member_list;
}
Status FakeManglePort::flush_capped() {
    if (impl_->set_err) return fake_error("flush", "capped-client sets", impl_->set_err);
    if (!impl_->member_list.empty()) ++impl_->set_changes;
    impl_->member_list.clear();
    return {};
}
uint64_t FakeManglePort::commits() const {
    return impl_->engine.commits();
}

Result<bool> FakeManglePort::ensure_conntrack_accounting() {
    const std::string path = "/proc/sys/net/netfilter/nf_conntrack_acct";
    if (impl_->acct_err != 0)
        return make_error("write", path, impl_->acct_err, std::strerror(impl_->acct_err));
    // The sysctl exists only once nf_conntrack is loaded, which a rule that needs it does.
    if (!impl_->conntrack_loaded) return make_error("write", path, ENOENT, std::strerror(ENOENT));
    bool was_on = impl_->acct_on;
    impl_->acct_on = true;
    return was_on;
}

}  // namespace flowshaper::kernel
