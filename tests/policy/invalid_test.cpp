// Every file under invalid/ is a broken policy whose expected diagnostics are written in the
// file itself as "# expect: LINE:COL: error: message" comments, in the order they must appear.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "flowshaper/policy/loader.hpp"

namespace fs = std::filesystem;
using namespace flowshaper::policy;

namespace {

std::vector<fs::path> toml_files(const fs::path& dir) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir))
        if (entry.path().extension() == ".toml") files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    return files;
}

// The expected formatted diagnostics: "PATH:" + the comment's text. A reference to another
// position in the same file is written with the bare file name in the comment; the loader
// prints the path it was given, so the bare name is widened to the path here.
std::vector<std::string> expected_of(const fs::path& path) {
    const std::string prefix = "# expect: ";
    const std::string name = path.filename().string();
    std::vector<std::string> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        if (line.rfind(prefix, 0) != 0) continue;
        std::string text = line.substr(prefix.size());
        for (size_t at = text.find(" " + name + ":"); at != std::string::npos;
             at = text.find(" " + name + ":", at + path.string().size()))
            text.replace(at + 1, name.size(), path.string());
        out.push_back(path.string() + ":" + text);
    }
    return out;
}

}  // namespace

TEST_CASE("there are at least 45 invalid policies and each expects at least one error", "[loader][invalid]") {
    auto files = toml_files(FLOWSHAPER_INVALID_DIR);
    CHECK(files.size() >= 45);
    for (const auto& f : files) {
        INFO(f.string());
        CHECK_FALSE(expected_of(f).empty());
    }
}

TEST_CASE("each invalid policy yields exactly the diagnostics written in it in file order",
          "[loader][invalid]") {
    for (const auto& path : toml_files(FLOWSHAPER_INVALID_DIR)) {
        DYNAMIC_SECTION(path.filename().string()) {
            LoadResult result = load_file(path.string());
            std::vector<std::string> actual;
            for (const Diagnostic& d : result.diagnostics) {
                CHECK(d.loc.file == path.string());
                actual.push_back(d.format());
            }
            CHECK(actual == expected_of(path));
            CHECK_FALSE(result.ok());
        }
    }
}

TEST_CASE("inputs that crashed the fuzzer load as errors", "[loader][fuzz]") {
    auto files = toml_files(FLOWSHAPER_FUZZ_REGRESSIONS_DIR);
    CHECK(files.size() >= 3);
    for (const auto& path : files) {
        INFO(path.string());
        LoadResult result = load_file(path.string());
        CHECK_FALSE(result.ok());
        CHECK_FALSE(result.diagnostics.empty());
    }
}
