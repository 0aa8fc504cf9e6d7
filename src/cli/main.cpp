// flowshaper: traffic-shaping orchestrator. This file only parses the command line.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "commands.hpp"
#include "faces_cli.hpp"

using namespace flowshaper::cli;

int main(int argc, char** argv) {
    CLI::App app{"flowshaper: caps heavy clients with HTB trees, driven by a TOML policy", "flowshaper"};
    app.set_version_flag("--version", "flowshaper 0.1.0");
    app.require_subcommand(1);

    std::vector<std::string> check_files;
    auto* check = app.add_subcommand("check", "Check policy files; print every problem as FILE:LINE:COL");
    check->add_option("FILE", check_files, "policy files")->required();

    std::string file, format = "text";
    auto* plan = app.add_subcommand("plan", "Show what apply would build: a tree, or a tc -batch script");
    plan->add_option("FILE", file, "policy file")->required();
    plan->add_option("--format", format, "text | tc")->check(CLI::IsMember({"text", "tc"}));

    bool force = false, dry_run = false, verbose = false;
    auto* apply = app.add_subcommand("apply", "Reconcile the devices of a policy: send only the changes");
    apply->add_option("FILE", file, "policy file")->required();
    apply->add_flag("--force", force, "replace a root qdisc that flowshaper did not create");
    apply->add_flag("-n,--dry-run", dry_run, "print the changes, send nothing");
    apply->add_flag("-v,--verbose", verbose, "print every change sent");

    auto* flush =
        app.add_subcommand("flush", "Remove what flowshaper created (on the policy's devices, or all)");
    flush->add_option("FILE", file, "policy file");

    bool json = false;
    uint64_t interval_ms = 500;
    auto* show = app.add_subcommand("show", "The live tree with counters and current rates");
    show->add_option("FILE", file, "policy file: limit to its devices");
    show->add_flag("--json", json, "machine-readable output");
    show->add_option("--interval", interval_ms,
                     "milliseconds between the two reads that measure rates (0: none)")
        ->check(CLI::Range(uint64_t{0}, uint64_t{60'000}));

    std::string run_file;
    bool run_force = false;
    auto* run = app.add_subcommand("run", "The daemon: detect heavy flows, mark them, cap their clients");
    run->add_option("FILE", run_file, "policy file")->required();
    run->add_flag("--force", run_force, "replace a root qdisc that flowshaper did not create");

    FacesCommands faces(app);  // status, reload, top

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return kExitUsage;
    }
    try {
        if (*check) return cmd_check(check_files);
        if (*plan) return cmd_plan(file, format);
        if (*apply) return cmd_apply(file, force, dry_run, verbose);
        if (*flush) return cmd_flush(file);
        if (*show) return cmd_show(file, json, interval_ms);
        if (*run) return cmd_run(run_file, run_force);
        if (auto rc = faces.dispatch()) return *rc;
    } catch (const std::exception& e) {  // out of memory and the like: a message, not an abort
        std::fprintf(stderr, "flowshaper: error: %s\n", e.what());
        return 1;
    }
    return kExitUsage;
}
