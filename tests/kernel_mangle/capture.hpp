// tcpdump -n -v in a namespace for a bounded number of packets, parsed into ports and the
// TOS / IPv6 traffic class byte (an independent check of what flowshaper's rules wrote).
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "netns.hpp"
#include "wait.hpp"

namespace flowshaper::testing {

struct Packet {
    int dport = 0;
    int sport = 0;
    std::string tos;    // "0x20"; "0x0" when tcpdump prints no IPv6 traffic class
    std::string flags;  // TCP flags as tcpdump prints them ("S.", "P.", ...); empty for UDP
};

// tcpdump -n -v in the client namespace, for `count` UDP packets (bounded by a timeout: a hang
// guard, the packets come within milliseconds).
class Capture {
public:
    Capture(const Netns& ns, int count, const std::string& filter = "udp")
        : err_path_("/tmp/fst-tcpdump-" + std::to_string(getpid()) + "-" +
                    std::to_string(reinterpret_cast<uintptr_t>(this)) + ".err") {
        std::remove(err_path_.c_str());
        const std::string cmd = "sh -c 'timeout 120 tcpdump -n -v -l -c " + std::to_string(count) + " -i " +
                                VethPair::kClientDev + " " + filter + " 2>" + err_path_ + "'";
        thread_ = std::thread([this, &ns, cmd] { ns.exec(cmd, &out_); });
        // (When it never listens, packets() finds nothing and raw() is empty: the test fails there.)
        wait_until([this] { return listening(); }, kWaitMs, 50);
    }
    ~Capture() {
        if (thread_.joinable()) thread_.join();
        std::remove(err_path_.c_str());
    }
    bool listening() const {
        std::ifstream in(err_path_);
        std::stringstream text;
        text << in.rdbuf();
        return text.str().find("listening on") != std::string::npos;
    }
    // Waits for tcpdump to end and parses what it printed.
    std::vector<Packet> packets() {
        thread_.join();
        std::vector<std::string> records;  // continuation lines (IPv4's second line) joined
        std::istringstream in(out_);
        for (std::string line; std::getline(in, line);) {
            if (!line.empty() && line[0] == ' ' && !records.empty())
                records.back() += line;
            else if (!line.empty())
                records.push_back(line);
        }
        std::vector<Packet> out;
        static const std::regex tos(R"((?:tos|class) (0x[0-9a-f]+))"),
            port(R"([0-9a-f:.]+\.(\d+) > [0-9a-f:.]+\.(\d+): )"), flags(R"(Flags \[([^\]]*)\])");
        for (const auto& r : records) {
            std::smatch t, p, f;
            if (!std::regex_search(r, p, port)) continue;
            out.push_back({std::stoi(p[2]), std::stoi(p[1]),
                           std::regex_search(r, t, tos) ? t[1].str() : "0x0",
                           std::regex_search(r, f, flags) ? f[1].str() : ""});
        }
        return out;
    }
    const std::string& raw() const { return out_; }

private:
    std::string err_path_;
    std::string out_;
    std::thread thread_;
};

// The TOS bytes of the captured packets to `dport`, in order.
inline std::vector<std::string> tos_of(const std::vector<Packet>& packets, int dport) {
    std::vector<std::string> out;
    for (const auto& p : packets)
        if (p.dport == dport) out.push_back(p.tos);
    return out;
}

}  // namespace flowshaper::testing
