// Independent readings of conntrack through the `conntrack` tool itself, for real-kernel tests:
// its `-o extended` lines, from `conntrack -L` or from `conntrack -E` written to a file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace flowshaper::testing {

class Netns;

// A connection as a line of `conntrack -o extended` shows it; for a DESTROY event, its end.
struct CtEnd {
    std::string src, dst, reply_dst;  // the original tuple's addresses, the reply tuple's destination
    int sport = 0, dport = 0, reply_dport = 0;
    uint64_t bytes[2] = {0, 0}, packets[2] = {0, 0};  // original, reply direction
    int seconds = -1;  // delta-time: the connection's lifetime in whole seconds (nf_conntrack_timestamp)
};

// One `conntrack -o extended` line (a listing's or an event's).
CtEnd parse_ct_line(const std::string& line);

// The DESTROY events of connections to port `dport` in `file`, which
// `conntrack -E -e DESTROY -o extended` wrote.
std::vector<CtEnd> destroy_events(const std::string& file, int dport);

// Waits until the `conntrack -E -e DESTROY` that writes `file` in `ns` listens: creates and
// deletes an entry (UDP 192.0.2.1 -> 192.0.2.2, port 7) until its DESTROY shows in the file;
// every later event is heard. False after the deadline (kWaitMs).
bool conntrack_events_heard(const Netns& ns, const std::string& file);

}  // namespace flowshaper::testing
