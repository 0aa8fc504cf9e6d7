#include "conntrack_text.hpp"

#include <sstream>

#include "netns.hpp"
#include "wait.hpp"

namespace flowshaper::testing {

CtEnd parse_ct_line(const std::string& line) {
    std::istringstream words(line);
    CtEnd e;
    int src = 0, dst = 0, sport = 0, dport = 0, bytes = 0, packets = 0;
    for (std::string w; words >> w;) {
        auto eq = w.find('=');
        if (eq == std::string::npos) continue;
        const std::string k = w.substr(0, eq), v = w.substr(eq + 1);
        if (k == "src" && src++ == 0) e.src = v;
        if (k == "dst" && dst++ == 0) e.dst = v;
        if (k == "dst" && dst == 2) e.reply_dst = v;
        if (k == "sport" && sport++ == 0) e.sport = std::stoi(v);
        if (k == "dport") (dport++ == 0 ? e.dport : e.reply_dport) = std::stoi(v);
        if (k == "bytes" && bytes < 2) e.bytes[bytes++] = std::stoull(v);
        if (k == "packets" && packets < 2) e.packets[packets++] = std::stoull(v);
        if (k == "delta-time") e.seconds = std::stoi(v);
    }
    return e;
}

std::vector<CtEnd> destroy_events(const std::string& file, int dport) {
    const std::string port = "dport=" + std::to_string(dport) + " ";
    std::vector<CtEnd> out;
    std::istringstream lines(sh_ok("cat " + file));
    for (std::string line; std::getline(lines, line);)
        if (line.find("DESTROY") != std::string::npos && line.find(port) != std::string::npos)
            out.push_back(parse_ct_line(line));
    return out;
}

bool conntrack_events_heard(const Netns& ns, const std::string& file) {
    const std::string tuple = "-p udp -s 192.0.2.1 -d 192.0.2.2";
    return wait_until(
        [&] {
            ns.exec("conntrack -I " + tuple + " --sport 7 --dport 7 -t 30");
            ns.exec("conntrack -D " + tuple);
            return sh("grep -q 'DESTROY.*src=192.0.2.1 dst=192.0.2.2' " + file) == 0;
        },
        kWaitMs, 100);
}

}  // namespace flowshaper::testing
