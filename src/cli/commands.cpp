#include "commands.hpp"

#include <cerrno>
#include <cstdio>
#include <iostream>

#include "flowshaper/controller/apply.hpp"
#include "flowshaper/controller/daemon.hpp"
#include "flowshaper/controller/show.hpp"
#include "flowshaper/kernel/mangle_backend.hpp"
#include "flowshaper/kernel/real_ports.hpp"
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

// The real ports, from the one factory the daemon uses too; the firewall and conntrack ports only
// for the commands that change them (flush).
Result<kernel::RealPorts> open_ports(bool firewall_and_conntrack = false) {
    kernel::RealPortsOptions options;
    options.mangle = firewall_and_conntrack;
    options.conntrack = firewall_and_conntrack;
    options.conntrack_events = false;  // only the daemon listens to events
    return kernel::open_real_ports(options);
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
    auto ports = open_ports();
    if (!ports) return fail(ports.error());
    std::vector<std::string> notes;
    auto plans = controller::plan_policy(*pol, *ports->tc, {}, &notes);
    if (!plans && plans.error().code == ENODEV) {
        // Planning for another machine: no device to read, ids start fresh.
        auto resolved = plan::resolve(pol->settings, ports->tc->features());
        if (!resolved) return fail(resolved.error());
        notes = resolved->notes;
        notes.push_back("a device of the policy is not here: planned from scratch");
        plan::PlanInput in;
        in.policy = &*pol;
        in.resolved = *resolved;
        plans = plan::make_plan(in);
    }
    if (!plans) return fail(plans.error());
    // The mangle backend `run` would choose here, and why (auto probes, read-only).
    const bool probe = pol->settings.firewall == policy::Firewall::Auto;
    auto choice = kernel::choose_backend(pol->settings.firewall,
                                         probe ? kernel::probe_backends() : kernel::BackendProbe{});
    notes.push_back("firewall: " + kernel::backend_name(choice.backend) + " (" + choice.reason + ")");
    for (const auto& n : notes) std::cerr << "flowshaper: note: " << n << "\n";
    for (const auto& dp : *plans)
        std::cout << (format == "tc" ? plan::render_tc_batch(dp) : plan::render_text(dp));
    return kExitOk;
}

int cmd_apply(const std::string& file, bool force, bool dry_run, bool verbose) {
    auto pol = load(file);
    if (!pol) return kExitFail;
    auto ports = open_ports();
    if (!ports) return fail(ports.error());
    controller::ApplyOptions opts;
    opts.force = force;
    opts.dry_run = dry_run;
    auto report = controller::apply_policy(*pol, *ports->tc, opts);
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
    auto ports = open_ports(true);
    if (!ports) return fail(ports.error());
    auto report =
        controller::flush_all(*ports->tc, *ports->links, *ports->mangle, *ports->conntrack, *devices);
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
    auto ports = open_ports();
    if (!ports) return fail(ports.error());
    auto views = controller::collect_status(*ports->tc, *ports->links, *devices, interval_ms);
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
