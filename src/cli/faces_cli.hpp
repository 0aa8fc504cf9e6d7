// `flowshaper status`, `reload` and `top`: the commands that talk to the running daemon through
// its status socket (top falls back to reading conntrack itself).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>

namespace flowshaper::cli {

struct TopOptions {
    std::string socket;
    bool json = false;
    bool once = false;
    int iterations = 0;  // -n N; 0: until q or a signal
    uint64_t interval_ms = 2000;
};

int cmd_status(const std::string& socket, bool json);
int cmd_reload(const std::string& socket);
int cmd_top(const TopOptions& options);

// Adds the three subcommands to `app`; dispatch() runs the one given (nullopt: none of them).
class FacesCommands {
public:
    explicit FacesCommands(CLI::App& app);
    std::optional<int> dispatch() const;

private:
    CLI::App* status_ = nullptr;
    CLI::App* reload_ = nullptr;
    CLI::App* top_ = nullptr;
    bool status_json_ = false;
    std::string status_socket_, reload_socket_;
    TopOptions top_options_;
};

}  // namespace flowshaper::cli
