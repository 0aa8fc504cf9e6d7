// When drift repairs run: debounced, periodic full checks, and a back-off against a tool that
// keeps deleting flowshaper's objects.
#include <catch2/catch.hpp>

#include "flowshaper/controller/drift_guard.hpp"

using flowshaper::controller::DriftGuard;

TEST_CASE("drift: a trigger repairs after the debounce, full checks come every full_check_ms") {
    DriftGuard g;
    CHECK(g.on_trigger(1000) == 1020);
    g.full_checked(1000);
    CHECK_FALSE(g.full_check_due(30'999));
    CHECK(g.full_check_due(31'000));
}

TEST_CASE("drift: repeated deletions are repaired at once up to the burst, then with a doubling back-off") {
    DriftGuard g;
    uint64_t t = 0;
    for (int i = 0; i < 5; ++i) {
        t += 100;
        CHECK_FALSE(g.repaired(t, 3));
        CHECK(g.on_trigger(t) == t + 20);
    }
    t += 100;
    CHECK(g.repaired(t, 3));  // the sixth within 10 s: back off, say so
    CHECK(g.backoff_ms() == 1000);
    CHECK(g.on_trigger(t) == t + 1000);
    t += 1000;
    CHECK(g.repaired(t, 3));
    CHECK(g.backoff_ms() == 2000);
    for (int i = 0; i < 10; ++i) g.repaired(t += 100, 3);
    CHECK(g.backoff_ms() == 60'000);  // capped
    // Repairs that find nothing to do do not count; after a quiet window it is back to normal.
    t += 10'000;
    CHECK_FALSE(g.repaired(t, 0));
    CHECK(g.backoff_ms() == 0);
    CHECK(g.on_trigger(t) == t + 20);
}
