// libFuzzer target: any byte string given to the policy loader must come back as a LoadResult,
// never a crash, a hang or a sanitizer report. A policy is returned only without errors.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "flowshaper/policy/loader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    flowshaper::policy::LoadResult result = flowshaper::policy::load_string(text, "fuzz.toml");
    bool has_error = false;
    for (const auto& d : result.diagnostics) {
        if (d.severity == flowshaper::policy::Severity::Error) has_error = true;
        if (d.format().empty()) std::abort();
    }
    if (result.ok() == has_error) std::abort();  // the LoadResult contract
    return 0;
}
