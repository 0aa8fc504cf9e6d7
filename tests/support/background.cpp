#include "background.hpp"

#include <signal.h>

#include <thread>

namespace flowshaper::testing {

Background::Background(const Netns& ns, const std::string& command, const std::string& log) {
    std::string out;
    sh("ip netns exec " + ns.name() + " " + command + " > " + log + " 2>&1 < /dev/null & echo $!", &out);
    pid_ = std::stoi(out);
}

Background::~Background() {
    stop();
}

bool Background::running() const {
    return pid_ > 0 && kill(pid_, 0) == 0;
}

bool Background::wait(std::chrono::milliseconds timeout) const {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (running() && std::chrono::steady_clock::now() < end)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return !running();
}

void Background::pause() const {
    kill(pid_, SIGSTOP);
}

void Background::stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    kill(pid_, SIGCONT);  // a paused one ends too
    wait(std::chrono::seconds(5));
    pid_ = -1;
}

}  // namespace flowshaper::testing
