#include "daemon_fixture.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <sstream>

namespace flowshaper::testing {

TempPolicy::TempPolicy(const std::string& text) {
    char tmpl[] = "/tmp/fs-daemon-XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    close(fd);
    path_ = std::string(tmpl) + ".toml";
    std::rename(tmpl, path_.c_str());
    std::ofstream(path_) << text;
}

TempPolicy::~TempPolicy() {
    std::remove(path_.c_str());
}

Daemon::Daemon(const Netns& ns, const std::string& policy_path,
               const std::vector<std::pair<std::string, std::string>>& env) {
    log_path_ = policy_path + ".log";
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
        FILE* log = std::fopen(log_path_.c_str(), "w");
        if (log) {
            dup2(fileno(log), STDERR_FILENO);
            dup2(fileno(log), STDOUT_FILENO);
        }
        for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
        execlp("ip", "ip", "netns", "exec", ns.name().c_str(), FLOWSHAPER_BIN, "run", policy_path.c_str(),
               static_cast<char*>(nullptr));
        _exit(127);
    }
}

Daemon::~Daemon() {
    if (pid_ > 0) stop(SIGTERM);
    std::remove(log_path_.c_str());
}

int Daemon::stop(int sig) {
    if (pid_ <= 0) return -1;
    kill(pid_, sig);
    int status = 0;
    if (wait_until([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, kWaitMs, 50)) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return 128 + SIGKILL;
}

std::string Daemon::log() const {
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

bool Daemon::wait_for_log(const std::string& needle, int timeout_ms) const {
    return wait_until([&] { return log().find(needle) != std::string::npos; }, timeout_ms, 50);
}

nlohmann::json tc_json(const Netns& ns, const std::string& what) {
    return nlohmann::json::parse(ns.exec_ok("tc -s -j " + what));
}

uint64_t class_bytes(const Netns& ns, const std::string& dev, const std::string& classid) {
    auto classes = tc_class_table(ns, dev);
    auto it = classes.find(classid);
    return it == classes.end() ? 0 : it->second.bytes;
}

std::string flowid_of(const Netns& ns, const std::string& dev, const std::string& needle) {
    return tc_flowid_of(ns, dev, needle);
}

std::string heavy_class_of(const Netns& ns, const std::string& dev, const std::string& client,
                           const std::string& u32_needle) {
    if (auto u32 = flowid_of(ns, dev, u32_needle); !u32.empty()) return u32;
    // fw: the class of the fw filter whose handle/mask the client's ctmark matches.
    std::vector<uint32_t> marks;
    for (const auto& line : conntrack_lines(ns, {client, "mark="})) {
        auto at = line.find(" mark=");
        // The fwmark the restore rule writes: the ctmark without the prefilter's candidate flag
        // (the highest bit of the tests' mark_mask 0x00ff0000), which fw filters never match.
        if (at != std::string::npos)
            marks.push_back(static_cast<uint32_t>(std::stoul(line.substr(at + 6))) & ~0x00800000u);
    }
    const std::string filters = ns.exec_ok("tc filter show dev " + dev + " parent f5:");
    std::istringstream in(filters);
    for (std::string line; std::getline(in, line);) {
        auto h = line.find(" fw ");
        auto handle = line.find("handle 0x", h == std::string::npos ? 0 : h);
        auto cls = line.find("classid ");
        if (h == std::string::npos || handle == std::string::npos || cls == std::string::npos) continue;
        std::string spec = line.substr(handle + 7, line.find(' ', handle + 7) - handle - 7);  // 0xH/0xM
        auto slash = spec.find('/');
        uint32_t value = static_cast<uint32_t>(std::stoul(spec.substr(0, slash), nullptr, 16));
        uint32_t mask = slash == std::string::npos
                            ? 0xffffffffu
                            : static_cast<uint32_t>(std::stoul(spec.substr(slash + 1), nullptr, 16));
        for (uint32_t m : marks)
            if ((m & mask) == value)
                return line.substr(cls + 8, line.find_first_of(" \n", cls + 8) - cls - 8);
    }
    return "";
}

std::vector<std::string> conntrack_lines(const Netns& ns, const std::vector<std::string>& parts) {
    std::string out;
    int rc = ns.exec("conntrack -L -o extended", &out);
    INFO(out);
    REQUIRE(rc == 0);  // an empty answer must mean no such connection, not a failed tool
    std::vector<std::string> lines;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) {
        bool all = true;
        for (const auto& p : parts) all = all && line.find(p) != std::string::npos;
        if (all) lines.push_back(line);
    }
    return lines;
}

std::string mangle_save(const Netns& ns, bool v6) {
    std::string out =
        ns.exec_ok(std::string(v6 ? "ip6tables-legacy-save" : "iptables-legacy-save") + " -t mangle");
    // Drop comments and counters: they change with time, not with rules.
    std::istringstream in(out);
    std::string kept;
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#') continue;
        if (line[0] == ':') line = line.substr(0, line.find(' ', line.find(' ') + 1));
        kept += line + "\n";
    }
    return kept;
}

