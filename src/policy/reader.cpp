#include "reader.hpp"

#include <algorithm>
#include <cctype>

#include "flowshaper/policy/units.hpp"
#include "suggest.hpp"

namespace flowshaper::policy::detail {

SourceLoc Sink::loc(const toml::source_region& region) const {
    return SourceLoc{file_, static_cast<uint32_t>(region.begin.line),
                     static_cast<uint32_t>(region.begin.column)};
}

SourceLoc Sink::loc(const toml::node& node, const SourceLoc& fallback) const {
    SourceLoc at = loc(node.source());
    return at.line == 0 ? fallback : at;
}

void Sink::error(const SourceLoc& at, std::string message) {
    diagnostics_.push_back(Diagnostic{at, Severity::Error, std::move(message)});
}

std::string Sink::where(const SourceLoc& at) const {
    return at.file + ":" + std::to_string(at.line) + ":" + std::to_string(at.column);
}

bool Sink::has_errors() const {
    return std::any_of(diagnostics_.begin(), diagnostics_.end(),
                       [](const Diagnostic& d) { return d.severity == Severity::Error; });
}

std::vector<Diagnostic> Sink::take() {
    std::stable_sort(diagnostics_.begin(), diagnostics_.end(), [](const Diagnostic& a, const Diagnostic& b) {
        if (a.loc.line != b.loc.line) return a.loc.line < b.loc.line;
        return a.loc.column < b.loc.column;
    });
    return std::move(diagnostics_);
}

TableReader::TableReader(Sink& sink, const toml::table& table, std::string context,
                         const SourceLoc& table_loc, const std::vector<std::string_view>& allowed)
    : sink_(sink), table_(table), context_(std::move(context)), table_loc_(table_loc) {
    for (auto&& [key, value] : table_) {
        if (std::find(allowed.begin(), allowed.end(), key.str()) != allowed.end()) continue;
        std::string where = context_.empty() ? " at the top level" : " in " + context_;
        sink_.error(sink_.loc(key.source()).line ? sink_.loc(key.source()) : table_loc_,
                    "unknown key '" + std::string(key.str()) + "'" + where +
                        did_you_mean(closest(key.str(), allowed)));
    }
}

SourceLoc TableReader::value_loc(std::string_view key) const {
    auto it = table_.find(key);
    if (it == table_.end()) return table_loc_;
    SourceLoc key_loc = sink_.loc(it->first.source());
    if (key_loc.line == 0) key_loc = table_loc_;
    return sink_.loc(it->second, key_loc);
}

void TableReader::missing(std::string_view key, std::string_view why) {
    sink_.error(table_loc_,
                "missing required key '" + std::string(key) + "' in " + context_ + std::string(why));
}

const toml::node* TableReader::present(std::string_view key, bool required) {
    const toml::node* n = table_.get(key);
    if (!n && required) missing(key);
    return n;
}

std::optional<std::string> TableReader::string(std::string_view key, bool required) {
    const toml::node* n = present(key, required);
    if (!n) return std::nullopt;
    if (!n->is_string()) {
        sink_.error(value_loc(key), std::string("'").append(key) + "' must be a string");
        return std::nullopt;
    }
    good(key);
    return n->as_string()->get();
}

std::optional<uint64_t> TableReader::quantity(std::string_view key, bool required, int kind) {
    static constexpr std::string_view kWhat[] = {"rate", "size", "duration"};
    static constexpr std::string_view kExample[] = {"\"5mbit\"", "\"500MB\"", "\"10m\""};
    const toml::node* n = present(key, required);
    if (!n) return std::nullopt;
    const SourceLoc at = value_loc(key);
    if (const auto* i = n->as_integer()) {
        int64_t v = i->get();
        if (kind == 2) {
            sink_.error(at, "duration " + std::to_string(v) + " needs a unit (ms, s, m or h), such as \"" +
                                std::to_string(v) + "s\"");
            return std::nullopt;
        }
        if (v <= 0) {
            sink_.error(at,
                        std::string(kWhat[kind]) + " " + std::to_string(v) + " must be greater than zero");
            return std::nullopt;
        }
        good(key);
        return static_cast<uint64_t>(v);
    }
    if (!n->is_string()) {
        sink_.error(at, "'" + std::string(key) + "' must be a string such as " + std::string(kExample[kind]));
        return std::nullopt;
    }
    const std::string& text = n->as_string()->get();
    UnitError error;
    std::optional<uint64_t> value = kind == 0   ? parse_rate_bits_per_s(text, &error)
                                    : kind == 1 ? parse_size_bytes(text, &error)
                                                : parse_duration_ms(text, &error);
    if (!value) {
        sink_.error(at, error.text());
        return std::nullopt;
    }
    good(key);
    return value;
}

std::optional<uint64_t> TableReader::rate(std::string_view key, bool required) {
    return quantity(key, required, 0);
}
std::optional<uint64_t> TableReader::size(std::string_view key, bool required) {
    return quantity(key, required, 1);
}
std::optional<uint64_t> TableReader::duration(std::string_view key, bool required) {
    return quantity(key, required, 2);
}

std::optional<int64_t> TableReader::integer(std::string_view key, int64_t min, int64_t max,
                                            std::string_view example) {
    const toml::node* n = present(key, false);
    if (!n) return std::nullopt;
    if (!n->is_integer()) {
        sink_.error(value_loc(key), "'" + std::string(key) + "' must be an integer " + std::string(example));
        return std::nullopt;
    }
    int64_t v = n->as_integer()->get();
    if (v < min || v > max) {
        sink_.error(value_loc(key), std::string(key) + " " + std::to_string(v) + " is out of range " +
                                        std::to_string(min) + ".." + std::to_string(max));
        return std::nullopt;
    }
    good(key);
    return v;
}

std::optional<bool> TableReader::boolean(std::string_view key) {
    const toml::node* n = present(key, false);
    if (!n) return std::nullopt;
    if (!n->is_boolean()) {
        sink_.error(value_loc(key), std::string("'").append(key) + "' must be true or false");
        return std::nullopt;
    }
    good(key);
    return n->as_boolean()->get();
}

std::optional<size_t> TableReader::choice(std::string_view key,
                                          const std::vector<std::string_view>& choices) {
    const toml::node* n = present(key, false);
    if (!n) return std::nullopt;
    std::string list;
    for (auto c : choices) list += (list.empty() ? "" : ", ") + std::string(c);
    if (!n->is_string()) {
        sink_.error(value_loc(key), "'" + std::string(key) + "' must be a string: one of " + list);
        return std::nullopt;
    }
    const std::string& v = n->as_string()->get();
    auto it = std::find(choices.begin(), choices.end(), v);
    if (it == choices.end()) {
        sink_.error(value_loc(key),
                    std::string(key) + " must be one of " + list + did_you_mean(closest(v, choices)));
        return std::nullopt;
    }
    good(key);
    return static_cast<size_t>(it - choices.begin());
}

std::optional<uint8_t> TableReader::dscp(std::string_view key) {
    const toml::node* n = present(key, false);
    if (!n) return std::nullopt;
    const SourceLoc at = value_loc(key);
    if (const auto* i = n->as_integer()) {
        if (i->get() < 0 || i->get() > 63) {
            sink_.error(at, "DSCP " + std::to_string(i->get()) + " is out of range 0..63");
            return std::nullopt;
        }
        good(key);
        return static_cast<uint8_t>(i->get());
    }
    if (!n->is_string()) {
        sink_.error(at, "'" + std::string(key) + "' must be a name such as \"CS1\" or a number 0..63");
        return std::nullopt;
    }
    UnitError error;
    auto v = parse_dscp(n->as_string()->get(), &error);
    if (!v) {
        sink_.error(at, error.text());
        return std::nullopt;
    }
    good(key);
    return v;
}

namespace {

// "10.1.2.3/24" -> "10.1.2.0/24" when the text is a valid prefix apart from its host bits.
std::string without_host_bits(std::string_view text) {
    auto slash = text.find('/');
    auto addr = net::Address::parse(text.substr(0, slash));
    if (!addr || slash == std::string_view::npos) return {};
    int length = std::atoi(std::string(text.substr(slash + 1)).c_str());
    for (int bit = length; bit < addr->bit_width(); ++bit)
        addr->bytes[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
    return addr->str() + "/" + std::to_string(length);
}

}  // namespace

std::optional<std::vector<net::Prefix>> TableReader::prefixes(std::string_view key, bool required,
                                                              bool allow_empty,
                                                              std::vector<SourceLoc>* locs) {
    const toml::node* n = present(key, required);
    if (!n) return std::nullopt;
    const std::string k(key);
    const auto* array = n->as_array();
    if (!array) {
        sink_.error(value_loc(key),
                    "'" + k + "' must be an array of strings such as [\"192.0.2.7\", \"2001:db8::/64\"]");
        return std::nullopt;
    }
    if (array->empty() && !allow_empty) {
        sink_.error(value_loc(key), "'" + k + "' must not be empty");
        return std::nullopt;
    }
    std::vector<net::Prefix> out;
    bool all_good = true;
    for (const toml::node& element : *array) {
        SourceLoc at = sink_.loc(element, value_loc(key));
        if (!element.is_string()) {
            sink_.error(
                at, "each entry of '" + k + "' must be a string such as \"192.0.2.7\" or \"2001:db8::/64\"");
            all_good = false;
            continue;
        }
        const std::string& text = element.as_string()->get();
        bool host_bits = false;
        auto prefix = net::Prefix::parse(text, &host_bits);
        if (!prefix) {
            if (host_bits)
                sink_.error(at, text + " has host bits set; did you mean " + without_host_bits(text) + "?");
            else
                sink_.error(at, "invalid address or prefix \"" + text + "\"");
            all_good = false;
            continue;
        }
        out.push_back(*prefix);
        if (locs) locs->push_back(at);
    }
    if (!all_good) return std::nullopt;
    good(key);
    return out;
}

std::optional<std::vector<uint16_t>> TableReader::ports(std::string_view key) {
    const toml::node* n = present(key, false);
    if (!n) return std::nullopt;
    const std::string k(key);
    const auto* array = n->as_array();
    if (!array) {
        sink_.error(value_loc(key), "'" + k + "' must be an array of port numbers such as [143, 993]");
        return std::nullopt;
    }
    std::vector<uint16_t> out;
    bool all_good = true;
    for (const toml::node& element : *array) {
        SourceLoc at = sink_.loc(element, value_loc(key));
        const auto* i = element.as_integer();
        if (!i) {
            sink_.error(at, "each entry of '" + k + "' must be a port number 1..65535");
            all_good = false;
        } else if (i->get() < 1 || i->get() > 65535) {
            sink_.error(at, "port " + std::to_string(i->get()) + " is out of range 1..65535");
            all_good = false;
        } else {
            out.push_back(static_cast<uint16_t>(i->get()));
        }
    }
    if (!all_good) return std::nullopt;
    good(key);
    return out;
}

const toml::table* TableReader::table(std::string_view key, bool required, std::string_view example) {
    const toml::node* n = present(key, required);
    if (!n) return nullptr;
    if (!n->is_table()) {
        sink_.error(value_loc(key),
                    "'" + std::string(key) + "' must be a table such as " + std::string(example));
        return nullptr;
    }
    good(key);
    return n->as_table();
}

bool valid_ifname(std::string_view name) {
    if (name.empty() || name.size() > 15 || name == "." || name == "..") return false;
    return std::none_of(name.begin(), name.end(), [](char c) {
        return c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c)) || c == '\0';
    });
}

}  // namespace flowshaper::policy::detail
