// Reads table inet flowshaper back from libnftables' JSON listing. Each rule's expressions are
// turned into a compact signature (e.g. "M(==,&(ct.mark,65536),65536);S(meta.mark,|(meta.mark,65536))")
// and matched against the shapes render_body() writes; anything else is not ours.
#include <nlohmann/json.hpp>

#include <cerrno>
#include <map>
#include <regex>

#include "nft_rules.hpp"

namespace flowshaper::kernel::nft {

namespace {

using nlohmann::json;

std::string sig(const json& j);

std::string sig_list(const json& a, const char* sep) {
    std::string out;
    for (size_t i = 0; i < a.size(); ++i) out += (i ? sep : "") + sig(a[i]);
    return out;
}

std::string sig(const json& j) {
    if (j.is_number_unsigned() || j.is_number_integer()) return std::to_string(j.get<int64_t>());
    if (j.is_string()) return j.get<std::string>();
    if (j.is_array()) return "{" + sig_list(j, ",") + "}";
    if (!j.is_object() || j.size() != 1) return "?" + j.dump();
    const auto& [key, v] = *j.items().begin();
    if (key == "match") return "M(" + v.value("op", "") + "," + sig(v["left"]) + "," + sig(v["right"]) + ")";
    if (key == "mangle") return "S(" + sig(v["key"]) + "," + sig(v["value"]) + ")";
    if (key == "payload") return "P(" + v.value("protocol", "") + "." + v.value("field", "") + ")";
    if (key == "meta" || key == "ct") return key + "." + v.value("key", "");
    if ((key == "&" || key == "|") && v.is_array()) return key + "(" + sig_list(v, ",") + ")";
    if (key == "set") return v.is_array() ? "{" + sig_list(v, ",") + "}" : sig(v);
    if (key == "vmap") return "V(" + sig(v["key"]) + "," + sig(v["data"]) + ")";
    if (key == "jump") return "J(" + v.value("target", "") + ")";
    return "?" + j.dump();
}

uint32_t u32(const std::string& s) {
    return static_cast<uint32_t>(std::stoull(s));
}

std::vector<uint16_t> ports_of(const std::string& s) {
    std::vector<uint16_t> out;
    static const std::regex number(R"(\d+)");
    for (std::sregex_iterator it(s.begin(), s.end(), number), end; it != end; ++it)
        out.push_back(static_cast<uint16_t>(std::stoul(it->str())));
    return out;
}

// The rules of one family's chain, parsed into the spec they were written from.
class ChainReader {
public:
    explicit ChainReader(net::Family family)
        : family_(family), ip_(family == net::Family::V4 ? "ip" : "ip6") {}

    // A rule of the family's main chain. False when the rule has none of our shapes.
    bool add(const std::string& s, const std::string& comment) {
        std::smatch m;
        static const std::regex fast(
            R"(^M\(==,&\(meta\.mark,(\d+)\),0\);S\(meta\.mark,&\(ct\.mark,(\d+)\)\)$)");
        static const std::regex slow(R"(^M\(!=,&\(meta\.mark,(\d+)\),0\);J\((\w+)\)$)");
        static const std::regex candidate(R"(^M\(>=,ct\.bytes,(\d+)\);S\(ct\.mark,\|\(ct\.mark,(\d+)\)\)$)");
        const std::regex dscp("^M\\(==,&\\(ct\\.mark,(\\d+)\\),(\\d+)\\);S\\(P\\(" + ip_ +
                              "\\.dscp\\),(\\d+)\\)$");
        if (std::regex_match(s, m, fast) && !restore_seen_ && u32(m[1]) == ~u32(m[2])) {
            restore_seen_ = true;
            spec_.mark_mask = u32(m[2]);
        } else if (std::regex_match(s, m, slow) && restore_seen_ && !jump_seen_ &&
                   u32(m[1]) == ~spec_.mark_mask && m[2] == restore_chain_name(family_)) {
            jump_seen_ = true;
        } else if (std::regex_match(s, m, candidate) && jump_seen_ && !spec_.candidate &&
                   spec_.dscp_rules.empty()) {
            spec_.candidate = MangleSpec::Candidate{std::stoull(m[1]), u32(m[2])};
        } else if (std::regex_match(s, m, dscp) && jump_seen_) {
            spec_.dscp_rules.push_back(
                {u32(m[2]), u32(m[1]), static_cast<uint8_t>(std::stoul(m[3])), comment});
        } else {
            return !restore_seen_ && add_capped(s);
        }
        return true;
    }

    // A rule of the family's restore chain: the clear, then one rule per bit.
    bool add_restore(const std::string& s) {
        std::smatch m;
        static const std::regex clear(R"(^S\(meta\.mark,&\(meta\.mark,(\d+)\)\)$)");
        static const std::regex bit(
            R"(^M\(==,&\(ct\.mark,(\d+)\),(\d+)\);S\(meta\.mark,\|\(meta\.mark,(\d+)\)\)$)");
        if (std::regex_match(s, m, clear) && !cleared_) {
            cleared_ = true;
            cleared_mask_ = ~u32(m[1]);
        } else if (std::regex_match(s, m, bit) && cleared_ && m[1] == m[2] && m[2] == m[3]) {
            restored_bits_ |= u32(m[1]);
        } else {
            return false;
        }
        return true;
    }

