// TOML text -> Policy, with every problem reported compiler-style at once.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "flowshaper/policy/policy.hpp"

namespace flowshaper::policy {

enum class Severity { Error, Warning, Note };

struct Diagnostic {
    SourceLoc loc;
    Severity severity = Severity::Error;
    std::string message;  // without the "error: " prefix; may end with "; did you mean 'x'?"

    // "policy.toml:14:9: error: message"
    std::string format() const;
};

struct LoadResult {
    std::optional<Policy> policy;  // set only when there is no error-severity diagnostic
    std::vector<Diagnostic> diagnostics;

    bool ok() const { return policy.has_value(); }
};

// Reads and checks one policy file. Never throws for bad input.
// The largest policy file load_file() reads (65,280 clients per device take ~1.5 MB).
inline constexpr size_t kMaxPolicyBytes = size_t{64} << 20;

LoadResult load_file(const std::string& path);
// Same, from text; `file` names the source in diagnostics.
LoadResult load_string(std::string_view text, const std::string& file);

}  // namespace flowshaper::policy
