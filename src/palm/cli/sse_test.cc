#include "palm/cli/sse.h"

#include "gtest/gtest.h"

namespace palm::cli {
namespace {

constexpr std::string_view kStream =
    ": palm events\n\n"
    "id: 1\nevent: InstanceStarted\ndata: {\"seq\":1,\"kind\":\"InstanceStarted\"}\n\n"
    ": keepalive\n\n"
    "id: 2\nevent: ProbeFailed\ndata: {\"seq\":2,\"kind\":\"ProbeFailed\"}\n\n";

std::vector<SseEvent> FeedAll(SseParser& p, const std::vector<std::string_view>& pieces) {
  std::vector<SseEvent> out;
  for (auto piece : pieces) EXPECT_TRUE(p.Feed(piece, &out).ok());
  return out;
}

TEST(SseParser, ParsesFramesAndSkipsKeepalives) {
  SseParser p;
  auto events = FeedAll(p, {kStream});
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].id, "1");
  EXPECT_EQ(events[0].event, "InstanceStarted");
  EXPECT_EQ(events[0].data, R"({"seq":1,"kind":"InstanceStarted"})");
  EXPECT_EQ(events[1].id, "2");
  EXPECT_EQ(events[1].event, "ProbeFailed");
}

TEST(SseParser, SameEventsWhereverTheStreamIsSplit) {
  // Every split point, including inside "data:" and between the two blank-line newlines.
  for (size_t cut = 0; cut <= kStream.size(); ++cut) {
    SseParser p;
    auto events = FeedAll(p, {kStream.substr(0, cut), kStream.substr(cut)});
    ASSERT_EQ(events.size(), 2u) << "cut at " << cut;
    EXPECT_EQ(events[0].data, R"({"seq":1,"kind":"InstanceStarted"})") << "cut at " << cut;
    EXPECT_EQ(events[1].id, "2") << "cut at " << cut;
  }
  // One byte at a time.
  SseParser p;
  std::vector<SseEvent> out;
  for (char c : kStream) ASSERT_TRUE(p.Feed(std::string_view(&c, 1), &out).ok());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].event, "ProbeFailed");
}

TEST(SseParser, NothingIsDispatchedBeforeTheBlankLine) {
  SseParser p;
  std::vector<SseEvent> out;
  ASSERT_TRUE(p.Feed("id: 7\nevent: X\ndata: {}\n", &out).ok());
  EXPECT_TRUE(out.empty());
  ASSERT_TRUE(p.Feed("\n", &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].id, "7");
}

TEST(SseParser, CrLfLineEndsEvenWhenSplitBetweenCrAndLf) {
  const std::string_view s = "id: 3\r\ndata: a\r\n\r\nid: 4\rdata: b\r\r";
  for (size_t cut = 0; cut <= s.size(); ++cut) {
    SseParser p;
    auto events = FeedAll(p, {s.substr(0, cut), s.substr(cut)});
    ASSERT_EQ(events.size(), 2u) << "cut at " << cut;
    EXPECT_EQ(events[0].id, "3");
    EXPECT_EQ(events[0].data, "a");
    EXPECT_EQ(events[1].id, "4");
    EXPECT_EQ(events[1].data, "b");
  }
}

TEST(SseParser, MultiLineDataFieldsWithoutSpaceAndEventsWithoutData) {
  SseParser p;
  auto events = FeedAll(p, {"data:one\ndata: two\ndata\n\nevent: empty\nid: 9\n\nretry: 10\n"
                            "data: x\n\n"});
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].data, "one\ntwo\n");
  EXPECT_EQ(events[1].data, "x");
  EXPECT_EQ(events[1].event, "");  // fields do not leak from the undispatched event
}

TEST(SseParser, ResetDropsAPartialEvent) {
  SseParser p;
  std::vector<SseEvent> out;
  ASSERT_TRUE(p.Feed("id: 1\ndata: {\"seq\":1", &out).ok());
  p.Reset();
  ASSERT_TRUE(p.Feed(": palm events\n\nid: 2\ndata: {}\n\n", &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].id, "2");
  EXPECT_EQ(out[0].data, "{}");
}

TEST(SseParser, RefusesAnEndlessLine) {
  SseParser p;
  std::vector<SseEvent> out;
  const std::string chunk(1 << 20, 'x');
  absl::Status s;
  for (size_t i = 0; i <= SseParser::kMaxLine / chunk.size() && s.ok(); ++i) {
    s = p.Feed(chunk, &out);
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  // Usable again afterwards.
  ASSERT_TRUE(p.Feed("\ndata: ok\n\n", &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].data, "ok");
}

}  // namespace
}  // namespace palm::cli
