// The real mangle port: libiptc snapshots taken under the xtables lock, edited by MangleEngine,
// committed atomically.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <fstream>

#include "flowshaper/kernel/mangle_backend.hpp"
#include "flowshaper/kernel/mangle_iptc_port.hpp"
#include "ipset_session.hpp"
#include "ipset_sets.hpp"
#include "mangle_engine.hpp"
#include "mangle_iptc.hpp"

namespace flowshaper::kernel {

Result<bool> enable_conntrack_accounting(const std::string& path);  // mangle_conntrack_acct.cpp

namespace mangle {

namespace {

// An open file descriptor, closed on destruction.
class Fd {
public:
    explicit Fd(int fd = -1) : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd& operator=(Fd&& o) noexcept {
        std::swap(fd_, o.fd_);
        return *this;
    }
    ~Fd() {
        if (fd_ >= 0) close(fd_);
    }
    int get() const { return fd_; }

private:
    int fd_;
};

// The lock iptables-legacy takes around its init ... commit: flock(LOCK_EX) on the lock file.
Result<Fd> take_xtables_lock(const IptcOptions& options) {
    std::string path = options.lock_path;
    if (path.empty()) {
        const char* env = std::getenv("XTABLES_LOCKFILE");
        path = env && *env ? env : "/run/xtables.lock";
    }
    Fd fd(open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600));
    if (fd.get() < 0)
        return make_error("open xtables lock", path, errno, explain(errno, std::strerror(errno)));
    const auto deadline = std::chrono::steady_clock::now() + options.lock_timeout;
    while (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR)
            return make_error("take xtables lock", path, errno, std::strerror(errno));
        if (std::chrono::steady_clock::now() >= deadline)
            return make_error("take xtables lock", path, EWOULDBLOCK,
                              "another program (iptables?) held it for more than " +
                                  std::to_string(options.lock_timeout.count()) + " ms");
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return fd;
}

using Handle = std::unique_ptr<xtc_handle, void (*)(xtc_handle*)>;

class IptcTable final : public MangleTable {
public:
    IptcTable(const IptcApi& api, net::Family family, Fd lock, Handle handle)
        : api_(api), family_(family), lock_(std::move(lock)), handle_(std::move(handle)) {}
    ~IptcTable() override { handle_.reset(); }  // free the handle before the lock goes

    bool has_chain(const std::string& chain) override { return api_.is_chain(chain.c_str(), h()) != 0; }

    std::vector<TableRule> rules(const std::string& chain) override {
        std::vector<TableRule> out;
        for (const void* e = api_.first_rule(chain.c_str(), h()); e; e = api_.next_rule(e, h())) {
            const auto* bytes = static_cast<const uint8_t*>(e);
            TableRule rule{Bytes(bytes, bytes + next_offset(family_, bytes)), {}};
            const char* target = api_.get_target(e, h());
            rule.target = target ? target : "";
            out.push_back(std::move(rule));
        }
        return out;
    }

    Status create_chain(const std::string& chain) override {
        return check(api_.create_chain(chain.c_str(), h()), "create chain", chain);
    }
    Status delete_chain(const std::string& chain) override {
        return check(api_.delete_chain(chain.c_str(), h()), "delete chain", chain);
    }
    Status insert(const std::string& chain, unsigned position, const Bytes& entry) override {
        return check(api_.insert(chain.c_str(), entry.data(), position, h()), "insert rule in", chain);
    }
    Status replace(const std::string& chain, unsigned position, const Bytes& entry) override {
        return check(api_.replace(chain.c_str(), entry.data(), position, h()), "replace rule in", chain);
    }
    Status append(const std::string& chain, const Bytes& entry) override {
        return check(api_.append(chain.c_str(), entry.data(), h()), "append rule to", chain);
    }
    Status erase(const std::string& chain, unsigned position) override {
        return check(api_.erase(chain.c_str(), position, h()), "delete rule from", chain);
    }
    Status commit() override { return check(api_.commit(h()), "commit table", ""); }
    Result<uint16_t> set_index(const std::string& name) override { return ipset::index_of(name); }
    Result<std::string> set_name(uint16_t index) override { return ipset::name_of(index); }

private:
    xtc_handle* h() { return handle_.get(); }

    Status check(int ok, const std::string& operation, const std::string& chain) {
        if (ok) return {};
        int err = errno;
        std::string object =
            chain.empty() ? table_name(family_) : "chain " + chain + " in " + table_name(family_);
        return make_error(operation, object, err, explain(err, api_.strerror(err)));
    }

    const IptcApi& api_;
    net::Family family_;
    Fd lock_;
    Handle handle_;
};

class IptcSource final : public MangleTableSource {
public:
    explicit IptcSource(IptcOptions options) : options_(std::move(options)) {}

