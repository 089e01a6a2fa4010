#include "palm/http/wire.h"

#include "gtest/gtest.h"

namespace palm::http {
namespace {

using Pairs = std::vector<std::pair<std::string, std::string>>;

TEST(WireTest, PercentDecode) {
  EXPECT_EQ(PercentDecode("a%20b%2Fc", false), "a b/c");
  EXPECT_EQ(PercentDecode("a+b", false), "a+b");
  EXPECT_EQ(PercentDecode("a+b", true), "a b");
  EXPECT_EQ(PercentDecode("%zz%4", false), "%zz%4");  // malformed escapes kept
  EXPECT_EQ(PercentDecode("%", false), "%");
  EXPECT_EQ(PercentDecode("%e2%82%AC", false), "\xe2\x82\xac");
}

TEST(WireTest, SplitTarget) {
  std::string path;
  Pairs q;
  SplitTarget("/v1/a%20b?x=1&y=hello+world&&z&w=%26%3D#frag", &path, &q);
  EXPECT_EQ(path, "/v1/a b");
  EXPECT_EQ(q, (Pairs{{"x", "1"}, {"y", "hello world"}, {"z", ""}, {"w", "&="}}));
  SplitTarget("/plain", &path, &q);
  EXPECT_EQ(path, "/plain");
  EXPECT_TRUE(q.empty());
}

TEST(WireTest, ParseHostPort) {
  auto a = ParseHostPort("127.0.0.1:7070");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 7070);
  auto b = ParseHostPort("[::1]:0");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->port, 0);
  auto c = ParseHostPort(":80");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host, "");
  for (const char* bad :
       {"127.0.0.1", "host:", "host:x", "host:65536", "[::1]", "[::1:80", "::1:80", "host:80x"}) {
    EXPECT_EQ(ParseHostPort(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(WireTest, JsonError) {
  EXPECT_EQ(JsonError("X", "a \"q\"\n\x01", "h"),
            "{\"error\":{\"code\":\"X\",\"message\":\"a \\\"q\\\"\\n\\u0001\",\"hint\":\"h\"}}");
  EXPECT_EQ(JsonError("X", "m", ""), "{\"error\":{\"code\":\"X\",\"message\":\"m\"}}");
}

TEST(WireTest, HeaderHelpers) {
  EXPECT_TRUE(EqualsIgnoreCase("Content-Length", "content-length"));
  EXPECT_FALSE(EqualsIgnoreCase("a", "ab"));
  EXPECT_FALSE(IsSafeHeaderText("a\r\nb"));
  EXPECT_TRUE(IsSafeHeaderText("text/plain; charset=utf-8"));
  EXPECT_EQ(ReasonPhrase(413), "Payload Too Large");
  EXPECT_EQ(ReasonPhrase(599), "Unknown");
}

}  // namespace
}  // namespace palm::http
