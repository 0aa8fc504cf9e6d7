// The exporter: queue, encoder and non-blocking transport (see exporter.hpp).
#include "flowshaper/flowrec/exporter.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "transport.hpp"

namespace flowshaper::flowrec {
namespace {

using policy::ExportTransport;

std::string seconds_text(uint64_t ms) {
    return std::to_string((ms + 999) / 1000) + " s";
}

}  // namespace

Result<std::unique_ptr<Exporter>> Exporter::open(const policy::Export& target, const ExporterOptions& options,
                                                 uint64_t now_ms) {
    size_t budget = options.max_message_bytes ? options.max_message_bytes : ipfix::kMaxMessageBytes;
    std::vector<uint8_t> peer;
    int fd = -1;
    bool connected = true;
    if (target.transport == ExportTransport::File) {
        auto f = detail::open_file(target.path);
        if (!f) return f.error();
        fd = *f;
    } else {
        auto resolved = detail::resolve(target);
        if (!resolved) return resolved.error();
        peer = std::move(*resolved);
        auto s = target.transport == ExportTransport::Udp ? detail::open_udp(peer, target.target)
                                                          : detail::open_tcp(peer, target.target, connected);
        if (!s) return s.error();
        fd = *s;
        if (target.transport == ExportTransport::Udp && !options.max_message_bytes)
            budget = detail::udp_payload_budget(fd, peer);
    }
    std::unique_ptr<Exporter> e(new Exporter(target, options, budget));
    e->peer_ = std::move(peer);
    e->fd_ = fd;
    e->reconnect_delay_ms_ = options.reconnect_min_ms;
    e->next_templates_ms_ = now_ms + target.template_refresh_ms;
    e->next_report_ms_ = now_ms;
    if (!connected) e->state_ = State::Connecting;
    if (connected && target.transport == ExportTransport::Tcp) ++e->stats_.connects;
    e->pump(now_ms);  // the templates go out at once
    return e;
}

Exporter::Exporter(const policy::Export& target, const ExporterOptions& options, size_t message_bytes)
    : target_(target), options_(options), encoder_(target.observation_domain, message_bytes) {
    if (!options_.wall_clock_s)
        options_.wall_clock_s = [] { return static_cast<uint32_t>(std::time(nullptr)); };
}

Exporter::~Exporter() {
    close_fd();
}

void Exporter::close_fd() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

void Exporter::submit(std::span<const FlowRecord> records, uint64_t now_ms) {
    const size_t room = options_.max_queued_records - std::min(queue_.size(), options_.max_queued_records);
    const size_t take = std::min(room, records.size());
    queue_.insert(queue_.end(), records.begin(), records.begin() + static_cast<ptrdiff_t>(take));
    stats_.records_dropped += records.size() - take;
    pump(now_ms);
    report(now_ms);
}

size_t Exporter::queued() const {
    return queue_.size() + (out_sent_ < out_.size() ? out_records_ : 0);
}

uint32_t Exporter::wanted_events() const {
    if (fd_ < 0 || target_.transport == ExportTransport::File) return 0;
    if (state_ == State::Connecting) return uint32_t{EPOLLOUT};
    uint32_t events = target_.transport == ExportTransport::Tcp ? uint32_t{EPOLLIN} : 0u;
    if (out_sent_ < out_.size() || !queue_.empty()) events |= EPOLLOUT;
    return events;
}

void Exporter::on_events(uint32_t events, uint64_t now_ms) {
    if (fd_ < 0) return;
    if (target_.transport == ExportTransport::Udp) {
        if (events & EPOLLERR) {
            detail::take_socket_error(fd_);  // an ICMP error from an earlier datagram; clears it
            ++stats_.send_errors;
        }
        pump(now_ms);
        return;
    }
    if (state_ == State::Connecting) {
        int err = detail::take_socket_error(fd_);
        if (err != 0) return lost_connection(now_ms, err);
        state_ = State::Ready;
        ++stats_.connects;
        encoder_.reset_sequence();  // a new transport session
        templates_due_ = true;
        reconnect_delay_ms_ = options_.reconnect_min_ms;
        if (options_.notice) options_.notice("export to " + target_.target + ": connected");
    }
    if (events & (EPOLLERR | EPOLLHUP)) return lost_connection(now_ms, detail::take_socket_error(fd_));
    if (events & EPOLLIN) {
        char sink[512];
        ssize_t n = recv(fd_, sink, sizeof sink, MSG_DONTWAIT);
        if (n == 0) return lost_connection(now_ms, 0);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return lost_connection(now_ms, errno);
    }
    pump(now_ms);
}

std::optional<uint64_t> Exporter::next_deadline_ms() const {
    std::optional<uint64_t> next;
    auto consider = [&](uint64_t at) { next = next ? std::min(*next, at) : at; };
    if (target_.transport == ExportTransport::Udp) consider(next_templates_ms_);
    if (state_ == State::Down) consider(reconnect_at_ms_);
    if (stats_.records_dropped > dropped_reported_) consider(next_report_ms_);
    return next;
}

void Exporter::on_timer(uint64_t now_ms) {
    if (target_.transport == ExportTransport::Udp && now_ms >= next_templates_ms_) templates_due_ = true;
    if (state_ == State::Down && now_ms >= reconnect_at_ms_) connect_tcp(now_ms);
    pump(now_ms);
    report(now_ms);
}

bool Exporter::flush(uint64_t now_ms) {
    pump(now_ms);
    return queue_.empty() && out_sent_ >= out_.size();
}

void Exporter::pump(uint64_t now_ms) {
    while (state_ == State::Ready && fd_ >= 0) {
        if (out_sent_ >= out_.size() && !encode_next(now_ms)) return;
        if (!write_out(now_ms)) return;
    }
}

bool Exporter::encode_next(uint64_t now_ms) {
    if (queue_.empty() && !templates_due_) return false;
    const size_t per_message = encoder_.max_message_bytes() / ipfix::record_bytes(net::Family::V4) + 1;
    const size_t n = std::min(per_message, queue_.size());
    scratch_.assign(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
    const bool templates = templates_due_;
    out_records_ = encoder_.encode(scratch_, options_.wall_clock_s(), templates, out_);
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(out_records_));
    out_sent_ = 0;
    if (templates) {
        templates_due_ = false;
        next_templates_ms_ = now_ms + target_.template_refresh_ms;
        ++stats_.template_messages;
    }
    return true;
}

// Writes the current message; false when the caller must wait (would block, connection lost).
bool Exporter::write_out(uint64_t now_ms) {
    const bool file = target_.transport == ExportTransport::File;
    for (;;) {
        const uint8_t* data = out_.data() + out_sent_;
        const size_t left = out_.size() - out_sent_;
        ssize_t n = file ? ::write(fd_, data, left) : ::send(fd_, data, left, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n >= 0) {
            out_sent_ += static_cast<size_t>(n);
            if (out_sent_ < out_.size()) {
                if (file) continue;
                return false;  // TCP send buffer full: EPOLLOUT
            }
            ++stats_.messages_sent;
            stats_.records_sent += out_records_;
            return true;
        }
        const int err = errno;
        if (err == EINTR) continue;
        if (err == EAGAIN || err == EWOULDBLOCK) return false;
        if (target_.transport == ExportTransport::Tcp) {
            lost_connection(now_ms, err);
            return false;
        }
        // UDP: ECONNREFUSED reports an earlier datagram's ICMP error (the collector is down) and
        // this one was not sent: it is counted as lost, as that earlier one was.
        ++stats_.send_errors;
        stats_.records_dropped += out_records_;
        out_sent_ = out_.size();
        templates_due_ = templates_due_ || target_.transport == ExportTransport::Udp;
        return true;
    }
}

void Exporter::connect_tcp(uint64_t now_ms) {
    close_fd();
    bool connected = false;
    auto s = detail::open_tcp(peer_, target_.target, connected);
    if (!s) return lost_connection(now_ms, s.error().code);
    fd_ = *s;
    state_ = State::Connecting;
    if (connected) on_events(EPOLLOUT, now_ms);
}

void Exporter::lost_connection(uint64_t now_ms, int err) {
    const bool was_up = state_ == State::Ready;
    close_fd();
    state_ = State::Down;
    if (out_sent_ < out_.size()) {
        stats_.records_dropped += out_records_;  // a message cut short is lost with its connection
        out_sent_ = out_.size();
    }
    reconnect_at_ms_ = now_ms + reconnect_delay_ms_;
    if (was_up && options_.notice)
        options_.notice("export to " + target_.target + ": connection lost (" +
                        (err ? std::strerror(err) : "closed by the collector") + "); reconnecting in " +
                        seconds_text(reconnect_delay_ms_));
    reconnect_delay_ms_ = std::min(reconnect_delay_ms_ * 2, options_.reconnect_max_ms);
}

void Exporter::report(uint64_t now_ms) {
    if (stats_.records_dropped == dropped_reported_ || now_ms < next_report_ms_) return;
    if (options_.notice)
        options_.notice("export to " + target_.target + ": " +
                        std::to_string(stats_.records_dropped - dropped_reported_) +
                        " flow records dropped (collector down or slow, queue of " +
                        std::to_string(options_.max_queued_records) + " full); " +
                        std::to_string(queue_.size()) + " queued");
    dropped_reported_ = stats_.records_dropped;
    next_report_ms_ = now_ms + options_.report_interval_ms;
}

}  // namespace flowshaper::flowrec
