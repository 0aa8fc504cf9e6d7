// Sockets and files for the exporter: resolving, connecting, the UDP path MTU. Internal.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "flowshaper/common/result.hpp"
#include "flowshaper/policy/policy.hpp"

namespace flowshaper::flowrec::detail {

// The target's address as a sockaddr (bytes), resolved once (numeric addresses need no lookup).
Result<std::vector<uint8_t>> resolve(const policy::Export& target);
// A non-blocking, connected UDP socket.
Result<int> open_udp(const std::vector<uint8_t>& peer, const std::string& object);
// A non-blocking TCP socket with connect() under way (or done). `connected` tells which.
Result<int> open_tcp(const std::vector<uint8_t>& peer, const std::string& object, bool& connected);
// The file, for appending.
Result<int> open_file(const std::string& path);
// The largest UDP payload without fragmentation on the socket's route (path MTU less headers).
size_t udp_payload_budget(int fd, const std::vector<uint8_t>& peer);
// The pending socket error (SO_ERROR), which reading clears.
int take_socket_error(int fd);

}  // namespace flowshaper::flowrec::detail
