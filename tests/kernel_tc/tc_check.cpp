#include "tc_check.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "wait.hpp"

namespace flowshaper::testing {

using tc::Change;
using Role = tc::U32Filter::Role;

tc::HtbClass htb_class(tc::Handle id, tc::Handle parent, uint64_t rate_mbit, uint64_t ceil_mbit) {
    tc::HtbClass c;
    c.classid = id;
    c.parent = parent;
    c.rate_bytes_per_s = rate_mbit * 1000000 / 8;
    c.ceil_bytes_per_s = ceil_mbit * 1000000 / 8;
    c.burst_bytes = static_cast<uint32_t>(c.rate_bytes_per_s / 1000 + 1514);  // ~1 ms + one frame
    c.cburst_bytes = static_cast<uint32_t>(c.ceil_bytes_per_s / 1000 + 1514);
    c.quantum_bytes = 1514;
    return c;
}

tc::U32Filter u32_table(uint16_t prio, uint16_t protocol, uint32_t table) {
    tc::U32Filter f;
    f.role = Role::Table;
    f.prio = prio;
    f.protocol = protocol;
    f.handle = tc::u32_handle(table, 0, 0);
    f.divisor = 256;
    return f;
}

tc::U32Filter u32_link(uint16_t prio, uint16_t protocol, uint32_t node, uint32_t table, int32_t hash_offset) {
    tc::U32Filter f;
    f.role = Role::Link;
    f.prio = prio;
    f.protocol = protocol;
    f.handle = tc::u32_handle(0, 0, node);  // in the prio's root table
    f.link_table = tc::u32_handle(table, 0, 0);
    f.hash_mask = 0x000000ff;
    f.hash_offset = hash_offset;
    f.keys = {{0, 0, 0}};
    return f;
}

tc::U32Filter u32_match(uint16_t prio, uint16_t protocol, uint32_t handle, std::vector<tc::U32Key> keys,
                        tc::Handle classid) {
    tc::U32Filter f;
    f.role = Role::Match;
    f.prio = prio;
    f.protocol = protocol;
    f.handle = handle;
    f.keys = std::move(keys);
    f.classid = classid;
    return f;
}

tc::DeviceState reference_state() {
    tc::DeviceState s;
    s.device = VethPair::kServerDev;
    s.root = tc::HtbQdisc{tc::kRootQdisc, kDefault, 10};
    s.classes = {
        htb_class(tc::kRootClass, tc::kRootQdisc, 100, 100), htb_class(kDefault, tc::kRootClass, 50, 100),
        htb_class(kInner, tc::kRootClass, 20, 100),          htb_class(kHostV4, kInner, 5, 10),
        htb_class(kHostV6, tc::kRootClass, 6, 12),           htb_class(kNetV6, tc::kRootClass, 7, 14),
        htb_class(kHeavyV4, tc::kRootClass, 2, 4),           htb_class(kWideV4, tc::kRootClass, 3, 6),
    };
    s.classes[2].quantum_bytes = 0;  // the inner class: the kernel derives it
    s.classes[4].prio = 3;
    s.leaves = {tc::LeafQdisc{kHostV4, tc::make_handle(0x100, 0), "pfifo", 100}};
    using tc::kEthPIp, tc::kEthPIpv6;
    s.u32 = {
        u32_table(kPrioV4, kEthPIp, kTableV4),
        u32_table(kPrioV6, kEthPIpv6, kTableV6Host),
        u32_table(kPrioV6, kEthPIpv6, kTableV6Net),
        u32_link(kPrioV4, kEthPIp, 1, kTableV4, 16),
        u32_link(kPrioV6, kEthPIpv6, 1, kTableV6Host, 36),
        u32_link(kPrioV6, kEthPIpv6, 2, kTableV6Net, 28),
        u32_match(kPrioV4, kEthPIp, tc::u32_handle(kTableV4, 2, 0x800), {{0x0ac80002, 0xffffffff, 16}},
                  kHostV4),
        u32_match(
            kPrioV6, kEthPIpv6, tc::u32_handle(kTableV6Host, 2, 0x800),
            {{0xfd000200, 0xffffffff, 24}, {0, 0xffffffff, 28}, {0, 0xffffffff, 32}, {2, 0xffffffff, 36}},
            kHostV6),
        u32_match(kPrioV6, kEthPIpv6, tc::u32_handle(kTableV6Net, 0, 0x800),
                  {{0xfd000300, 0xffffffff, 24}, {0, 0xffffffff, 28}}, kNetV6),
        u32_match(kPrioV4, kEthPIp, tc::u32_handle(kTableV4, 3, 1),
                  {{8u << 18, 0x00fc0000, 0}, {0x0ac80003, 0xffffffff, 16}}, kHeavyV4),
        u32_match(kPrioV4, kEthPIp, tc::u32_handle(0, 0, 0x800), {{0x0ac90000, 0xffff0000, 16}}, kWideV4),
    };
    return s;
}

std::vector<Change> build_changes(const tc::DeviceState& s) {
    std::vector<Change> out;
    out.push_back({Change::Op::Add, *s.root});
    for (const auto& c : s.classes) out.push_back({Change::Op::Add, c});  // listed parents first
    for (const auto& l : s.leaves) out.push_back({Change::Op::Add, l});
    for (Role role : {Role::Table, Role::Link, Role::Match})
        for (const auto& f : s.u32)
            if (f.role == role) out.push_back({Change::Op::Add, f});
    return out;
}

std::vector<Change> teardown_changes(const tc::DeviceState& s) {
    std::vector<Change> out;
    for (Role role : {Role::Match, Role::Link, Role::Table})
        for (const auto& f : s.u32)
            if (f.role == role) out.push_back({Change::Op::Remove, f});
    for (const auto& l : s.leaves) out.push_back({Change::Op::Remove, l});
    for (auto it = s.classes.rbegin(); it != s.classes.rend(); ++it) out.push_back({Change::Op::Remove, *it});
    return out;
}

std::map<std::string, std::map<std::string, std::string>> tc_classes(const Netns& ns,
                                                                     const std::string& dev) {
    std::istringstream in(ns.exec_ok("tc -s class show dev " + dev));
    std::map<std::string, std::map<std::string, std::string>> out;
    std::string line, current;
    while (std::getline(in, line)) {
        std::istringstream words(line);
        std::string w;
        words >> w;
        if (w == "class") {
            std::string kind;
            words >> kind >> current;
            if (kind != "htb") {  // an fq_codel or sfq leaf's flows
                current.clear();
                continue;
            }
            auto& entry = out[current];
            std::string key;
            while (words >> key) {
                if (key == "root") {
                    entry["parent"] = "root";
                    continue;
                }
                std::string value;
                if (words >> value) entry[key] = value;
            }
        } else if (w == "Sent" && !current.empty()) {
            std::string bytes, word, packets;
            words >> bytes >> word >> packets;
            out[current]["bytes"] = bytes;
            out[current]["packets"] = packets;
        }
    }
    return out;
}

nlohmann::json tc_filters(const Netns& ns, const std::string& dev) {
    std::string text = ns.exec_ok("tc -j filter show dev " + dev);
    // tc prints every u32 key under the same name "match"; number them per filter so none is lost.
    std::string renamed;
    int n = 0;
    const std::string match = "\"match\":", fh = "\"fh\":";
    size_t pos = 0;
    while (true) {
        size_t m = text.find(match, pos), f = text.find(fh, pos);
        if (m == std::string::npos && f == std::string::npos) break;
        if (f < m) {
            n = 0;
            renamed += text.substr(pos, f + fh.size() - pos);
            pos = f + fh.size();
        } else {
            renamed += text.substr(pos, m - pos) + "\"match" + std::to_string(n++) + "\":";
            pos = m + match.size();
        }
    }
    renamed += text.substr(pos);
    return nlohmann::json::parse(renamed);
}

nlohmann::json tc_qdiscs(const Netns& ns, const std::string& dev) {
    return nlohmann::json::parse(ns.exec_ok("tc -j qdisc show dev " + dev));
}

nlohmann::json find_fh(const nlohmann::json& filters, const std::string& fh) {
    for (const auto& f : filters)
        if (f.contains("options") && f["options"].value("fh", "") == fh) return f;
    return nullptr;
}

int send_udp(const std::string& address, int count, int dscp) {
    bool v6 = address.find(':') != std::string::npos;
    int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error("socket() failed");
    sockaddr_storage dst{};
    socklen_t len = 0;
    if (v6) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&dst);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(9);
        inet_pton(AF_INET6, address.c_str(), &a->sin6_addr);
        len = sizeof *a;
    } else {
        auto* a = reinterpret_cast<sockaddr_in*>(&dst);
        a->sin_family = AF_INET;
        a->sin_port = htons(9);
        inet_pton(AF_INET, address.c_str(), &a->sin_addr);
        len = sizeof *a;
    }
    if (dscp >= 0) {
        int tos = dscp << 2;
        if (v6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof tos);
        else
            setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof tos);
    }
    char payload[100] = {};
    int sent = 0;
    for (int i = 0; i < count; ++i) {
        if (::sendto(fd, payload, sizeof payload, 0, reinterpret_cast<sockaddr*>(&dst), len) > 0) ++sent;
        usleep(2000);  // pacing, a duration (count * 2 ms): no burst for a class to hold back
    }
    ::close(fd);
    // The last ones have left the qdiscs (their classes counted them at dequeue) once no qdisc of
    // this thread's namespace holds a packet. (tc runs in it: a child takes the caller's thread's.)
    const bool drained = wait_until([] {
        std::string out;
        if (sh("tc -s -j qdisc show", &out) != 0) return false;
        for (const auto& q : nlohmann::json::parse(out))
            if (q.value("qlen", 0) != 0 || q.value("backlog", 0) != 0) return false;
        return true;
    });
    if (!drained) throw std::runtime_error("send_udp: the qdiscs still hold packets after the deadline");
    return sent;
}

namespace {
std::string checked_tag() {
    require_netns_privileges();
    return "tc";
}
}  // namespace

PortFixture::PortFixture() : net(checked_tag()), inside(net.server) {
    auto opened = kernel::NetlinkTcPort::open();
    if (!opened) FAIL("open: " << opened.error().text());
    port = std::move(*opened);
}

void PortFixture::apply_all(const std::vector<Change>& changes) {
    for (const auto& c : changes) {
        Status st = port->apply(dev, c);
        INFO(c.describe() << ": " << (st ? std::string("ok") : st.error().text()));
        REQUIRE(st.ok());
    }
}

}  // namespace flowshaper::testing