    // The spec, or why the chain is not what we write.
    Result<MangleSpec> finish(const std::string& object) {
        auto bad = [&](const std::string& why) { return make_error("read", object, EPROTO, why); };
        if (!restore_seen_ || !jump_seen_ || !cleared_ || cleared_mask_ != spec_.mark_mask ||
            restored_bits_ != spec_.mark_mask)
            return bad("the restore rules do not cover mark_mask (the next ensure replaces the table)");
        for (const auto& [rule, c] : capped_) {
            if (rule >= spec_.dscp_rules.size()) return bad("a capped-client rule names no DSCP rule");
            const auto& d = spec_.dscp_rules[rule];
            if (c.and_mask != (~d.ctmark_mask | d.ctmark_value) || c.value != d.ctmark_value)
                return bad("a capped-client rule writes another mark than its DSCP rule matches");
        }
        if (!capped_.empty()) {
            spec_.capped.resize(spec_.dscp_rules.size());
            for (const auto& [rule, c] : capped_) spec_.capped[rule] = c.match;
        }
        return spec_;
    }

private:
    struct Capped {
        MangleSpec::CappedMatch match;
        uint32_t and_mask = 0, value = 0;
    };

    bool add_capped(const std::string& s) {
        std::smatch m;
        const std::regex re(
            "^M\\(==,P\\(" + ip_ + "\\.daddr\\),@capped" + (family_ == net::Family::V4 ? "4" : "6") +
            R"(_(\d+)\)(?:;M\(==,(?:meta\.l4proto,(\d+)|P\((tcp|udp)\.(sport|dport)\),([\d,{}]+))\))?)"
            R"(;S\(ct\.mark,\|\((?:&\(ct\.mark,(\d+)\)|ct\.mark),(\d+)\)\)$)");
        if (!std::regex_match(s, m, re)) return false;
        Capped& c = capped_[std::stoul(m[1])];
        if (m[2].matched) c.match.l4proto = static_cast<uint8_t>(std::stoul(m[2]));
        if (m[3].matched) {
            c.match.l4proto = m[3] == "tcp" ? 6 : 17;
            (m[4] == "sport" ? c.match.local_ports : c.match.remote_ports) = ports_of(m[5]);
        }
        c.and_mask = m[6].matched ? u32(m[6]) : ~0u;  // nft drops an AND with all ones
        c.value = u32(m[7]);
        return true;
    }

    net::Family family_;
    std::string ip_;
    MangleSpec spec_;
    bool restore_seen_ = false, jump_seen_ = false, cleared_ = false;
    uint32_t cleared_mask_ = 0, restored_bits_ = 0;
    std::map<size_t, Capped> capped_;
};

Status read_members(const json& set, std::vector<CappedClient>& out) {
    static const std::regex name(R"(^capped([46])_(\d+)$)");
    std::smatch m;
    const std::string n = set.value("name", "");
    if (!std::regex_match(n, m, name))
        return make_error("read", "set " + n + " in table inet flowshaper", EPROTO,
                          "not a set flowshaper writes");
    if (!set.contains("elem")) return {};
    for (const auto& e : set["elem"]) {
        auto address = e.is_string() ? net::Address::parse(e.get<std::string>()) : std::nullopt;
        if (!address)
            return make_error("read", "set " + n, EPROTO, "member " + e.dump() + " is not an address");
        out.push_back({std::stoul(m[2]), *address});
    }
    return {};
}

}  // namespace

Result<TableState> parse_table(const std::string& json_text) {
    const json doc = json::parse(json_text, nullptr, false);
    if (doc.is_discarded() || !doc.contains("nftables"))
        return make_error("read", "table inet flowshaper", EPROTO, "libnftables printed no JSON listing");
    TableState state;
    std::map<net::Family, ChainReader> readers;
    // Our chain names: a family's main chain (false) or its restore chain (true).
    std::map<std::string, std::pair<net::Family, bool>> roles;
    for (auto f : {net::Family::V4, net::Family::V6}) {
        roles.emplace(chain_name(f), std::pair{f, false});
        roles.emplace(restore_chain_name(f), std::pair{f, true});
    }
    for (const auto& item : doc["nftables"]) {
        if (item.contains("table")) state.exists = true;
        if (item.contains("set")) {
            if (auto st = read_members(item["set"], state.members); !st) return st.error();
        } else if (item.contains("chain")) {
            auto role = roles.find(item["chain"].value("name", ""));
            if (role != roles.end()) readers.emplace(role->second.first, ChainReader(role->second.first));
        } else if (item.contains("rule")) {
            const json& rule = item["rule"];
            const std::string chain = rule.value("chain", "");
            const std::string s = rule["expr"].is_array() ? sig_list(rule["expr"], ";") : "?";
            const std::string where = "rule " + std::to_string(rule.value("handle", 0)) + " of chain " +
                                      chain + " in table inet flowshaper";
            bool ours = false;
            if (chain == kPostrouting) {
                static const std::regex vmap(R"(^V\(meta\.nfproto,)");
                ours = std::regex_search(s, vmap);
            } else if (auto role = roles.find(chain); role != roles.end()) {
                auto reader = readers.find(role->second.first);
                ours = reader != readers.end() &&
                       (role->second.second ? reader->second.add_restore(s)
                                            : reader->second.add(s, rule.value("comment", "")));
            }
            if (!ours)
                return make_error(
                    "read", where, EPROTO,
                    "not written by flowshaper: " + s + " (the next ensure replaces the table)");
        }
    }
    for (auto& [family, reader] : readers) {
        auto spec = reader.finish("chain " + chain_name(family) + " in table inet flowshaper");
        if (!spec) return spec.error();
        (family == net::Family::V4 ? state.v4 : state.v6) = *spec;
    }
    return state;
}

}  // namespace flowshaper::kernel::nft
