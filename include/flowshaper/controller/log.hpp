// The daemon's log: one line per event on stderr. Under systemd (JOURNAL_STREAM set) each line
// starts with its syslog priority ("<6>"), which journald turns into the entry's level.
#pragma once

#include <spdlog/logger.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace flowshaper::controller {

// A logger writing to stderr; `journal` forces (true) or suppresses (false) the "<N>" prefixes,
// by default they are on when JOURNAL_STREAM is set.
std::shared_ptr<spdlog::logger> make_stderr_logger(std::optional<bool> journal = std::nullopt);

// A logger that keeps its lines in memory (tests).
std::shared_ptr<spdlog::logger> make_memory_logger(std::shared_ptr<std::vector<std::string>> lines);

}  // namespace flowshaper::controller
