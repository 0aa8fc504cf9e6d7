// `flowshaper top`: clients by rate. ncursesw on a terminal, timestamped plain blocks otherwise,
// JSON lines with --json.
#include <curses.h>
#include <signal.h>
#include <unistd.h>

#include <clocale>
#include <cstdio>
#include <ctime>
#include <thread>

#include "commands.hpp"
#include "faces_cli.hpp"
#include "faces_format.hpp"
#include "flowshaper/controller/snapshot_json.hpp"
#include "flowshaper/controller/status_client.hpp"
#include "top_source.hpp"

namespace flowshaper::cli {

namespace {

volatile sig_atomic_t g_stop = 0;  // set by SIGINT/SIGTERM: ends the refresh loop cleanly
void on_signal(int) {
    g_stop = 1;
}

std::string stamp(uint64_t unix_ms) {
    const time_t t = static_cast<time_t>(unix_ms / 1000);
    tm local{};
    localtime_r(&t, &local);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &local);
    return buf;
}

void print_frame(const TopFrame& frame, const TopOptions& options) {
    if (options.json) {
        nlohmann::json clients = nlohmann::json::array();
        for (const auto& c : frame.clients) clients.push_back(controller::to_json(c));
        nlohmann::json line = {{"time_unix_ms", frame.at_unix_ms ? frame.at_unix_ms : now_unix_ms()},
                               {"complete", frame.complete},
                               {"clients", std::move(clients)}};
        std::printf("%s\n", line.dump().c_str());
    } else {
        std::printf(
            "%s  %zu clients%s\n", stamp(now_unix_ms()).c_str(), frame.clients.size(),
            frame.complete ? "" : " (incomplete: the daemon's polls read only its prefilter's candidates)");
        for (const auto& line : client_lines(frame.clients)) std::printf("  %s\n", line.c_str());
        std::printf("\n");
    }
    std::fflush(stdout);
}

// Sleeps `ms` unless a signal ends it.
void pause_ms(uint64_t ms) {
    for (uint64_t slept = 0; slept < ms && !g_stop; slept += 50)
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min<uint64_t>(50, ms - slept)));
}

int run_plain(TopSource& source, const TopOptions& options) {
    const int frames = options.once ? 1 : options.iterations;
    // The first sample starts the measurement (a daemon starts filling its rows, a direct read
    // takes its baseline): print from the second one on.
    auto first = source.sample();
    if (!first) {
        std::fprintf(stderr, "flowshaper: %s\n", first.error().text().c_str());
        return kExitFail;
    }
    for (int n = 0; (frames == 0 || n < frames) && !g_stop; ++n) {
        pause_ms(options.interval_ms);
        if (g_stop) break;
        auto frame = source.sample();
        if (!frame) {
            std::fprintf(stderr, "flowshaper: %s\n", frame.error().text().c_str());
            return kExitFail;
        }
        print_frame(*frame, options);
    }
    return kExitOk;
}

// ncursesw: the screen is restored whatever happens.
class Screen {
public:
    Screen() {
        std::setlocale(LC_ALL, "");
        initscr();
        cbreak();
        noecho();
        keypad(stdscr, TRUE);
        curs_set(0);
    }
    ~Screen() { endwin(); }
    Screen(const Screen&) = delete;
    Screen& operator=(const Screen&) = delete;
};

const char* key_name(SortKey key) {
    switch (key) {
        case SortKey::To:
            return "toward";
        case SortKey::From:
            return "from";
        case SortKey::Bytes:
            return "bytes";
        case SortKey::Conns:
            return "connections";
    }
    return "";
}

void draw(const TopSource& source, TopFrame frame, SortKey key, const std::string& error) {
    sort_clients(frame.clients, key);
    erase();
    mvprintw(0, 0, "flowshaper top  %s  %zu clients  sorted by %s  (t f b c: sort, q: quit)",
             stamp(now_unix_ms()).c_str(), frame.clients.size(), key_name(key));
    mvprintw(1, 0, "%s", (error.empty() ? source.describe() : error).c_str());
    const auto lines = client_lines(frame.clients);
    for (size_t i = 0; i < lines.size() && static_cast<int>(i) + 3 < LINES; ++i) {
        if (i == 0) attron(A_REVERSE);
        mvprintw(static_cast<int>(i) + 3, 0, "%.*s", COLS, lines[i].c_str());
        if (i == 0) attroff(A_REVERSE);
    }
    refresh();
}

int run_curses(TopSource& source, const TopOptions& options) {
    Screen screen;
    SortKey key = SortKey::To;
    TopFrame frame;
    std::string error;
    uint64_t next = 0;
    while (!g_stop) {
        const uint64_t now = now_unix_ms();
        if (now >= next) {
            auto sample = source.sample();
            if (sample)
                frame = std::move(*sample), error.clear();
            else
                error = sample.error().text();
            next = now + options.interval_ms;
        }
        draw(source, frame, key, error);
        timeout(static_cast<int>(std::min<uint64_t>(next - std::min(next, now_unix_ms()), 1000)));
        switch (getch()) {
            case 'q':
            case 'Q':
                return kExitOk;
            case 't':
                key = SortKey::To;
                break;
            case 'f':
                key = SortKey::From;
                break;
            case 'b':
                key = SortKey::Bytes;
                break;
            case 'c':
                key = SortKey::Conns;
                break;
            default:
                break;
        }
    }
    return kExitOk;
}

}  // namespace

int cmd_top(const TopOptions& options) {
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    Error why;
    std::unique_ptr<TopSource> source = daemon_source(options.socket, options.interval_ms, &why);
    if (!source) {
        if (!controller::no_daemon(why)) {
            std::fprintf(stderr, "flowshaper: %s\n", why.text().c_str());
            return kExitFail;
        }
        auto direct = conntrack_source();
        if (!direct) {
            std::fprintf(stderr, "flowshaper: no daemon at %s, and conntrack cannot be read: %s\n",
                         options.socket.c_str(), direct.error().text().c_str());
            return kExitFail;
        }
        source = std::move(*direct);
    }
    const bool curses = isatty(STDOUT_FILENO) && !options.json && !options.once && options.iterations == 0;
    if (!curses) std::fprintf(stderr, "flowshaper top: %s\n", source->describe().c_str());
    return curses ? run_curses(*source, options) : run_plain(*source, options);
}

}  // namespace flowshaper::cli
