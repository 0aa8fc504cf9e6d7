// The exporter's transports against local sockets and files in this process: templates first
// and again on refresh, sequence numbers, TCP reconnects, a bounded queue when the collector is
// down or does not read, and drops reported at most once a minute.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <iterator>

#include "flowshaper/flowrec/exporter.hpp"
#include "message_check.hpp"

using namespace flowshaper;
using namespace flowshaper::flowrec;

namespace {

struct Fd {
    int fd = -1;
    explicit Fd(int f) : fd(f) {}
    ~Fd() {
        if (fd >= 0) close(fd);
    }
};

// A socket bound to 127.0.0.1 on a free port.
int bound_socket(int type, uint16_t& port) {
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    return fd;
}

policy::Export target(const std::string& text, policy::ExportTransport transport, uint16_t port) {
    policy::Export e;
    e.target = text;
    e.transport = transport;
    e.host = "127.0.0.1";
    e.port = port;
    e.template_refresh_ms = 600000;
    e.observation_domain = 3;
    return e;
}

std::vector<FlowRecord> records(size_t n) {
    std::vector<FlowRecord> out(n);
    for (size_t i = 0; i < n; ++i) {
        out[i].family = i % 4 == 3 ? net::Family::V6 : net::Family::V4;
        out[i].src.family = out[i].dst.family = out[i].post_src.family = out[i].post_dst.family =
            out[i].family;
        out[i].sport = static_cast<uint16_t>(i);
        out[i].octets = i * 1000;
    }
    return out;
}

std::vector<uint8_t> recv_datagram(int fd) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 2000) != 1) return {};
    std::vector<uint8_t> buf(65536);
    ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return buf;
}

// Waits for what the exporter wants and hands it the events, as the daemon's loop does.
void drive(Exporter& e, uint64_t now, int timeout_ms = 200) {
    if (e.fd() < 0 || e.wanted_events() == 0) return;
    pollfd p{e.fd(),
             static_cast<short>((e.wanted_events() & EPOLLIN ? POLLIN : 0) |
                                (e.wanted_events() & EPOLLOUT ? POLLOUT : 0)),
             0};
    if (poll(&p, 1, timeout_ms) <= 0) return;
    uint32_t ev = 0;
    if (p.revents & POLLIN) ev |= EPOLLIN;
    if (p.revents & POLLOUT) ev |= EPOLLOUT;
    if (p.revents & POLLERR) ev |= EPOLLERR;
    if (p.revents & POLLHUP) ev |= EPOLLHUP;
    e.on_events(ev, now);
}

// What arrives until the stream is quiet for 300 ms.
std::vector<uint8_t> read_stream(int fd) {
    std::vector<uint8_t> out;
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 300) != 1) break;
        uint8_t buf[65536];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        out.insert(out.end(), buf, buf + n);
    }
    return out;
}

// Splits a byte stream into IPFIX messages by their length fields.
std::vector<std::vector<uint8_t>> split_messages(const std::vector<uint8_t>& s) {
    std::vector<std::vector<uint8_t>> out;
    for (size_t at = 0; at + 16 <= s.size();) {
        size_t len = check::be(s, at, 2 + 0) == 10 ? check::be(s, at + 2, 2) : 0;
        if (len < 16 || at + len > s.size()) break;
        out.emplace_back(s.begin() + static_cast<ptrdiff_t>(at),
                         s.begin() + static_cast<ptrdiff_t>(at + len));
        at += len;
    }
    return out;
}

}  // namespace

TEST_CASE("UDP: templates at start, then records in MTU-sized messages with running sequence numbers",
          "[exporter]") {
    uint16_t port = 0;
    Fd collector(bound_socket(SOCK_DGRAM, port));
    auto e = Exporter::open(target("udp://127.0.0.1", policy::ExportTransport::Udp, port), {}, 0);
    REQUIRE(e.ok());
    CHECK((*e)->max_message_bytes() == 65535 - 28);  // loopback MTU less the IPv4 and UDP headers
    std::vector<std::vector<uint8_t>> msgs{recv_datagram(collector.fd)};
    REQUIRE(msgs[0].size() == 16 + ipfix::template_set_bytes());
    auto recs = records(2000);
    (*e)->submit(recs, 10);
    while (msgs.size() < 20) {
        auto m = recv_datagram(collector.fd);
        if (m.empty()) break;
        msgs.push_back(std::move(m));
    }
    CHECK(check::check_messages(recs, msgs, 65535 - 28, 3) == "");
    CHECK((*e)->stats().records_sent == 2000);
    CHECK((*e)->stats().records_dropped == 0);
}

TEST_CASE("UDP: the template set goes out again at every template_refresh", "[exporter]") {
    uint16_t port = 0;
    Fd collector(bound_socket(SOCK_DGRAM, port));
    auto t = target("udp://127.0.0.1", policy::ExportTransport::Udp, port);
    t.template_refresh_ms = 5000;
    ExporterOptions o;
    o.max_message_bytes = 1472;
    auto e = Exporter::open(t, o, 1000);
    REQUIRE(e.ok());
    CHECK(recv_datagram(collector.fd).size() == 180);
    CHECK((*e)->next_deadline_ms() == 6000u);
    (*e)->on_timer(5999);
    (*e)->submit(records(1), 5999);
    CHECK(recv_datagram(collector.fd).size() == 16 + 4 + 76);  // no templates yet
    (*e)->on_timer(6000);
    CHECK(recv_datagram(collector.fd).size() == 180);  // templates alone: nothing queued
    CHECK((*e)->next_deadline_ms() == 11000u);
    CHECK((*e)->stats().template_messages == 2);
}

