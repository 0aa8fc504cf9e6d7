#include "kernel_has.hpp"

#include <sys/stat.h>

#include "netns.hpp"

namespace flowshaper::testing {

bool kernel_has(const std::string& config, const std::string& module) {
    const std::string modinfo = "modinfo -F filename " + module + " >/dev/null 2>&1";
    struct stat st {};
    if (::stat("/proc/config.gz", &st) != 0) return sh(modinfo) == 0;
    if (sh("zcat /proc/config.gz | grep -qx '" + config + "=y'") == 0) return true;
    if (sh("zcat /proc/config.gz | grep -qx '" + config + "=m'") == 0) return sh(modinfo) == 0;
    return false;
}

}  // namespace flowshaper::testing
