#include "faces_format.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace flowshaper::cli {

namespace {

std::string scaled(double value, const char* const* units, int count, double step, const char* fmt_small) {
    int i = 0;
    while (value >= step && i + 1 < count) {
        value /= step;
        ++i;
    }
    char buf[48];
    std::snprintf(buf, sizeof buf,
                  i == 0 ? fmt_small
                         : (value < 10    ? "%.2f %s"
                            : value < 100 ? "%.1f %s"
                                          : "%.0f %s"),
                  value, units[i]);
    return buf;
}

}  // namespace

std::string human_rate(uint64_t bits_per_s) {
    static const char* const units[] = {"bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"};
    return scaled(static_cast<double>(bits_per_s), units, 5, 1000, "%.0f %s");
}

std::string human_bytes(uint64_t bytes) {
    static const char* const units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
    return scaled(static_cast<double>(bytes), units, 6, 1000, "%.0f %s");
}

std::string human_duration(uint64_t ms) {
    char buf[48];
    const uint64_t s = ms / 1000;
    if (ms < 1000)
        std::snprintf(buf, sizeof buf, "%llums", static_cast<unsigned long long>(ms));
    else if (s < 60)
        std::snprintf(buf, sizeof buf, "%llus", static_cast<unsigned long long>(s));
    else if (s < 3600)
        std::snprintf(buf, sizeof buf, "%llum %02llus", static_cast<unsigned long long>(s / 60),
                      static_cast<unsigned long long>(s % 60));
    else if (s < 86400)
        std::snprintf(buf, sizeof buf, "%lluh %02llum", static_cast<unsigned long long>(s / 3600),
                      static_cast<unsigned long long>(s / 60 % 60));
    else
        std::snprintf(buf, sizeof buf, "%llud %02lluh", static_cast<unsigned long long>(s / 86400),
                      static_cast<unsigned long long>(s / 3600 % 24));
    return buf;
}

std::string human_time(uint64_t unix_ms, uint64_t now_ms) {
    if (unix_ms == 0) return "never";
    const time_t t = static_cast<time_t>(unix_ms / 1000);
    tm local{};
    localtime_r(&t, &local);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &local);
    std::string out = buf;
    if (now_ms >= unix_ms)
        out += " (" + human_duration(now_ms - unix_ms) + " ago)";
    else
        out += " (in " + human_duration(unix_ms - now_ms) + ")";
    return out;
}

uint64_t now_unix_ms() {
    using namespace std::chrono;
    return static_cast<uint64_t>(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

Table::Table(std::vector<std::string> headers) {
    for (auto& h : headers) {
        right_.push_back(!h.empty() && h[0] == '>');
        headers_.push_back(right_.back() ? h.substr(1) : h);
    }
}

void Table::row(std::vector<std::string> cells) {
    cells.resize(headers_.size());
    rows_.push_back(std::move(cells));
}

std::vector<std::string> Table::lines(const std::string& indent) const {
    std::vector<size_t> width(headers_.size());
    for (size_t i = 0; i < headers_.size(); ++i) width[i] = headers_[i].size();
    for (const auto& r : rows_)
        for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
    auto format = [&](const std::vector<std::string>& cells) {
        std::string line = indent;
        for (size_t i = 0; i < cells.size(); ++i) {
            const std::string pad(width[i] - cells[i].size(), ' ');
            line += right_[i] ? pad + cells[i] : cells[i] + (i + 1 < cells.size() ? pad : "");
            if (i + 1 < cells.size()) line += "  ";
        }
        return line;
    };
    std::vector<std::string> out{format(headers_)};
    for (const auto& r : rows_) out.push_back(format(r));
    return out;
}

std::string Table::str(const std::string& indent) const {
    std::string out;
    for (const auto& line : lines(indent)) out += line + "\n";
    return out;
}

}  // namespace flowshaper::cli
