// What the running kernel has, as a reader other than flowshaper says it: for tests that check
// whichever path the product chose (fw or u32, fq_codel or bfifo), never assuming either.
#pragma once

#include <string>

namespace flowshaper::testing {

// /proc/config.gz through zcat where the kernel carries its config (`config` =y, or =m with the
// module installed), else kmod's modinfo (which knows built-in modules from modules.builtin.modinfo).
bool kernel_has(const std::string& config, const std::string& module);

}  // namespace flowshaper::testing
