#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "faces_support.hpp"
#include "flowshaper/controller/metrics.hpp"

using namespace flowshaper;
using namespace flowshaper::controller;

namespace {

size_t count_lines(const std::string& text, const std::string& prefix) {
    size_t n = 0;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (line.rfind(prefix, 0) == 0) ++n;
    return n;
}

// promtool's exit status and output for `promtool check metrics` on `text`.
std::pair<int, std::string> promtool_check(const std::string& text) {
    char path[] = "/tmp/flowshaper-metrics-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    close(fd);
    std::string cmd = std::string("promtool check metrics < ") + path + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    REQUIRE(p);
    std::string out;
    char buf[512];
    while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    int status = pclose(p);
    unlink(path);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace

TEST_CASE("metrics carry the policy's classes, per-rule and per-cap sums, and no client address") {
    const std::string text = render_metrics(faces_test::sample_snapshot(3));
    CHECK_THAT(text, Catch::Contains("flowshaper_build_info{version=\""));
    CHECK_THAT(
        text,
        Catch::Contains(
            "flowshaper_class_sent_bytes_total{device=\"eth0\",class=\"root\",classid=\"f5:1\"} 5000\n"));
    CHECK_THAT(text, Catch::Contains("class=\"normal \\\"web\\\"\""));  // label values escaped
    CHECK_THAT(text,
               Catch::Contains("flowshaper_class_rate_bytes_per_second{device=\"eth0\",class=\"normal"));
    CHECK_THAT(text, Catch::Contains("flowshaper_rule_sent_bytes_total{rule=\"imap\"} 123456\n"));
    CHECK_THAT(text, Catch::Contains("flowshaper_cap_sent_packets_total{cap=\"customer-42\"} 9\n"));
    CHECK_THAT(text, Catch::Contains("flowshaper_heavy_clients{rule=\"imap\"} 3\n"));
    CHECK_THAT(text, Catch::Contains("flowshaper_heavy_clients{rule=\"web\"} 0\n"));
    CHECK_THAT(text, Catch::Contains("flowshaper_device_tree_state{device=\"eth1\",state=\"missing\"} 1\n"));
    CHECK_THAT(text, Catch::Contains("flowshaper_caps_applied_total 3\n"));
    CHECK_THAT(text, Catch::Contains("flowshaper_last_reload_success_timestamp_seconds 1760000002\n"));
    CHECK_THAT(text, Catch::Contains("flowshaper_conntrack_events_lost_total 1\n"));
    CHECK(text.find("203.0.113.") == std::string::npos);  // heavy client classes are only summed
    CHECK(text.find("f5:100") == std::string::npos);
}

TEST_CASE("the poll duration histogram is cumulative and ends with +Inf, _sum and _count") {
    const std::string text = render_metrics(faces_test::sample_snapshot());
    // observations 0.0125, 0.002, 0.3
    CHECK_THAT(text, Catch::Contains("flowshaper_poll_duration_seconds_bucket{le=\"0.001\"} 0\n"));
    CHECK_THAT(text, Catch::Contains("flowshaper_poll_duration_seconds_bucket{le=\"0.005\"} 1\n"));
    CHECK_THAT(text, Catch::Contains("flowshaper_poll_duration_seconds_bucket{le=\"0.025\"} 2\n"));
    CHECK_THAT(text, Catch::Contains("flowshaper_poll_duration_seconds_bucket{le=\"0.5\"} 3\n"));
    CHECK_THAT(text, Catch::Contains("flowshaper_poll_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
    CHECK_THAT(text, Catch::Contains("flowshaper_poll_duration_seconds_count 3\n"));
    CHECK_THAT(text, Catch::Contains("flowshaper_poll_duration_seconds_sum 0.3145"));
}

TEST_CASE("the number of series does not grow with the number of clients") {
    const std::string few = render_metrics(faces_test::sample_snapshot(2));
    const std::string many = render_metrics(faces_test::sample_snapshot(500));
    CHECK(count_lines(few, "flowshaper_") == count_lines(many, "flowshaper_"));
    CHECK(count_lines(few, "# TYPE") == count_lines(many, "# TYPE"));
}

TEST_CASE("rendering is pure: the same snapshot gives the same text") {
    const auto s = faces_test::sample_snapshot();
    CHECK(render_metrics(s) == render_metrics(s));
}

TEST_CASE("promtool check metrics finds nothing in the rendered text") {
    auto [status, out] = promtool_check(render_metrics(faces_test::sample_snapshot(3)));
    INFO(out);
    CHECK(status == 0);
    CHECK(out.empty());
    // ...and the check is not blind: a counter without _total is reported.
    auto [bad_status, bad_out] = promtool_check("# HELP x_bytes a\n# TYPE x_bytes counter\nx_bytes 1\n");
    CHECK_THAT(bad_out, Catch::Contains("_total"));
    (void)bad_status;
}

TEST_CASE("an empty snapshot renders valid metrics") {
    auto [status, out] = promtool_check(render_metrics(Snapshot{}));
    INFO(out);
    CHECK(status == 0);
    CHECK(out.empty());
}
