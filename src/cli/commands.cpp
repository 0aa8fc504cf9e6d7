#include "commands.hpp"

#include <cerrno>
#include <cstdio>
#include <iostream>

#include "flowshaper/controller/apply.hpp"
#include "flowshaper/controller/daemon.hpp"
#include "flowshaper/controller/show.hpp"
#include "flowshaper/kernel/conntrack_port.hpp"
#include "flowshaper/kernel/link_port.hpp"
#include "flowshaper/kernel/mangle_port.hpp"
#include "flowshaper/kernel/netlink_tc_port.hpp"
#include "flowshaper/plan/render.hpp"
#include "flowshaper/policy/loader.hpp"

namespace flowshaper::cli {

namespace {

// Loads a policy, printing its diagnostics on stderr; nullopt when it has errors.
std::optional<policy::Policy> load(const std::string& file) {
    auto result = policy::load_file(file);
    for (const auto& d : result.diagnostics) std::cerr << d.format() << "\n";
    return std::move(result.policy);
}

int fail(const Error& e) {
    std::cerr << "flowshaper: error: " << e.text() << "\n";
    if (e.code == EPERM || e.code == EACCES) std::cerr << "flowshaper: note: this needs CAP_NET_ADMIN\n";
    return kExitFail;
}

Result<std::unique_ptr<kernel::NetlinkTcPort>> open_port() {
    auto port = kernel::NetlinkTcPort::open();
    if (!port) return port.error();
    return std::move(*port);
}

// The devices of the policy in `file`, or none (meaning: every device) when `file` is empty;
// nullopt when the policy has errors.
std::optional<std::vector<std::string>> policy_devices(const std::string& file) {
    std::vector<std::string> out;
    if (file.empty()) return out;
    auto pol = load(file);
    if (!pol) return std::nullopt;
    for (const auto& i : pol->interfaces) out.push_back(i.device);
    return out;
}

}  // namespace

int cmd_check(const std::vector<std::string>& files) {
    int status = kExitOk;
    for (const auto& f : files) {
        if (!load(f)) status = kExitFail;
    }
    return status;
}

int cmd_plan(const std::string& file, const std::string& format) {
    auto pol = load(file);
    if (!pol) return kExitFail;
    auto port = open_port();
    if (!port) return fail(port.error());
    std::vector<std::string> notes;
    auto plans = controller::plan_policy(*pol, **port, {}, &notes);
    if (!plans && plans.error().code == ENODEV) {
        // Planning for another machine: no device to read, ids start fresh.
        auto resolved = plan::resolve(pol->settings, (*port)->features());
        if (!resolved) return fail(resolved.error());
        notes = resolved->notes;
        notes.push_back("a device of the policy is not here: planned from scratch");
        plan::PlanInput in;
        in.policy = &*pol;
        in.resolved = *resolved;
        plans = plan::make_plan(in);
    }
    if (!plans) return fail(plans.error());
    for (const auto& n : notes) std::cerr << "flowshaper: note: " << n << "\n";
    for (const auto& dp : *plans)
        std::cout << (format == "tc" ? plan::render_tc_batch(dp) : plan::render_text(dp));
    return kExitOk;
}

int cmd_apply(const std::string& file, bool force, bool dry_run, bool verbose) {
    auto pol = load(file);
    if (!pol) return kExitFail;
    auto port = open_port();
    if (!port) return fail(port.error());
    controller::ApplyOptions opts;
    opts.force = force;
    opts.dry_run = dry_run;
    auto report = controller::apply_policy(*pol, **port, opts);
    if (!report) return fail(report.error());
    if (verbose || dry_run)
        for (const auto& n : report->notes) std::cerr << "flowshaper: note: " << n << "\n";
    for (const auto& dev : report->devices) {
        std::cout << dev.device << ": " << dev.changes.size()
                  << (dry_run ? " changes to send" : " changes sent");
        if (dev.changes.empty()) std::cout << " (already as the policy says)";
        if (dev.created_root && !dev.changes.empty()) std::cout << " (created flowshaper's root qdisc)";
        std::cout << "\n";
        if (verbose || dry_run)
            for (const auto& c : dev.changes) std::cout << "  " << c.describe() << "\n";
    }
    return kExitOk;
}

int cmd_flush(const std::string& file) {
    auto devices = policy_devices(file);
    if (!devices) return kExitFail;
    auto port = open_port();
    if (!port) return fail(port.error());
    kernel::NetlinkLinkPort links;
    auto mangle = kernel::make_iptc_mangle_port();
    auto conntrack = kernel::make_nfct_conntrack_port({false});
    if (!conntrack) return fail(conntrack.error());
    auto report = controller::flush_all(**port, links, *mangle, **conntrack, *devices);
    if (!report) return fail(report.error());
    if (report->devices.empty() && !report->mangle_removed && report->marks_cleared == 0)
        std::cout << "nothing of flowshaper's to remove\n";
    for (const auto& d : report->devices)
        std::cout << d << ": removed flowshaper's qdisc, classes and filters\n";
    if (report->mangle_removed) std::cout << "mangle: removed flowshaper's chains (IPv4, IPv6)\n";
    if (report->marks_cleared)
        std::cout << "conntrack: cleared flowshaper's mark on " << report->marks_cleared << " connections\n";
    return kExitOk;
}

int cmd_show(const std::string& file, bool json, uint64_t interval_ms) {
    auto devices = policy_devices(file);
    if (!devices) return kExitFail;
    auto port = open_port();
    if (!port) return fail(port.error());
    kernel::NetlinkLinkPort links;
    auto views = controller::collect_status(**port, links, *devices, interval_ms);
    if (!views) return fail(views.error());
    if (json)
        std::cout << controller::status_json(*views).dump(2) << "\n";
    else
        std::cout << controller::render_status(*views);
    return kExitOk;
}

}  // namespace flowshaper::cli

namespace flowshaper::cli {

int cmd_run(const std::string& file, bool force) {
    return controller::run_daemon(file, force);
}

}  // namespace flowshaper::cli
