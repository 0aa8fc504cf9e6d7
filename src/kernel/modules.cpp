// libkmod: look a module up in the running kernel's module indices and insert it with its
// dependencies, as modprobe does, but in-process and without running modprobe.d commands.
#include "flowshaper/kernel/modules.hpp"

#include <libkmod.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <memory>

namespace flowshaper::kernel {

namespace {

struct CtxUnref {
    void operator()(kmod_ctx* c) const { kmod_unref(c); }
};
struct ModUnref {
    void operator()(kmod_module* m) const { kmod_module_unref(m); }
};
struct ListUnref {
    void operator()(kmod_list* l) const { kmod_module_unref_list(l); }
};
using Ctx = std::unique_ptr<kmod_ctx, CtxUnref>;
using Module = std::unique_ptr<kmod_module, ModUnref>;
using List = std::unique_ptr<kmod_list, ListUnref>;

bool exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

std::string hint_for(int err, const std::string& name) {
    switch (err) {
        case EPERM:
        case EACCES:
            return "loading kernel modules needs CAP_SYS_MODULE; load " + name +
                   " before flowshaper starts (as root: modprobe " + name +
                   ", or list it in /etc/modules-load.d/flowshaper.conf)";
        case ENOENT:
            return "the module's file is missing under /lib/modules (is the running kernel's modules "
                   "package installed?)";
        case ENOEXEC:
            return "the module file does not fit the running kernel";
        default:
            return "";
    }
}

// The module that `name` resolves to (an alias may name it), or null when kmod knows none.
Module lookup(kmod_ctx* ctx, const std::string& name) {
    kmod_list* raw = nullptr;
    if (kmod_module_new_from_lookup(ctx, name.c_str(), &raw) < 0 || raw == nullptr) return nullptr;
    List list(raw);
    return Module(kmod_module_get_module(list.get()));
}

Result<ModuleOutcome> load_one(kmod_ctx* ctx, const ModuleNeed& need, const ModuleOptions& options) {
    ModuleOutcome out{need.name, ModuleState::Present, {}};
    if (exists(options.sys_module + "/" + need.name)) return out;
    Module mod = ctx ? lookup(ctx, need.name) : nullptr;
    if (!mod) {
        out.state = ModuleState::Unknown;
        return out;
    }
    const int state = kmod_module_get_initstate(mod.get());
    if (state == KMOD_MODULE_BUILTIN || state == KMOD_MODULE_LIVE || state == KMOD_MODULE_COMING) return out;
    // IGNORE_COMMAND: an "install" line in modprobe.d would be run through a shell.
    const int rc = kmod_module_probe_insert_module(mod.get(), KMOD_PROBE_IGNORE_COMMAND, nullptr, nullptr,
                                                   nullptr, nullptr);
    if (rc == 0 || rc == -EEXIST) {
        out.state = ModuleState::Loaded;
        return out;
    }
    const int err = rc < 0 ? -rc : EPERM;  // > 0: refused by a blacklist (not asked for here)
    std::string text = std::strerror(err);
    if (auto hint = hint_for(err, need.name); !hint.empty()) text += " (" + hint + ")";
    if (!need.autoloaded) return make_error("load kernel module", need.name, err, text);
    out.state = ModuleState::Failed;
    out.detail = text;
    return out;
}

}  // namespace

std::string state_name(ModuleState state) {
    switch (state) {
        case ModuleState::Present:
            return "present";
        case ModuleState::Loaded:
            return "loaded";
        case ModuleState::Unknown:
            return "unknown to kmod";
        case ModuleState::Failed:
            return "not loaded";
    }
    return "?";
}

Result<std::vector<ModuleOutcome>> load_modules(const std::vector<ModuleNeed>& needs,
                                                const ModuleOptions& options) {
    const char* dir = options.modules_dir.empty() ? nullptr : options.modules_dir.c_str();
    Ctx ctx(kmod_new(dir, nullptr));  // null: no indices to read; every lookup answers "unknown"
    if (ctx) {
        // Its messages would go to stderr: what matters reaches the caller as an outcome.
        kmod_set_log_fn(
            ctx.get(), [](void*, int, const char*, int, const char*, const char*, va_list) {}, nullptr);
        kmod_load_resources(ctx.get());
    }
    std::vector<ModuleOutcome> out;
    for (const auto& need : needs) {
        auto one = load_one(ctx.get(), need, options);
        if (!one) return one.error();
        out.push_back(std::move(*one));
    }
    return out;
}

}  // namespace flowshaper::kernel
