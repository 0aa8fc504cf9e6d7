// Human text for `status` and `top`: rates, sizes, times, and aligned tables.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace flowshaper::cli {

std::string human_rate(uint64_t bits_per_s);                     // "1.90 Mbit/s"
std::string human_bytes(uint64_t bytes);                         // "600 MB"
std::string human_duration(uint64_t ms);                         // "2h 03m", "5m 03s", "12s", "340ms"
std::string human_time(uint64_t unix_ms, uint64_t now_unix_ms);  // "2026-12-02 08:51:02 (3m 10s ago)"
uint64_t now_unix_ms();

// Columns padded to their widest cell; a column whose header starts with '>' is right-aligned
// (the '>' is not printed).
class Table {
public:
    explicit Table(std::vector<std::string> headers);
    void row(std::vector<std::string> cells);
    std::vector<std::string> lines(const std::string& indent = "  ") const;
    std::string str(const std::string& indent = "  ") const;
    bool empty() const { return rows_.empty(); }

private:
    std::vector<std::string> headers_;
    std::vector<bool> right_;
    std::vector<std::vector<std::string>> rows_;
};

}  // namespace flowshaper::cli
