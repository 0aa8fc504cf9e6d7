// The subcommands of `flowshaper`. Each returns the process exit status:
// 0 success, 1 failure (invalid policy, kernel error), 2 usage error.
#pragma once

#include <string>
#include <vector>

namespace flowshaper::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFail = 1;
inline constexpr int kExitUsage = 2;

int cmd_check(const std::vector<std::string>& files);
int cmd_plan(const std::string& file, const std::string& format);
int cmd_apply(const std::string& file, bool force, bool dry_run, bool verbose);
int cmd_flush(const std::string& file);
int cmd_show(const std::string& file, bool json, uint64_t interval_ms);
int cmd_run(const std::string& file, bool force);

}  // namespace flowshaper::cli
