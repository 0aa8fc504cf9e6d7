#include "flowshaper/controller/snapshot.hpp"

namespace flowshaper::controller {

const char* to_string(TreeState state) {
    switch (state) {
        case TreeState::InSync:
            return "in-sync";
        case TreeState::Repairing:
            return "repairing";
        case TreeState::Missing:
            return "missing";
    }
    return "?";
}

void Counters::observe_poll(double seconds) {
    ++poll_count;
    poll_seconds_sum += seconds;
    for (size_t i = 0; i < std::size(kPollBuckets); ++i)
        if (seconds <= kPollBuckets[i]) ++poll_bucket_counts[i];
}

}  // namespace flowshaper::controller
