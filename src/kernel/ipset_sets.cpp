#include "ipset_sets.hpp"

#include <cerrno>
#include <sstream>

#include "flowshaper/kernel/mangle_iptc_port.hpp"
#include "ipset_session.hpp"

namespace flowshaper::kernel {

std::string ipset_name(net::Family family, size_t rule) {
    return "flowshaper-r" + std::to_string(rule) + (family == net::Family::V4 ? "-v4" : "-v6");
}

std::optional<std::pair<size_t, net::Family>> parse_ipset_name(const std::string& name) {
    const std::string head = "flowshaper-r";
    if (name.size() < head.size() + 4 || name.compare(0, head.size(), head) != 0) return std::nullopt;
    const std::string tail = name.substr(name.size() - 3);
    if (tail != "-v4" && tail != "-v6") return std::nullopt;
    const std::string digits = name.substr(head.size(), name.size() - head.size() - 3);
    if (digits.empty() || digits.size() > 6 || digits.find_first_not_of("0123456789") != std::string::npos ||
        (digits.size() > 1 && digits[0] == '0'))
        return std::nullopt;
    return std::make_pair(static_cast<size_t>(std::stoul(digits)),
                          tail == "-v4" ? net::Family::V4 : net::Family::V6);
}

namespace ipset {

namespace {

Result<std::string> run(const std::string& line, const std::string& operation, const std::string& object) {
    auto session = Session::open();
    if (!session) return session.error();
    return session->run(line, operation, object);
}

Status run_status(const std::string& line, const std::string& operation, const std::string& object) {
    auto out = run(line, operation, object);
    if (!out) return out.error();
    return {};
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) out.push_back(line);
    return out;
}

// Every set of ours in the namespace, with its rule and family.
Result<std::vector<std::pair<std::string, std::pair<size_t, net::Family>>>> all_ours() {
    auto names = run("list -n", "list", "ipsets");
    if (!names) return names.error();
    std::vector<std::pair<std::string, std::pair<size_t, net::Family>>> out;
    for (const std::string& name : lines_of(*names))
        if (auto parsed = parse_ipset_name(name)) out.emplace_back(name, *parsed);
    return out;
}

std::string set_object(const std::string& name) {
    return "ipset " + name;
}

}  // namespace

Result<std::vector<std::string>> our_sets(net::Family family) {
    auto all = all_ours();
    if (!all) return all.error();
    std::vector<std::string> out;
    for (const auto& [name, id] : *all)
        if (id.second == family) out.push_back(name);
    return out;
}

Status ensure_sets(net::Family family, size_t count) {
    const char* inet = family == net::Family::V4 ? "inet" : "inet6";
    for (size_t rule = 0; rule < count; ++rule) {
        const std::string name = ipset_name(family, rule);
        // -exist: an existing set of the same type keeps its members; another type is refused.
        if (auto st =
                run_status("create -exist " + name + " hash:ip family " + inet, "create", set_object(name));
            !st)
            return st;
    }
    return {};
}

Status destroy_sets(net::Family family, size_t from) {
    auto all = all_ours();
    if (!all) return all.error();
    for (const auto& [name, id] : *all) {
        if (id.second != family || id.first < from) continue;
        auto st = run_status("destroy " + name, "destroy", set_object(name));
        if (!st && st.error().code != ENOENT) return st;  // gone meanwhile: fine
    }
    return {};
}

Status add(const CappedClient& m) {
    const std::string name = ipset_name(m.client.family, m.rule);
    return run_status("add -exist " + name + " " + m.client.str(), "add " + m.client.str() + " to",
                      set_object(name));
}

Status remove(const CappedClient& m) {
    const std::string name = ipset_name(m.client.family, m.rule);
    auto st = run_status("del -exist " + name + " " + m.client.str(), "remove " + m.client.str() + " from",
                         set_object(name));
    if (!st && st.error().code == ENOENT) return {};  // no such set: nothing to remove
    return st;
}

Result<std::vector<CappedClient>> members() {
    auto all = all_ours();
    if (!all) return all.error();
    std::vector<CappedClient> out;
    for (const auto& [name, id] : *all) {
        auto saved = run("save " + name, "list", set_object(name));
        if (!saved && saved.error().code == ENOENT) continue;  // destroyed meanwhile
        if (!saved) return saved.error();
        const std::string prefix = "add " + name + " ";
        for (const std::string& line : lines_of(*saved)) {
            if (line.compare(0, prefix.size(), prefix) != 0) continue;
            auto address = net::Address::parse(line.substr(prefix.size()));
            if (!address || address->family != id.second)
                return make_error("list", set_object(name), EPROTO, "unexpected member: " + line);
            out.push_back({id.first, *address});
        }
    }
    return out;
}

Status flush_all() {
    auto all = all_ours();
    if (!all) return all.error();
    for (const auto& [name, id] : *all) {
        auto st = run_status("flush " + name, "flush", set_object(name));
        if (!st && st.error().code != ENOENT) return st;
    }
    return {};
}

}  // namespace ipset
}  // namespace flowshaper::kernel
