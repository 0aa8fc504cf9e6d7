// One [[export]] destination: a bounded queue of records, the IPFIX encoder and a non-blocking
// transport (UDP, TCP or an RFC 5655 file). Never blocks and never grows past its queue: records
// that do not fit are dropped, counted, and reported through the log at most once a minute.
//
// The daemon's loop watches fd() for wanted_events() and calls on_events() when it is ready,
// and calls on_timer() at next_deadline_ms(). fd() and wanted_events() may change after any call
// (a TCP reconnect opens a new socket): re-read them after each call and update the registration.
// Times passed in are monotonic milliseconds; the messages' export time comes from the wall clock.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "flowshaper/common/result.hpp"
#include "flowshaper/flowrec/ipfix.hpp"
#include "flowshaper/flowrec/record.hpp"
#include "flowshaper/policy/policy.hpp"

namespace flowshaper::flowrec {

struct ExporterOptions {
    size_t max_queued_records = 65536;  // about 8 MiB of records
    size_t max_message_bytes = 0;       // 0: UDP the path MTU less the IP/UDP headers; TCP/file 65535
    uint64_t reconnect_min_ms = 1000;   // TCP: doubled after each failure up to reconnect_max_ms
    uint64_t reconnect_max_ms = 30000;
    uint64_t report_interval_ms = 60000;             // drops are reported at most this often
    std::function<uint32_t()> wall_clock_s;          // export time; default: the real time
    std::function<void(const std::string&)> notice;  // a human sentence; default: none
};

struct ExporterStats {
    uint64_t records_sent = 0;
    uint64_t messages_sent = 0;
    uint64_t template_messages = 0;  // messages that carried the template set
    uint64_t records_dropped = 0;    // queue full, or a message the transport refused
    uint64_t send_errors = 0;
    uint64_t connects = 0;  // TCP: established connections
};

class Exporter {
public:
    // Opens the destination (resolves the host once, connects or opens the file).
    static Result<std::unique_ptr<Exporter>> open(const policy::Export& target,
                                                  const ExporterOptions& options, uint64_t now_ms);
    ~Exporter();
    Exporter(const Exporter&) = delete;
    Exporter& operator=(const Exporter&) = delete;

    // Queues the records (dropping those beyond the queue's bound) and sends what goes out now.
    void submit(std::span<const FlowRecord> records, uint64_t now_ms);

    int fd() const { return fd_; }   // -1: nothing to watch now
    uint32_t wanted_events() const;  // EPOLLOUT while output waits or TCP connects; EPOLLIN on TCP
    void on_events(uint32_t events, uint64_t now_ms);
    std::optional<uint64_t> next_deadline_ms() const;  // template refresh, reconnect, drop report
    void on_timer(uint64_t now_ms);

    // Shutdown: sends what the socket takes without blocking; true when nothing is left.
    bool flush(uint64_t now_ms);

    const ExporterStats& stats() const { return stats_; }
    size_t queued() const;  // records waiting, with those of a message partly written
    const std::string& target() const { return target_.target; }
    size_t max_message_bytes() const { return encoder_.max_message_bytes(); }

private:
    Exporter(const policy::Export& target, const ExporterOptions& options, size_t message_bytes);
    void pump(uint64_t now_ms);
    bool encode_next(uint64_t now_ms);
    bool write_out(uint64_t now_ms);
    void connect_tcp(uint64_t now_ms);
    void lost_connection(uint64_t now_ms, int err);
    void report(uint64_t now_ms);
    void close_fd();

    enum class State { Ready, Connecting, Down };

    policy::Export target_;
    ExporterOptions options_;
    ipfix::MessageEncoder encoder_;
    std::vector<uint8_t> peer_;  // resolved sockaddr (UDP/TCP)
    int fd_ = -1;
    State state_ = State::Ready;
    std::deque<FlowRecord> queue_;
    std::vector<FlowRecord> scratch_;
    std::vector<uint8_t> out_;  // the message being written
    size_t out_sent_ = 0;       // bytes of out_ already written (TCP)
    size_t out_records_ = 0;
    bool templates_due_ = true;
    uint64_t next_templates_ms_ = 0;
    uint64_t reconnect_at_ms_ = 0;
    uint64_t reconnect_delay_ms_ = 0;
    uint64_t next_report_ms_ = 0;
    uint64_t dropped_reported_ = 0;
    ExporterStats stats_;
};

}  // namespace flowshaper::flowrec
