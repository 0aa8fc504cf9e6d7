// Valid policies: the shipped examples load cleanly, and the typed Policy holds what the text says.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "flowshaper/policy/loader.hpp"

namespace fs = std::filesystem;
using namespace flowshaper;
using namespace flowshaper::policy;

namespace {

const std::string kPolicies = FLOWSHAPER_POLICIES_DIR;

Policy load_ok(const std::string& text) {
    LoadResult r = load_string(text, "test.toml");
    for (const auto& d : r.diagnostics) UNSCOPED_INFO(d.format());
    REQUIRE(r.diagnostics.empty());
    REQUIRE(r.ok());
    return *r.policy;
}

std::vector<std::string> strs(const std::vector<net::Prefix>& prefixes) {
    std::vector<std::string> out;
    for (const auto& p : prefixes) out.push_back(p.str());
    return out;
}

}  // namespace

TEST_CASE("every policy shipped in policies/ loads without any diagnostic", "[loader][valid]") {
    size_t count = 0;
    for (const auto& entry : fs::directory_iterator(kPolicies)) {
        if (entry.path().extension() != ".toml") continue;
        ++count;
        INFO(entry.path().string());
        LoadResult r = load_file(entry.path().string());
        for (const auto& d : r.diagnostics) UNSCOPED_INFO(d.format());
        CHECK(r.diagnostics.empty());
        CHECK(r.ok());
    }
    CHECK(count >= 3);
}