    Result<std::unique_ptr<MangleTable>> open(net::Family family) override {
        auto lock = take_xtables_lock(options_);
        if (!lock) return lock.error();
        const IptcApi& api = family == net::Family::V4 ? ip4tc_api() : ip6tc_api();
        Handle handle(api.init("mangle"), api.free);
        if (!handle) {
            int err = errno;
            return make_error("read table", table_name(family), err, explain(err, api.strerror(err)));
        }
        return std::unique_ptr<MangleTable>(
            std::make_unique<IptcTable>(api, family, std::move(*lock), std::move(handle)));
    }

    const IptcOptions& options() const { return options_; }

private:
    IptcOptions options_;
};

class IptcManglePort final : public ManglePort {
public:
    explicit IptcManglePort(IptcOptions options)
        : source_(std::move(options)),
          engine_(source_, source_.options().max_attempts),
          sets_(static_cast<bool>(ipset::our_sets(net::Family::V4))) {}

    std::string backend() const override { return "iptables"; }
    // The sets first (the rules refer to them), the rules, then the sets no rule refers to now.
    Status ensure(net::Family family, const MangleSpec& spec) override {
        if (auto st = validate(spec); !st) return st;
        if (auto st = load_modules_once(family); !st) return st;
        if (auto st = ipset::ensure_sets(family, spec.capped.size()); !st) return st;
        if (auto st = engine_.ensure(family, spec); !st) return st;
        return ipset::destroy_sets(family, spec.capped.size());
    }
    Status remove_all(net::Family family) override {
        if (auto st = engine_.remove_all(family); !st) return st;
        auto st = ipset::destroy_sets(family);
        if (!st && absent(st.error())) return {};  // no ip_set here: no set of ours either
        return st;
    }
    Result<std::optional<MangleSpec>> read(net::Family family) override { return engine_.read(family); }
    Status add_capped(const CappedClient& m) override { return ipset::add(m); }
    Status remove_capped(const CappedClient& m) override { return ipset::remove(m); }
    Result<std::vector<CappedClient>> read_capped() override { return ipset::members(); }
    Status flush_capped() override { return ipset::flush_all(); }
    Result<bool> ensure_conntrack_accounting() override {
        return enable_conntrack_accounting(source_.options().conntrack_acct_path);
    }
    uint64_t commits() const override { return engine_.commits(); }
    // Whether the kernel's ip_set answered when the port was made (CONFIG_IP_SET).
    bool has_kernel_sets() const override { return sets_; }

private:
    static bool absent(const Error& e) { return e.code == EPROTONOSUPPORT || e.code == ENOPROTOOPT; }

    // Before the first write of a family only: reading and removing never load anything (no
    // ip_tables loaded means no rule of ours to read or remove).
    Status load_modules_once(net::Family family) {
        bool& done = modules_loaded_[family == net::Family::V4 ? 0 : 1];
        if (done || !source_.options().load_modules) return {};
        auto loaded = load_modules(backend_modules(MangleBackend::Iptables, family));
        if (!loaded) return loaded.error();
        done = true;
        return {};
    }

    IptcSource source_;
    bool modules_loaded_[2] = {false, false};
    MangleEngine engine_;
    bool sets_;
};

}  // namespace

}  // namespace mangle

namespace mangle {
namespace {

// Whether one legacy table holds a rule that is not flowshaper's chain or its jump.
Result<bool> table_has_foreign_rules(const IptcApi& api, const std::string& table) {
    Handle handle(api.init(table.c_str()), api.free);
    if (!handle) {
        int err = errno;
        return make_error("read table", table, err, explain(err, api.strerror(err)));
    }
    // The chain iterators of both flavours have the same shape; reach them through rules().
    for (const char* chain : {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}) {
        if (!api.is_chain(chain, handle.get())) continue;
        for (const void* e = api.first_rule(chain, handle.get()); e; e = api.next_rule(e, handle.get())) {
            const char* target = api.get_target(e, handle.get());
            if (!target || std::string(target) != kMangleChain) return true;
        }
    }
    return false;
}

// The legacy tables instantiated in the calling thread's namespace (none: legacy is unused).
std::vector<std::string> legacy_tables(const std::string& names_file) {
    std::vector<std::string> out;
    std::ifstream in(names_file);
    for (std::string name; std::getline(in, name);)
        if (!name.empty()) out.push_back(name);
    return out;
}

}  // namespace
}  // namespace mangle

Result<bool> legacy_iptables_in_use() {
    using namespace mangle;
    const std::pair<const char*, const IptcApi*> families[] = {
        {"/proc/thread-self/net/ip_tables_names", &ip4tc_api()},
        {"/proc/thread-self/net/ip6_tables_names", &ip6tc_api()}};
    for (const auto& [file, api] : families) {
        for (const std::string& table : legacy_tables(file)) {
            auto foreign = table_has_foreign_rules(*api, table);
            if (!foreign) return foreign.error();
            if (*foreign) return true;
        }
    }
    return false;
}

std::unique_ptr<ManglePort> make_iptc_mangle_port(IptcOptions options) {
    if (options.max_attempts < 1) options.max_attempts = 1;
    return std::make_unique<mangle::IptcManglePort>(std::move(options));
}

}  // namespace flowshaper::kernel
