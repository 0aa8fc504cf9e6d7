#include "suggest.hpp"

#include <algorithm>
#include <cctype>

namespace flowshaper::policy::detail {

std::string lowercase(std::string_view text) {
    std::string out(text);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

size_t edit_distance(std::string_view a_in, std::string_view b_in) {
    std::string a = lowercase(a_in);
    std::string b = lowercase(b_in);
    const size_t n = a.size();
    const size_t m = b.size();
    // Three rows: i-2, i-1, i.
    std::vector<size_t> prev2(m + 1), prev(m + 1), cur(m + 1);
    for (size_t j = 0; j <= m; ++j) prev[j] = j;
    for (size_t i = 1; i <= n; ++i) {
        cur[0] = i;
        for (size_t j = 1; j <= m; ++j) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                cur[j] = std::min(cur[j], prev2[j - 2] + 1);
        }
        prev2.swap(prev);
        prev.swap(cur);
    }
    return prev[m];
}

std::string closest(std::string_view word, const std::vector<std::string_view>& candidates) {
    if (word.empty() || word.size() > 64) return {};
    const size_t limit = std::max<size_t>(1, word.size() / 3);
    size_t best = limit + 1;
    std::string_view best_word;
    for (auto candidate : candidates) {
        size_t d = edit_distance(word, candidate);
        if (d < best && d < std::max(word.size(), candidate.size())) {
            best = d;
            best_word = candidate;
        }
    }
    return std::string(best_word);
}

std::string did_you_mean(std::string_view suggestion) {
    if (suggestion.empty()) return {};
    return "; did you mean '" + std::string(suggestion) + "'?";
}

}  // namespace flowshaper::policy::detail
