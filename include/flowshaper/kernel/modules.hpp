// Kernel modules a backend needs, loaded through libkmod (what modprobe, udev and systemd use),
// never by exec: a module's "install" command from modprobe.d is not run.
//
// A stock distribution kernel builds most of what flowshaper uses as modules. The kernel loads
// most of them by itself on first use (request_module: tc kinds, netfilter tables and matches,
// nfnetlink subsystems, ip_set types, link kinds) — but not ip_tables/ip6_tables, whose socket
// options exist only once they are loaded: iptables loads those itself, and so must we.
#pragma once

#include <string>
#include <vector>

#include "flowshaper/common/result.hpp"

namespace flowshaper::kernel {

struct ModuleNeed {
    std::string name;         // as modprobe takes it: "ip_tables", "xt_connmark"
    bool autoloaded = false;  // the kernel loads it on first use: failing to load it here is no error
};

enum class ModuleState {
    Present,  // loaded already, or built into the kernel
    Loaded,   // inserted now, with its dependencies
    Unknown,  // kmod knows no such module: built into a kernel without module indices, or absent
    Failed,   // an autoloaded module that could not be loaded here (the kernel may still load it)
};

struct ModuleOutcome {
    std::string name;
    ModuleState state = ModuleState::Unknown;
    std::string detail;  // the error text when Failed
};

struct ModuleOptions {
    std::string modules_dir;                 // "" = /lib/modules/$(uname -r)
    std::string sys_module = "/sys/module";  // what is loaded (or built in with parameters)
};

// Loads every module of `needs` that is not present, in order. A module that is not autoloaded
// and cannot be loaded (not permitted without CAP_SYS_MODULE, a missing file, a refused insert)
// is an error that names it and says what to do; one that kmod does not know is left to the
// operation that needs it (on a kernel built without modules everything is built in).
Result<std::vector<ModuleOutcome>> load_modules(const std::vector<ModuleNeed>& needs,
                                                const ModuleOptions& options = {});

std::string state_name(ModuleState state);

}  // namespace flowshaper::kernel
