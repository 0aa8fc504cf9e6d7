// Did-you-mean: the closest candidate by edit distance, if it is close enough.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace flowshaper::policy::detail {

// Optimal-string-alignment distance (insert, delete, substitute, swap neighbours),
// case-insensitive.
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate nearest to `word`, or "" when none is within about a third of its length.
std::string closest(std::string_view word, const std::vector<std::string_view>& candidates);

// "; did you mean 'x'?" when `suggestion` is not empty, else "".
std::string did_you_mean(std::string_view suggestion);

std::string lowercase(std::string_view text);

}  // namespace flowshaper::policy::detail