std::string each_firewall() {
    return GENERATE(as<std::string>{}, "iptables", "nftables");
}

std::string mangle_objects(const Netns& ns, const std::string& firewall) {
    if (firewall == "iptables") return mangle_save(ns, false) + mangle_save(ns, true);
    std::string out;
    return ns.exec("nft list table inet flowshaper", &out) == 0 ? out : "";  // absent: an error
}

namespace {

// Lines of `text` without those holding `needle` (and without empty and comment lines).
std::string without(const std::string& text, const std::string& needle) {
    std::istringstream in(text);
    std::string kept;
    for (std::string line; std::getline(in, line);)
        if (!line.empty() && line[0] != '#' && line.find(needle) == std::string::npos) kept += line + "\n";
    return kept;
}

bool flowshaper_nft_item(const nlohmann::json& item) {
    for (const auto& [kind, object] : item.items())
        if (kind == "table" ? object.value("name", "") == "flowshaper"
                            : object.value("table", "") == "flowshaper")
            return object.value("family", "") == "inet";
    return false;
}

}  // namespace

std::string others_firewall(const Netns& ns) {
    auto doc = nlohmann::json::parse(ns.exec_ok("nft -j list ruleset"));
    nlohmann::json kept = nlohmann::json::array();
    for (const auto& item : doc["nftables"])
        if (!flowshaper_nft_item(item)) kept.push_back(item);
    std::string ipsets;
    ns.exec("ipset save", &ipsets);
    return kept.dump(1) + "\n" + without(mangle_save(ns, false), "FLOWSHAPER") +
           without(mangle_save(ns, true), "FLOWSHAPER") + without(ipsets, "flowshaper-");
}

size_t count_lines(const std::string& text, const std::string& needle) {
    size_t n = 0;
    for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
    return n;
}

std::ostream& operator<<(std::ostream& os, const KernelCounts& c) {
    return os << "qdiscs " << c.qdiscs << ", classes " << c.classes << ", filters " << c.filters
              << ", legacy mangle rules " << c.rules4 << " + " << c.rules6 << ", nft rules " << c.nft_rules
              << ", set members " << c.set_members;
}

KernelCounts kernel_counts(const Netns& ns, const std::string& dev) {
    KernelCounts c;
    c.qdiscs = tc_json(ns, "qdisc show dev " + dev).size();
    auto classes = tc_class_table(ns, dev);
    c.classes = classes.size();
    std::vector<std::string> parents = {"f5:"};
    for (const auto& [handle, cls] : classes) parents.push_back(handle);
    for (const auto& parent : parents)
        c.filters += count_lines(ns.exec_ok("tc filter show dev " + dev + " parent " + parent), " fh ");
    c.rules4 = count_lines(mangle_save(ns, false), "\n-A ");
    c.rules6 = count_lines(mangle_save(ns, true), "\n-A ");
    const auto doc = nlohmann::json::parse(ns.exec_ok("nft -j list ruleset"));
    for (const auto& item : doc["nftables"]) {
        if (!flowshaper_nft_item(item)) continue;
        if (item.contains("rule")) ++c.nft_rules;
        if (item.contains("set") && item["set"].contains("elem")) c.set_members += item["set"]["elem"].size();
    }
    std::string ipsets;
    ns.exec("ipset save", &ipsets);
    std::istringstream in(ipsets);
    for (std::string line; std::getline(in, line);)
        if (line.rfind("add flowshaper-", 0) == 0) ++c.set_members;
    return c;
}

}  // namespace flowshaper::testing
