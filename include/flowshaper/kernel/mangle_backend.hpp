// Which mangle backend runs (settings.firewall), and the port that wraps it so that remove_all()
// also removes the other backend's objects (a switch of `firewall` between runs, a flush, a stop
// or a failed start leaves nothing of either behind).
#pragma once

#include <memory>
#include <string>

#include "flowshaper/kernel/mangle_iptc_port.hpp"
#include "flowshaper/kernel/mangle_nft_port.hpp"
#include "flowshaper/kernel/mangle_port.hpp"
#include "flowshaper/kernel/modules.hpp"
#include "flowshaper/policy/policy.hpp"

namespace flowshaper::kernel {

enum class MangleBackend { Nftables, Iptables };

struct BackendChoice {
    MangleBackend backend = MangleBackend::Nftables;
    std::string reason;  // one line for the log, `status` and `plan`
};

// What the host offers, probed in the current network namespace (the inputs of choose_backend).
struct BackendProbe {
    bool nftables_usable = false;  // libnftables initialises and the kernel answers nf_tables
    std::string nftables_error;    // why not, when not
    bool legacy_in_use = false;    // the legacy iptables tables hold rules other than flowshaper's
};
BackendProbe probe_backends();

// auto: nftables unless the legacy iptables tables hold rules (the host uses iptables-legacy,
// whose rules would run beside ours in a different order than the admin sees) or nftables is
// not usable. An explicit choice is taken as it is (its errors come from the port itself).
BackendChoice choose_backend(policy::Firewall setting, const BackendProbe& probe);

// The chosen backend's port, wrapped: remove_all() removes both backends' objects (the other
// one's failure because it is not available here is ignored). Errors when the chosen backend
// cannot be created.
Result<std::unique_ptr<ManglePort>> make_mangle_port(MangleBackend backend, IptcOptions iptc = {},
                                                     NftOptions nft = {});

// Wraps any port (a fake in tests) with a second one whose objects remove_all() also removes.
std::unique_ptr<ManglePort> with_cleanup_of(std::unique_ptr<ManglePort> chosen,
                                            std::unique_ptr<ManglePort> other);

std::string backend_name(MangleBackend backend);

// The kernel modules a backend's objects for one family need, for load_modules() before the
// first write: legacy iptables needs ip_tables/ip6_tables (nothing loads them but their user);
// the rest the kernel would load by itself, and loading them here says early what is missing.
std::vector<ModuleNeed> backend_modules(MangleBackend backend, net::Family family);

}  // namespace flowshaper::kernel
