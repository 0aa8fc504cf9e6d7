// FakeConntrackPort: the in-memory table the controller's tests drive.
#include <poll.h>

#include <catch2/catch.hpp>
#include <cerrno>

#include "flowshaper/kernel/conntrack_port.hpp"

using namespace flowshaper;
using namespace flowshaper::kernel;

namespace {

FlowSample flow(const char* src, uint16_t sport, uint64_t reply_bytes = 0) {
    FlowSample f;
    f.orig_src = *net::Address::parse(src);
    f.family = f.orig_src.family;
    f.orig_dst = *net::Address::parse(f.family == net::Family::V4 ? "192.0.2.1" : "2001:db8::1");
    f.l4proto = 6;
    f.orig_sport = sport;
    f.orig_dport = 993;
    f.reply_bytes = reply_bytes;
    return f;
}

bool readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, 0) == 1;
}

}  // namespace

TEST_CASE("the fake dumps every entry and applies the kernel's filter semantics", "[conntrack][fake]") {
    FakeConntrackPort ct;
    ct.upsert(flow("198.51.100.1", 1000, 5));
    FlowSample marked = flow("2001:db8:1::9", 2000);
    marked.mark = 0x00120034;
    ct.upsert(marked);
    ct.upsert(flow("198.51.100.2", 1001), /*assured=*/false);

    REQUIRE(ct.dump_all()->size() == 3);
    DumpFilter v6;
    v6.family = net::Family::V6;
    REQUIRE(ct.dump_all(v6)->size() == 1);
    DumpFilter by_mark;
    by_mark.mark = DumpFilter::MarkMatch{0x00120000, 0x00ff0000};
    auto hits = ct.dump_all(by_mark);
    REQUIRE(hits->size() == 1);
    CHECK(hits->front().orig_src.str() == "2001:db8:1::9");
    DumpFilter assured;
    assured.assured_only = true;
    CHECK(ct.dump_all(assured)->size() == 2);
}

TEST_CASE("upserting the same tuple updates the entry instead of adding one", "[conntrack][fake]") {
    FakeConntrackPort ct;
    uint32_t id = ct.upsert(flow("198.51.100.1", 1000, 5));
    CHECK(ct.upsert(flow("198.51.100.1", 1000, 900)) == id);
    REQUIRE(ct.size() == 1);
    CHECK(ct.find(id)->reply_bytes == 900);
}

TEST_CASE("set_mark changes only the bits within the mask and is recorded", "[conntrack][fake]") {
    FakeConntrackPort ct;
    FlowSample f = flow("198.51.100.1", 1000);
    f.mark = 0xaa0000bb;
    uint32_t id = ct.upsert(f);
    REQUIRE(ct.set_mark(f, 0x00420000, 0x00ff0000));
    CHECK(ct.find(id)->mark == 0xaa4200bb);
    REQUIRE(ct.mark_writes().size() == 1);
    CHECK(ct.mark_writes()[0].value == 0x00420000);
    CHECK(ct.mark_writes()[0].mask == 0x00ff0000);
}

TEST_CASE("set_mark on a connection that is gone fails with ENOENT", "[conntrack][fake]") {
    FakeConntrackPort ct;
    Status s = ct.set_mark(flow("198.51.100.1", 1000), 1, 1);
    REQUIRE_FALSE(s);
    CHECK(s.error().code == ENOENT);
    CHECK(ct.mark_writes().empty());
}

TEST_CASE("injected dump and set_mark errors happen once", "[conntrack][fake]") {
    FakeConntrackPort ct;
    FlowSample f = flow("198.51.100.1", 1000);
    ct.upsert(f);
    ct.fail_next_dump(EINTR);
    auto first = ct.dump_all();
    REQUIRE_FALSE(first);
    CHECK(first.error().code == EINTR);
    CHECK(ct.dump_all()->size() == 1);
    ct.fail_next_set_mark(EBUSY);
    CHECK(ct.set_mark(f, 1, 1).error().code == EBUSY);
    CHECK(ct.set_mark(f, 1, 1));
    CHECK(ct.mark_writes().size() == 1);
}

TEST_CASE("new and removed entries arrive as events through a pollable fd", "[conntrack][fake]") {
    FakeConntrackPort ct;
    CHECK_FALSE(readable(ct.event_fd()));
    uint32_t id = ct.upsert(flow("198.51.100.1", 1000, 70));
    ct.upsert(flow("198.51.100.1", 1000, 80));  // an update: no event
    ct.remove(id);
    REQUIRE(readable(ct.event_fd()));
    std::vector<FlowEvent> seen;
    auto lost = ct.drain_events([&](const FlowEvent& e) { seen.push_back(e); });
    REQUIRE(lost);
    CHECK_FALSE(*lost);
    REQUIRE(seen.size() == 2);
    CHECK(seen[0].type == FlowEventType::New);
    CHECK(seen[0].flow.reply_bytes == 0);
    CHECK(seen[1].type == FlowEventType::Destroy);
    CHECK(seen[1].flow.reply_bytes == 80);
    CHECK_FALSE(readable(ct.event_fd()));
}

TEST_CASE("an event overflow drops the queue and reports that a resync is needed, once",
          "[conntrack][fake]") {
    FakeConntrackPort ct;
    ct.upsert(flow("198.51.100.1", 1000));
    ct.overflow_events();
    REQUIRE(readable(ct.event_fd()));
    int calls = 0;
    auto lost = ct.drain_events([&](const FlowEvent&) { ++calls; });
    CHECK(*lost);
    CHECK(calls == 0);
    CHECK_FALSE(*ct.drain_events([&](const FlowEvent&) { ++calls; }));
}
