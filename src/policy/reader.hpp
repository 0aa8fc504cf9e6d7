// Typed reads from one TOML table, each problem reported as a diagnostic at the value's
// position (or the table's, for a missing key). Internal to the policy module.
#pragma once

// toml++ is used header-only and without exceptions (parse errors come back as values).
#define TOML_EXCEPTIONS 0
// toml++ 3.3 states some parser preconditions with TOML_ASSERT_ASSUME: an assert() in debug builds
// and an optimiser assumption (__builtin_assume, undefined behaviour when false) in clang release
// builds. One of them is false for table headers such as "[[[", "[=" or "[\n": the parser itself
// then reports "expected bare key starting character" correctly, but the assert aborts first.
// Input must never crash the loader, so the assumptions become no-ops (what g++ release builds get).
#include <toml++/impl/preprocessor.h>
#undef TOML_ASSERT_ASSUME
#define TOML_ASSERT_ASSUME(expr) static_assert(true)
#include <toml++/toml.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "flowshaper/common/net.hpp"
#include "flowshaper/policy/loader.hpp"

namespace flowshaper::policy::detail {

// Collects diagnostics for one file.
class Sink {
public:
    explicit Sink(std::string file) : file_(std::move(file)) {}

    SourceLoc loc(const toml::source_region& region) const;
    SourceLoc loc(const toml::node& node, const SourceLoc& fallback) const;
    void error(const SourceLoc& at, std::string message);
    // "mail.toml:12:14"
    std::string where(const SourceLoc& at) const;

    const std::string& file() const { return file_; }
    bool has_errors() const;
    std::vector<Diagnostic> take();

private:
    std::string file_;
    std::vector<Diagnostic> diagnostics_;
};

// Positions of the values that were read successfully, by key.
using Locs = std::map<std::string, SourceLoc, std::less<>>;

// Reads the keys of one table. Construction reports every unknown key.
class TableReader {
public:
    TableReader(Sink& sink, const toml::table& table, std::string context, const SourceLoc& table_loc,
                const std::vector<std::string_view>& allowed);

    bool has(std::string_view key) const { return table_.contains(key); }
    const toml::node* node(std::string_view key) const { return table_.get(key); }
    // The value's position (the key's, when the value has none).
    SourceLoc value_loc(std::string_view key) const;
    const SourceLoc& table_loc() const { return table_loc_; }
    // Positions of the successfully read values.
    const Locs& locs() const { return locs_; }
    bool ok(std::string_view key) const { return locs_.count(key) != 0; }
    Sink& sink() { return sink_; }

    void missing(std::string_view key, std::string_view why = {});
    std::optional<std::string> string(std::string_view key, bool required);
    std::optional<uint64_t> rate(std::string_view key, bool required);
    std::optional<uint64_t> size(std::string_view key, bool required);
    std::optional<uint64_t> duration(std::string_view key, bool required);
    std::optional<int64_t> integer(std::string_view key, int64_t min, int64_t max, std::string_view example);
    std::optional<bool> boolean(std::string_view key);
    // The index of the value among `choices`.
    std::optional<size_t> choice(std::string_view key, const std::vector<std::string_view>& choices);
    std::optional<uint8_t> dscp(std::string_view key);
    // Addresses or prefixes; `locs` gets each element's position.
    std::optional<std::vector<net::Prefix>> prefixes(std::string_view key, bool required, bool allow_empty,
                                                     std::vector<SourceLoc>* locs);
    std::optional<std::vector<uint16_t>> ports(std::string_view key);
    // A sub-table (inline or not); nullptr and a diagnostic when it is something else.
    const toml::table* table(std::string_view key, bool required, std::string_view example);

private:
    const toml::node* present(std::string_view key, bool required);
    void good(std::string_view key) { locs_[std::string(key)] = value_loc(key); }
    std::optional<uint64_t> quantity(std::string_view key, bool required, int kind);

    Sink& sink_;
    const toml::table& table_;
    std::string context_;
    SourceLoc table_loc_;
    Locs locs_;
};

// Checks a Linux interface name: 1-15 bytes, no '/', ':' or whitespace, not "." or "..".
bool valid_ifname(std::string_view name);

}  // namespace flowshaper::policy::detail
