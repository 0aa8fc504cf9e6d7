// Reading [[export]] tables: flow-record destinations (IPFIX over UDP or TCP, or an IPFIX file).
#include <algorithm>
#include <cctype>

#include "draft.hpp"
#include "flowshaper/policy/units.hpp"

namespace flowshaper::policy::detail {
namespace {

const std::vector<std::string_view> kExportKeys{"target", "active_timeout", "template_refresh",
                                                "observation_domain"};

// 'text', quoted for a message (built by appending: g++ 12 -O3 warns, wrongly, on "'" + std::string).
std::string quoted(std::string_view text) {
    std::string out(1, '\'');
    out.append(text);
    out.push_back('\'');
    return out;
}

bool valid_host_name(std::string_view host) {
    if (host.empty() || host.size() > 253 || host.front() == '-' || host.front() == '.') return false;
    return std::all_of(host.begin(), host.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.';
    });
}

// "HOST", "HOST:PORT", "[V6]" or "[V6]:PORT" into e.host and e.port; an error message otherwise.
std::string parse_host_port(std::string_view text, Export& e) {
    std::string_view host = text, port;
    if (!text.empty() && text.front() == '[') {
        size_t close = text.find(']');
        if (close == std::string_view::npos) return "'[' without ']' around the IPv6 address";
        host = text.substr(1, close - 1);
        std::string_view rest = text.substr(close + 1);
        if (!rest.empty() && rest.front() != ':') return "expected ':PORT' after ']'";
        if (!rest.empty()) port = rest.substr(1);
        auto a = net::Address::parse(host);
        if (!a || a->family != net::Family::V6) return quoted(host) + " is not an IPv6 address";
    } else {
        size_t colon = text.rfind(':');
        if (colon != std::string_view::npos && text.find(':') != colon)
            return "write an IPv6 address in brackets, such as udp://[2001:db8::9]:4739";
        if (colon != std::string_view::npos) {
            host = text.substr(0, colon);
            port = text.substr(colon + 1);
        }
        if (!net::Address::parse(host) && !valid_host_name(host))
            return quoted(host) + " is not an address or a host name";
    }
    if (text.find(':', host.size()) != std::string_view::npos || !port.empty()) {
        uint32_t p = 0;
        bool digits = !port.empty() && port.size() <= 5 &&
                      std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
        for (char c : port) p = digits ? p * 10 + static_cast<uint32_t>(c - '0') : 0;
        if (!digits || p < 1 || p > 65535) return "port " + quoted(port) + " is not a number 1..65535";
        e.port = static_cast<uint16_t>(p);
    }
    e.host = std::string(host);
    return {};
}

// The target into `e`; an error message when it is not a valid target.
std::string parse_target(std::string_view text, Export& e) {
    const std::string usage = " (write udp://HOST:PORT, tcp://HOST:PORT or file:/PATH)";
    if (text.rfind("file:", 0) == 0) {
        e.transport = ExportTransport::File;
        e.path = std::string(text.substr(5));
        if (e.path.empty() || e.path.front() != '/' || e.path.back() == '/')
            return "file target needs an absolute file path, such as file:/var/lib/flowshaper/flows.ipfix";
        return {};
    }
    std::string_view rest;
    if (text.rfind("udp://", 0) == 0) {
        e.transport = ExportTransport::Udp;
        rest = text.substr(6);
    } else if (text.rfind("tcp://", 0) == 0) {
        e.transport = ExportTransport::Tcp;
        rest = text.substr(6);
    } else {
        return "unknown export target " + quoted(text) + usage;
    }
    std::string why = parse_host_port(rest, e);
    return why.empty() ? why : "invalid target " + quoted(text) + ": " + why;
}

Export read_export(Sink& sink, TableReader& r, const Settings& settings) {
    Export e;
    e.loc = r.table_loc();
    if (auto target = r.string("target", true)) {
        e.target = *target;
        std::string why = parse_target(*target, e);
        if (!why.empty()) sink.error(r.value_loc("target"), why);
    }
    e.active_timeout_ms = r.duration("active_timeout", false).value_or(e.active_timeout_ms);
    if (r.ok("active_timeout") && e.active_timeout_ms % settings.poll_interval_ms != 0)
        sink.error(r.value_loc("active_timeout"), "active_timeout " + format_duration(e.active_timeout_ms) +
                                                      " is not a multiple of poll_interval " +
                                                      format_duration(settings.poll_interval_ms));
    e.template_refresh_ms = r.duration("template_refresh", false).value_or(e.template_refresh_ms);
    if (r.has("template_refresh") && r.ok("target") && e.transport != ExportTransport::Udp)
        sink.error(r.value_loc("template_refresh"),
                   "template_refresh applies to udp:// targets only (TCP sends templates on every "
                   "connection, a file once)");
    e.observation_domain = static_cast<uint32_t>(
        r.integer("observation_domain", 0, 0xffffffffLL, "from 0 to 4294967295").value_or(0));
    return e;
}

}  // namespace

void read_exports(Sink& sink, const toml::node& node, const SourceLoc& key_loc, Draft& draft) {
    const auto* array = node.as_array();
    if (!array || !array->is_array_of_tables()) {
        sink.error(sink.loc(node, key_loc), "'export' must be an array of tables: write [[export]]");
        return;
    }
    std::vector<std::pair<std::string, SourceLoc>> seen;
    for (const toml::node& element : *array) {
        const toml::table& table = *element.as_table();
        TableReader r(sink, table, "[[export]]", sink.loc(table.source()), kExportKeys);
        Export e = read_export(sink, r, draft.policy.settings);
        if (r.ok("target")) {
            auto same =
                std::find_if(seen.begin(), seen.end(), [&](const auto& s) { return s.first == e.target; });
            if (same != seen.end())
                sink.error(r.value_loc("target"), "duplicate [[export]] target '" + e.target +
                                                      "'; the first is at " + sink.where(same->second));
            else
                seen.emplace_back(e.target, r.value_loc("target"));
        }
        draft.policy.exports.push_back(std::move(e));
    }
}

}  // namespace flowshaper::policy::detail