TEST_CASE("UDP: a collector that is down loses records without blocking, said once a minute", "[exporter]") {
    uint16_t port = 0;
    int closed = bound_socket(SOCK_DGRAM, port);
    close(closed);  // nothing listens: ICMP port unreachable, ECONNREFUSED on later sends
    std::vector<std::string> notices;
    ExporterOptions o;
    o.notice = [&](const std::string& s) { notices.push_back(s); };
    o.max_message_bytes = 1472;
    auto e = Exporter::open(target("udp://127.0.0.1:1", policy::ExportTransport::Udp, port), o, 0);
    REQUIRE(e.ok());
    for (uint64_t now = 0; now < 90000; now += 1000) {
        (*e)->submit(records(100), now);
        drive(**e, now, 0);
        if (auto d = (*e)->next_deadline_ms(); d && *d <= now) (*e)->on_timer(now);
    }
    CHECK((*e)->stats().records_dropped > 0);
    CHECK((*e)->stats().records_dropped + (*e)->stats().records_sent == 9000);
    CHECK((*e)->queued() == 0);
    REQUIRE(notices.size() == 2);  // at 0 s and at 60 s
    CHECK(notices[0].find("flow records dropped") != std::string::npos);
}

TEST_CASE("TCP: a collector that does not read fills the bounded queue, then records are dropped",
          "[exporter]") {
    uint16_t port = 0;
    Fd listener(bound_socket(SOCK_STREAM, port));
    REQUIRE(listen(listener.fd, 1) == 0);  // the kernel accepts; nobody reads
    ExporterOptions o;
    o.max_queued_records = 1000;
    auto e = Exporter::open(target("tcp://127.0.0.1", policy::ExportTransport::Tcp, port), o, 0);
    REQUIRE(e.ok());
    drive(**e, 0);
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 200; ++i) {
        (*e)->submit(records(1000), static_cast<uint64_t>(i));
        drive(**e, static_cast<uint64_t>(i), 0);
    }
    // Non-blocking is what the queue's bound shows (a blocking write to a collector that does not
    // read would never return); how long the 200 submissions took is only reported.
    WARN("200 submissions of 1000 records: "
         << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start)
                .count()
         << " ms");
    CHECK((*e)->queued() <= 1000 + 65535 / 75);  // the queue's bound and one message being written
    CHECK((*e)->stats().records_dropped > 0);
    CHECK((*e)->stats().records_sent + (*e)->stats().records_dropped + (*e)->queued() == 200000);
}

TEST_CASE("TCP: templates on connect and again after the collector reconnects, sequence from 0",
          "[exporter]") {
    uint16_t port = 0;
    Fd listener(bound_socket(SOCK_STREAM, port));
    REQUIRE(listen(listener.fd, 1) == 0);
    ExporterOptions o;
    o.reconnect_min_ms = 1000;
    auto e = Exporter::open(target("tcp://127.0.0.1", policy::ExportTransport::Tcp, port), o, 0);
    REQUIRE(e.ok());
    drive(**e, 0);
    Fd first(accept(listener.fd, nullptr, nullptr));
    auto recs = records(100);
    (*e)->submit(recs, 1);
    drive(**e, 1);
    auto got = split_messages(read_stream(first.fd));
    REQUIRE(got.size() >= 2);
    CHECK(check::check_messages(recs, got, 65535, 3) == "");

    close(first.fd);
    first.fd = -1;
    drive(**e, 2);  // EOF
    CHECK((*e)->fd() == -1);
    CHECK((*e)->next_deadline_ms() == 1002u);
    (*e)->submit(recs, 3);  // queued while down
    (*e)->on_timer(1002);
    drive(**e, 1002);
    Fd second(accept(listener.fd, nullptr, nullptr));
    drive(**e, 1003);
    got = split_messages(read_stream(second.fd));
    REQUIRE(got.size() >= 1);  // templates and the queued records, in one message
    CHECK(check::check_messages(recs, got, 65535, 3) == "");  // templates first, sequence 0 again
    CHECK((*e)->stats().connects == 2);
}

TEST_CASE("file: an RFC 5655 file of messages, templates first", "[exporter]") {
    const std::string path = "/tmp/flowrec-test-" + std::to_string(getpid()) + ".ipfix";
    unlink(path.c_str());
    policy::Export t;
    t.target = "file:" + path;
    t.transport = policy::ExportTransport::File;
    t.path = path;
    t.observation_domain = 3;
    auto recs = records(5000);
    {
        auto e = Exporter::open(t, {}, 0);
        REQUIRE(e.ok());
        CHECK((*e)->fd() >= 0);
        CHECK((*e)->wanted_events() == 0);
        (*e)->submit(recs, 1);
        CHECK((*e)->flush(2));
    }
    std::ifstream in(path, std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    unlink(path.c_str());
    CHECK(check::check_messages(recs, split_messages(bytes), 65535, 3) == "");
}

TEST_CASE("an unreachable file or an unresolvable host is a located start-up error", "[exporter]") {
    policy::Export t;
    t.target = "file:/nonexistent-dir/x.ipfix";
    t.transport = policy::ExportTransport::File;
    t.path = "/nonexistent-dir/x.ipfix";
    auto e = Exporter::open(t, {}, 0);
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().text().find("/nonexistent-dir/x.ipfix") != std::string::npos);
    auto bad = target("udp://no-such-host.invalid", policy::ExportTransport::Udp, 4739);
    bad.host = "no-such-host.invalid";
    auto u = Exporter::open(bad, {}, 0);
    REQUIRE_FALSE(u.ok());
    CHECK(u.error().text().find("udp://no-such-host.invalid") != std::string::npos);
}
