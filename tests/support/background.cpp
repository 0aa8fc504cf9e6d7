#include "background.hpp"

#include <signal.h>

#include <fstream>
#include <iterator>

namespace flowshaper::testing {

Background::Background(const Netns& ns, const std::string& command, const std::string& log) {
    std::string out;
    sh("ip netns exec " + ns.name() + " " + command + " > " + log + " 2>&1 < /dev/null & echo $!", &out);
    pid_ = std::stoi(out);
}

Background::~Background() {
    stop();
}

bool process_runs(int pid) {
    if (pid <= 0 || kill(pid, 0) != 0) return false;
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto paren = stat.rfind(')');  // "pid (comm) S ...": the state after the name
    return paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'Z';
}

bool Background::running() const {
    return process_runs(pid_);
}

bool Background::wait(std::chrono::milliseconds timeout) const {
    return wait_until([this] { return !running(); }, static_cast<int>(timeout.count()), 50);
}

void Background::pause() const {
    kill(pid_, SIGSTOP);
}

void Background::stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    kill(pid_, SIGCONT);  // a paused one ends too
    wait(std::chrono::milliseconds(kWaitMs));
    pid_ = -1;
}

}  // namespace flowshaper::testing