TEST_CASE("the mail-server example converts units, applies defaults and keeps positions", "[loader][valid]") {
    const std::string path = kPolicies + "/mail-server.toml";
    LoadResult r = load_file(path);
    REQUIRE(r.ok());
    const Policy& p = *r.policy;
    CHECK(p.file == path);
    CHECK(p.settings.poll_interval_ms == 1000);
    CHECK(p.settings.mark_mask == 0x00ff0000u);
    CHECK(p.settings.classifier == Classifier::Auto);
    CHECK(p.settings.on_exit == OnExit::Flush);
    CHECK(p.settings.status_socket == "/run/flowshaper.sock");

    REQUIRE(p.interfaces.size() == 1);
    const Interface& eth0 = p.interfaces[0];
    CHECK(eth0.device == "eth0");
    CHECK(eth0.rate_bits_per_s == 1'000'000'000);
    CHECK(eth0.default_class == "normal");
    REQUIRE(eth0.classes.size() == 2);
    CHECK(eth0.classes[0].name == "normal");
    CHECK(eth0.classes[0].rate_bits_per_s == 900'000'000);
    CHECK(eth0.classes[0].ceil_bits_per_s == 1'000'000'000);
    CHECK_FALSE(eth0.classes[0].burst_bytes.has_value());
    CHECK(eth0.classes[1].prio == 5);
    CHECK(eth0.classes[1].burst_bytes == 65'536u);
    CHECK(p.find_interface("eth0") == &eth0);
    CHECK(p.find_interface("eth1") == nullptr);

    REQUIRE(p.caps.size() == 2);
    const Cap& c42 = p.caps[0];
    CHECK(c42.name == "customer-42");
    CHECK(strs(c42.clients) == std::vector<std::string>{"203.0.113.7", "2001:db8:7::/64"});
    REQUIRE(c42.client_locs.size() == 2);
    CHECK(c42.client_locs[0].file == path);
    CHECK(c42.client_locs[0].line == c42.client_locs[1].line);
    CHECK(c42.client_locs[0].column + 18 == c42.client_locs[1].column);
    CHECK(c42.rate_bits_per_s == 5'000'000);
    CHECK(c42.ceil_bits_per_s == 10'000'000);
    CHECK_FALSE(c42.shared);
    CHECK(c42.parent == "normal");
    CHECK(p.caps[1].shared);
    CHECK(p.caps[1].ceil_bits_per_s == 20'000'000);  // defaults to rate
    CHECK_FALSE(p.caps[1].parent.has_value());

    REQUIRE(p.detects.size() == 1);
    const Detect& d = p.detects[0];
    CHECK(d.protocol == Protocol::Tcp);
    CHECK(d.local_ports == std::vector<uint16_t>{143, 993, 110, 995});
    CHECK(d.remote_ports.empty());
    CHECK(d.clients.empty());
    CHECK(strs(d.exclude) == std::vector<std::string>{"10.0.0.0/8", "fd00::/8"});
    CHECK(d.flow_bytes == 500'000'000u);
    CHECK(d.client_bytes == 2'000'000'000u);
    CHECK(d.window_ms == 600'000);
    CHECK_FALSE(d.client_rate_bits_per_s.has_value());
    CHECK(d.dscp == 8);
    CHECK(d.limit.rate_bits_per_s == 2'000'000);
    CHECK(d.limit.ceil_bits_per_s == 4'000'000);
    CHECK(d.release_after_ms == 900'000);
    CHECK(d.loc.file == path);
    CHECK(d.loc.line > 0);
    CHECK(d.loc.column == 1);
}

TEST_CASE("the demo policy is what the demo expects", "[loader][valid]") {
    LoadResult r = load_file(kPolicies + "/demo.toml");
    REQUIRE(r.ok());
    const Policy& p = *r.policy;
    REQUIRE(p.interfaces.size() == 1);
    CHECK(p.interfaces[0].device == "veth-s");
    CHECK(p.interfaces[0].rate_bits_per_s == 1'000'000'000);
    CHECK(p.interfaces[0].classes.empty());
    REQUIRE(p.caps.size() == 1);
    CHECK(strs(p.caps[0].clients) == std::vector<std::string>{"10.200.0.2"});
    CHECK(p.caps[0].rate_bits_per_s == 20'000'000);
    REQUIRE(p.detects.size() == 1);
    const Detect& d = p.detects[0];
    CHECK(d.protocol == Protocol::Tcp);
    CHECK(d.local_ports == std::vector<uint16_t>{5201});
    CHECK(d.flow_bytes == 20'000'000u);
    CHECK(d.dscp == 8);
    CHECK(d.limit.rate_bits_per_s == 10'000'000);
    CHECK(d.limit.ceil_bits_per_s == 10'000'000);
    CHECK(d.release_after_ms == 30'000);
}

TEST_CASE("the web-scrapers example has a client_rate rule and bytes-per-second caps", "[loader][valid]") {
    LoadResult r = load_file(kPolicies + "/web-scrapers.toml");
    REQUIRE(r.ok());
    const Policy& p = *r.policy;
    CHECK(p.settings.classifier == Classifier::U32);
    CHECK(p.settings.poll_interval_ms == 2000);
    REQUIRE(p.caps.size() == 3);
    CHECK(p.caps[2].rate_bits_per_s == 16'000'000);  // 2mbps is bytes per second
    REQUIRE(p.detects.size() == 1);
    CHECK(p.detects[0].client_rate_bits_per_s == 50'000'000u);
    CHECK(p.detects[0].for_ms == 30'000);
    CHECK(p.detects[0].dscp == 10);                   // AF11
    CHECK(p.detects[0].release_after_ms == 600'000);  // default 10m
}

TEST_CASE("an empty policy is valid and carries every default", "[loader][valid]") {
    Policy p = load_ok("");
    CHECK(p.file == "test.toml");
    CHECK(p.settings.poll_interval_ms == 1000);
    CHECK(p.settings.mark_mask == 0x00ff0000u);
    CHECK(p.settings.leaf_qdisc == LeafQdisc::Auto);
    CHECK(p.settings.leaf_queue_ms == 100);
    CHECK(p.interfaces.empty());
    CHECK(p.caps.empty());
    CHECK(p.detects.empty());
}

TEST_CASE("leaf_queue sizes bfifo leaves in time", "[loader][valid]") {
    Policy p = load_ok("[settings]\nleaf_qdisc = \"bfifo\"\nleaf_queue = \"250ms\"\n");
    CHECK(p.settings.leaf_qdisc == LeafQdisc::Bfifo);
    CHECK(p.settings.leaf_queue_ms == 250);
    CHECK(load_ok("[settings]\nleaf_queue = \"10s\"\n").settings.leaf_queue_ms == 10'000);
}

TEST_CASE("settings accept every enum value and integers as bits and bytes and prefixes are normalised",
          "[loader][valid]") {
    Policy p = load_ok(R"(
[settings]
classifier = "fw"
on_exit = "keep"
leaf_qdisc = "pfifo"
mark_mask = 0xff
poll_interval = "250ms"

[[interface]]
device = "veth-a.1"
rate = 100000000

[[cap]]
name = "v6"
device = "veth-a.1"
clients = ["2001:DB8:0:0::7", "2001:db8:1::/48", "192.0.2.128/25"]
rate = 5000

[[detect]]
name = "udp-flood"
device = "veth-a.1"
protocol = "udp"
remote_ports = [53]
clients = ["192.0.2.0/24"]
client_rate = "1.5mbit"
for = "2s"
dscp = 0
limit.rate = "1mbit"
limit.ceil = "2mbit"
)");
    CHECK(p.settings.classifier == Classifier::Fw);
    CHECK(p.settings.on_exit == OnExit::Keep);
    CHECK(p.settings.leaf_qdisc == LeafQdisc::Pfifo);
    CHECK(p.settings.mark_mask == 0xffu);
    CHECK(p.settings.poll_interval_ms == 250);
    CHECK(p.interfaces[0].rate_bits_per_s == 100'000'000);
    CHECK(p.interfaces[0].default_class.empty());
    CHECK(strs(p.caps[0].clients) ==
          std::vector<std::string>{"2001:db8::7", "2001:db8:1::/48", "192.0.2.128/25"});
    CHECK(p.caps[0].clients[0].length == 128);
    CHECK(p.caps[0].rate_bits_per_s == 5000);
    const Detect& d = p.detects[0];
    CHECK(d.protocol == Protocol::Udp);
    CHECK(d.remote_ports == std::vector<uint16_t>{53});
    CHECK(strs(d.clients) == std::vector<std::string>{"192.0.2.0/24"});
    CHECK(d.client_rate_bits_per_s == 1'500'000u);
    CHECK(d.for_ms == 2000);
    CHECK(d.dscp == 0);
    CHECK(d.limit.rate_bits_per_s == 1'000'000);
    CHECK(d.limit.ceil_bits_per_s == 2'000'000);
}

TEST_CASE("class trees with nested parents load when the guarantees fit", "[loader][valid]") {
    Policy p = load_ok(R"(
[[interface]]
device = "eth0"
rate = "1gbit"
default_class = "web"
class = [
  { name = "customers", rate = "500mbit" },
  { name = "web", parent = "customers", rate = "400mbit", ceil = "1gbit" },
  { name = "mail", parent = "customers", rate = "100mbit", prio = 7 },
  { name = "bulk", rate = "500mbit" },
]
)");
    const auto& classes = p.interfaces[0].classes;
    REQUIRE(classes.size() == 4);
    CHECK(classes[1].parent == "customers");
    CHECK_FALSE(classes[0].parent.has_value());
    CHECK(classes[0].ceil_bits_per_s == 500'000'000);
    CHECK(classes[2].prio == 7);
}

TEST_CASE("a line-ending backslash before non-ASCII text in a multi-line string is valid TOML",
          "[loader][valid]") {
    // toml++ 3.3 reached __builtin_unreachable here (found by fuzz_policy).
    LoadResult r = load_string("a = \"\"\"x\\\n \xc3\xa9\"\"\"\n", "t.toml");
    REQUIRE(r.diagnostics.size() == 1);
    CHECK(r.diagnostics[0].format() == "t.toml:1:1: error: unknown key 'a' at the top level");
}

TEST_CASE("caps on different devices may list the same client", "[loader][valid]") {
    Policy p = load_ok(R"(
[[interface]]
device = "eth0"
rate = "1gbit"
[[interface]]
device = "eth1"
rate = "1gbit"
[[cap]]
name = "a"
device = "eth0"
clients = ["10.0.0.0/8"]
rate = "5mbit"
[[cap]]
name = "b"
device = "eth1"
clients = ["10.1.2.3", "10.1.2.4"]
rate = "5mbit"
)");
    CHECK(p.caps.size() == 2);
}

TEST_CASE("an unreadable file is one diagnostic without a position", "[loader]") {
    LoadResult r = load_file("/nonexistent/flowshaper.toml");
    CHECK_FALSE(r.ok());
    REQUIRE(r.diagnostics.size() == 1);
    CHECK(r.diagnostics[0].loc.line == 0);
    CHECK(r.diagnostics[0].format() ==
          "/nonexistent/flowshaper.toml: error: cannot read: No such file or directory");
    LoadResult dir = load_file(kPolicies);
    REQUIRE(dir.diagnostics.size() == 1);
    CHECK(dir.diagnostics[0].format() == kPolicies + ": error: cannot read: Is a directory");
}

TEST_CASE("diagnostics format compiler-style with their severity", "[loader]") {
    Diagnostic d{SourceLoc{"p.toml", 14, 9}, Severity::Error, "ceil 1mbit is below rate 2mbit"};
    CHECK(d.format() == "p.toml:14:9: error: ceil 1mbit is below rate 2mbit");
    d.severity = Severity::Warning;
    CHECK(d.format() == "p.toml:14:9: warning: ceil 1mbit is below rate 2mbit");
    d.severity = Severity::Note;
    d.loc.line = 0;
    CHECK(d.format() == "p.toml: note: ceil 1mbit is below rate 2mbit");
}

TEST_CASE("ten thousand clients in one cap load and an overlap among them is found", "[loader]") {
    std::string text =
        "[[interface]]\ndevice = \"eth0\"\nrate = \"10gbit\"\n[[cap]]\nname = \"many\"\n"
        "device = \"eth0\"\nrate = \"5mbit\"\nclients = [\n";
    for (int i = 0; i < 10'000; ++i)
        text += "\"10." + std::to_string(i / 65536) + "." + std::to_string(i / 256 % 256) + "." +
                std::to_string(i % 256) + "\",\n";
    Policy p = load_ok(text + "]\n");
    CHECK(p.caps[0].clients.size() == 10'000);
    LoadResult bad = load_string(text + "\"10.0.39.0/24\"]\n", "many.toml");
    REQUIRE(bad.diagnostics.size() == 1);
    CHECK(bad.diagnostics[0].message ==
          "client 10.0.39.0/24 overlaps 10.0.39.0, already listed in this cap at many.toml:9993:1");
}

TEST_CASE(
    "more client classes or policy classes than a device has numbers for are errors at the cap or class",
    "[loader]") {
    // Two caps of 40,000 hosts each: the second one (its [[cap]] line) crosses 65,280 client classes.
    std::string text = "[[interface]]\ndevice = \"eth0\"\nrate = \"10gbit\"\n";
    for (int cap = 0; cap < 2; ++cap) {
        text += "[[cap]]\nname = \"c" + std::to_string(cap) +
                "\"\ndevice = \"eth0\"\nrate = \"1mbit\"\nclients = [\n";
        for (int i = 0; i < 40'000; ++i)
            text += "\"10." + std::to_string(cap) + "." + std::to_string(i / 256) + "." +
                    std::to_string(i % 256) + "\",\n";
        text += "]\n";
    }
    LoadResult many = load_string(text, "many.toml");
    REQUIRE(many.diagnostics.size() == 1);
    CHECK(many.diagnostics[0].loc.line == 40'010);
    CHECK(many.diagnostics[0].message ==
          "with this cap, device eth0 needs 80000 or more client classes; at most 65280 fit (share a class "
          "among clients with shared = true)");
    // Shared, the same clients need two classes.
    auto shared = text;
    for (size_t at = shared.find("rate = \"1mbit\""); at != std::string::npos;
         at = shared.find("rate = \"1mbit\"", at + 30))
        shared.insert(at, "shared = true\n");
    CHECK(load_string(shared, "shared.toml").diagnostics.empty());

    // 254 classes under a leaf default: one more than the 253 numbers.
    std::string classes = "[[interface]]\ndevice = \"eth0\"\nrate = \"10gbit\"\ndefault_class = \"k0\"\n";
    for (int i = 0; i < 254; ++i)
        classes += "[[interface.class]]\nname = \"k" + std::to_string(i) + "\"\nrate = \"1mbit\"\n";
    LoadResult too_many = load_string(classes, "classes.toml");
    REQUIRE(too_many.diagnostics.size() == 1);
    CHECK(too_many.diagnostics[0].loc.line == 5 + 3 * 253);
    CHECK(too_many.diagnostics[0].message == "interface eth0 has 254 classes; at most 253 fit");
}

TEST_CASE("garbage and pathological input give diagnostics and never a crash", "[loader]") {
    const std::vector<std::string> inputs{
        std::string("\0\xff\xfe", 3),
        std::string(300, '['),
        "a = " + std::string(300, '['),
        "[[cap]]\n[cap]\n",
        "interface = [1, 2]\ncap = 5\ndetect = [{}]\n",
        "[[interface]]\nclass = 7\n",
        "[[interface]]\nclass = [{ name = 5 }, 3]\n",
        "[[detect]]\nlimit = []\n",
        "[settings.deeper.still]\nx = 1\n",
        "[[[",
        "[=",
        "[[ [a]]",
        "[\n",
        "[[#",  // toml++ 3.3 asserted on these table headers
    };
    for (const auto& text : inputs) {
        LoadResult r = load_string(text, "g.toml");
        CHECK_FALSE(r.ok());
        CHECK_FALSE(r.diagnostics.empty());
    }
}
