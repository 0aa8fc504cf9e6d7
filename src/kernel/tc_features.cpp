// Which optional tc kinds the running kernel has, found out from read-only sources only (no probe
// qdisc or filter on any device), and a device's link speed from the ethtool ioctl.
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <zlib.h>

#include <array>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>

#include "nl_tc.hpp"

namespace flowshaper::kernel::detail {

namespace {

struct Kind {
    const char* config;  // CONFIG_ symbol
    const char* module;  // module name, also the file under kernel/net/sched/
};
constexpr Kind kClsFw{"CONFIG_NET_CLS_FW", "cls_fw"};
constexpr Kind kFqCodel{"CONFIG_NET_SCH_FQ_CODEL", "sch_fq_codel"};
constexpr Kind kSfq{"CONFIG_NET_SCH_SFQ", "sch_sfq"};

bool exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

// CONFIG_X -> 'y', 'm' or 'n' ("# CONFIG_X is not set"); nullopt when the file cannot be read.
std::optional<std::map<std::string, char>> read_config_gz(const std::string& path) {
    std::unique_ptr<gzFile_s, decltype(&gzclose)> gz(gzopen(path.c_str(), "rb"), &gzclose);
    if (!gz) return std::nullopt;
    std::map<std::string, char> out;
    std::array<char, 1024> line{};
    bool any = false;
    while (gzgets(gz.get(), line.data(), static_cast<int>(line.size()))) {
        any = true;
        std::string text(line.data());
        while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
        if (text.rfind("CONFIG_", 0) == 0) {
            auto eq = text.find('=');
            if (eq != std::string::npos && eq + 1 < text.size()) out[text.substr(0, eq)] = text[eq + 1];
        } else if (text.rfind("# CONFIG_", 0) == 0 && text.size() > 11 &&
                   text.compare(text.size() - 11, 11, " is not set") == 0) {
            out[text.substr(2, text.size() - 13)] = 'n';
        }
    }
    if (!any) return std::nullopt;
    return out;
}

bool file_lists(const std::string& path, const std::string& needle) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line))
        if (line.find(needle) != std::string::npos) return true;
    return false;
}

bool module_file_present(const std::string& modules_dir, const char* module) {
    std::string base = modules_dir + "/kernel/net/sched/" + module + ".ko";
    for (const char* ext : {"", ".xz", ".zst", ".gz"})
        if (exists(base + ext)) return true;
    return false;
}

struct Answer {
    bool present = false;
    std::string source;
};

// Modules and /sys/module: what is left when /proc/config.gz cannot answer.
std::optional<Answer> from_modules(const Kind& kind, const FeatureSources& s) {
    std::string sys = s.sys_module + "/" + kind.module;
    if (exists(sys)) return Answer{true, s.sys_module};
    if (exists(s.modules_dir + "/modules.builtin")) {
        if (file_lists(s.modules_dir + "/modules.builtin", std::string("/") + kind.module + ".ko"))
            return Answer{true, s.modules_dir + "/modules.builtin"};
        return Answer{module_file_present(s.modules_dir, kind.module),
                      s.modules_dir + " (builtin list, module files)"};
    }
    return std::nullopt;
}

Answer answer_for(const Kind& kind, const std::optional<std::map<std::string, char>>& config,
                  const FeatureSources& s) {
    if (config) {
        auto it = config->find(kind.config);
        char v = it == config->end() ? 'n' : it->second;
        if (v == 'y') return {true, s.config_gz};
        if (v != 'm') return {false, s.config_gz};
        // A module: usable only if it is loaded or installed.
        if (exists(s.sys_module + "/" + kind.module)) return {true, s.config_gz + " + " + s.sys_module};
        if (module_file_present(s.modules_dir, kind.module))
            return {true, s.config_gz + " + " + s.modules_dir};
        return {false, s.config_gz + " (module, not installed)"};
    }
    if (auto a = from_modules(kind, s)) return *a;
    return {false, std::string("unknown: no ") + s.config_gz + ", no " + s.modules_dir + ", no " +
                       s.sys_module + "/" + kind.module};
}

void add_source(std::string& all, const std::string& one) {
    if (all.find(one) != std::string::npos) return;
    if (!all.empty()) all += "; ";
    all += one;
}

}  // namespace

TcFeatures probe_features(const FeatureSources& sources) {
    FeatureSources s = sources;
    if (s.modules_dir.empty()) {
        utsname u{};
        uname(&u);
        s.modules_dir = std::string("/lib/modules/") + u.release;
    }
    auto config = read_config_gz(s.config_gz);
    TcFeatures out;
    Answer fw = answer_for(kClsFw, config, s);
    Answer codel = answer_for(kFqCodel, config, s);
    Answer sfq = answer_for(kSfq, config, s);
    out.cls_fw = fw.present;
    out.fq_codel = codel.present;
    out.sfq = sfq.present;
    for (const Answer* a : {&fw, &codel, &sfq}) add_source(out.source, a->source);
    return out;
}

namespace {

struct FdClose {
    int fd;
    ~FdClose() {
        if (fd >= 0) ::close(fd);
    }
};

bool ethtool_ioctl(int fd, const std::string& device, void* data) {
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, device.c_str(), IFNAMSIZ - 1);
    ifr.ifr_data = static_cast<char*>(data);
    return ::ioctl(fd, SIOCETHTOOL, &ifr) == 0;
}

uint64_t to_bits(uint32_t speed_mbit) {
    if (speed_mbit == 0 || speed_mbit == static_cast<uint32_t>(SPEED_UNKNOWN)) return 0;
    return uint64_t{speed_mbit} * 1000000ull;
}

// ETHTOOL_GLINKSETTINGS: a handshake for the size of the link mode masks, then the real request.
std::optional<uint64_t> link_settings_speed(int fd, const std::string& device) {
    constexpr size_t kMaxMaskWords = 3 * 127;  // 3 masks of at most SCHAR_MAX words each
    alignas(ethtool_link_settings) std::array<uint8_t, sizeof(ethtool_link_settings) + kMaxMaskWords * 4>
        buf{};
    ethtool_link_settings req{};
    req.cmd = ETHTOOL_GLINKSETTINGS;
    std::memcpy(buf.data(), &req, sizeof req);
    if (!ethtool_ioctl(fd, device, buf.data())) return std::nullopt;
    std::memcpy(&req, buf.data(), sizeof req);
    if (req.link_mode_masks_nwords >= 0 || req.cmd != ETHTOOL_GLINKSETTINGS) return std::nullopt;
    req.link_mode_masks_nwords = static_cast<int8_t>(-req.link_mode_masks_nwords);
    std::memcpy(buf.data(), &req, sizeof req);
    if (!ethtool_ioctl(fd, device, buf.data())) return std::nullopt;
    std::memcpy(&req, buf.data(), sizeof req);
    return to_bits(req.speed);
}

}  // namespace

uint64_t ethtool_speed_bits_per_s(const std::string& device) {
    if (device.empty() || device.size() >= IFNAMSIZ) return 0;
    FdClose sock{::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)};
    if (sock.fd < 0) return 0;
    if (auto speed = link_settings_speed(sock.fd, device)) return *speed;
    ethtool_cmd cmd{};
    cmd.cmd = ETHTOOL_GSET;
    if (!ethtool_ioctl(sock.fd, device, &cmd)) return 0;
    return to_bits(ethtool_cmd_speed(&cmd));
}

}  // namespace flowshaper::kernel::detail
