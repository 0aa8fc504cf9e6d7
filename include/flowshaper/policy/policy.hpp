// The typed policy: what a valid TOML policy file means. Produced only by the loader,
// after every check passed, so consumers never re-validate.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "flowshaper/common/net.hpp"

namespace flowshaper::policy {

struct SourceLoc {
    std::string file;
    uint32_t line = 0;    // 1-based; 0 when unknown
    uint32_t column = 0;  // 1-based; 0 when unknown
};

enum class Classifier { Auto, Fw, U32 };
enum class OnExit { Flush, Keep };
enum class LeafQdisc { Auto, FqCodel, Sfq, Pfifo, Bfifo };
enum class Protocol { Any, Tcp, Udp };
// Which firewall API writes the mangle rules: auto probes (nftables unless legacy iptables is in use).
enum class Firewall { Auto, Nftables, Iptables };

struct Settings {
    uint64_t poll_interval_ms = 1000;
    uint32_t mark_mask = 0x00ff0000;
    Classifier classifier = Classifier::Auto;
    OnExit on_exit = OnExit::Flush;
    LeafQdisc leaf_qdisc = LeafQdisc::Auto;
    Firewall firewall = Firewall::Auto;
    uint64_t leaf_queue_ms = 100;  // a bfifo leaf holds this long at its class's ceil
    // Absent: the daemon serves /run/flowshaper/flowshaper.sock when /run/flowshaper exists.
    std::optional<std::string> status_socket;
    // The Prometheus endpoint (absent: none). A numeric address and a port.
    struct Listen {
        net::Address address;
        uint16_t port = 0;
    };
    std::optional<Listen> metrics_listen;
    std::optional<std::string> audit_log;  // absolute path of the JSON-lines audit trail
    SourceLoc loc;
};

// A static HTB class of an interface ([[interface.class]]).
struct Class {
    std::string name;
    std::optional<std::string> parent;  // another class of the same interface; none: the root class
    uint64_t rate_bits_per_s = 0;
    uint64_t ceil_bits_per_s = 0;  // defaults to rate
    uint32_t prio = 0;             // HTB priority 0 (highest) .. 7
    std::optional<uint64_t> burst_bytes;
    SourceLoc loc;
};

struct Interface {
    std::string device;
    uint64_t rate_bits_per_s = 0;  // link capacity: the root class's rate and ceil
    std::string default_class;     // name of a class; unclassified traffic goes there
    std::vector<Class> classes;
    SourceLoc loc;
};

// Each client of a cap gets a class of its own, unless `shared`.
struct Cap {
    std::string name;
    std::string device;
    std::vector<net::Prefix> clients;
    std::vector<SourceLoc> client_locs;  // parallel to `clients`
    uint64_t rate_bits_per_s = 0;
    uint64_t ceil_bits_per_s = 0;  // defaults to rate
    bool shared = false;
    std::optional<std::string> parent;  // a class of the device; none: the root class
    SourceLoc loc;
};

struct Limit {
    uint64_t rate_bits_per_s = 0;
    uint64_t ceil_bits_per_s = 0;  // defaults to rate
};

// A heavy-flow rule. At least one threshold is set.
struct Detect {
    std::string name;
    std::string device;
    Protocol protocol = Protocol::Any;
    std::vector<uint16_t> local_ports;   // we are the server
    std::vector<uint16_t> remote_ports;  // we initiated
    std::vector<net::Prefix> clients;    // forwarded traffic: the client side; empty: any
    std::vector<net::Prefix> exclude;    // never marked
    std::optional<uint64_t> flow_bytes;
    std::optional<uint64_t> client_bytes;
    uint64_t window_ms = 0;  // required with client_bytes
    std::optional<uint64_t> client_rate_bits_per_s;
    uint64_t for_ms = 0;  // required with client_rate: how long it must last
    uint8_t dscp = 8;     // CS1
    Limit limit;
    uint64_t release_after_ms = 600000;  // 10m
    std::optional<std::string> parent;   // a class of the device; none: the root class
    SourceLoc loc;
};

enum class ExportTransport { Udp, Tcp, File };

// A flow-record destination ([[export]]): IPFIX over UDP or TCP, or an IPFIX file (RFC 5655).
struct Export {
    std::string target;  // as written: "udp://192.0.2.9:4739", "tcp://[2001:db8::9]:4739", "file:/var/..."
    ExportTransport transport = ExportTransport::Udp;
    std::string host;  // udp/tcp: an address (IPv6 without brackets) or a host name
    uint16_t port = 4739;
    std::string path;  // file: absolute path
    uint64_t active_timeout_ms = 60000;     // a multiple of settings.poll_interval
    uint64_t template_refresh_ms = 600000;  // UDP: templates sent again this often
    uint32_t observation_domain = 0;
    SourceLoc loc;
};

struct Policy {
    std::string file;
    Settings settings;
    std::vector<Interface> interfaces;
    std::vector<Cap> caps;
    std::vector<Detect> detects;
    std::vector<Export> exports;

    const Interface* find_interface(const std::string& device) const;
};

}  // namespace flowshaper::policy
