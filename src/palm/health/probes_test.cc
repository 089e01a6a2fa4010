#include "palm/health/probes.h"

#include <chrono>
#include <optional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palm/health/test_util.h"

namespace palm::health {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::ClosedPort;
using testing::FlipServer;
using testing::SilentListener;

class ProbesTest : public ::testing::Test {
 protected:
  // Runs the loop until `r` is set (or 5 s).
  void RunUntil(const std::optional<ProbeResult>& r) {
    for (int i = 0; i < 500 && !r; ++i) io_.run_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(r.has_value());
  }
  ProbeResult Http(int port, const std::string& path, absl::Duration timeout = absl::Seconds(2)) {
    std::optional<ProbeResult> r;
    ProbeHttp(io_, "127.0.0.1", port, path, timeout, [&](ProbeResult x) { r = std::move(x); });
    EXPECT_FALSE(r.has_value()) << "done must not run inside ProbeHttp";
    RunUntil(r);
    return r.value_or(ProbeResult{});
  }
  boost::asio::io_context io_;
};

TEST_F(ProbesTest, HttpStatusDecides) {
  FlipServer server(io_);
  server.status = {{"/healthz", 200}, {"/moved", 302}, {"/sick", 503}, {"/teapot", 418}};
  ProbeResult ok = Http(server.port(), "/healthz");
  EXPECT_TRUE(ok.ok);
  EXPECT_EQ(ok.message, "HTTP 200");
  EXPECT_GT(ok.latency, absl::ZeroDuration());
  EXPECT_TRUE(Http(server.port(), "/moved").ok);
  ProbeResult sick = Http(server.port(), "/sick");
  EXPECT_FALSE(sick.ok);
  EXPECT_EQ(sick.message, "HTTP 503");
  EXPECT_EQ(Http(server.port(), "/teapot").message, "HTTP 418");
  EXPECT_EQ(Http(server.port(), "/nothing").message, "HTTP 404");
  EXPECT_EQ(server.hits["/healthz"], 1);
}

TEST_F(ProbesTest, HttpConnectionRefused) {
  ProbeResult r = Http(ClosedPort(), "/healthz");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.message, "connect: Connection refused");
}

TEST_F(ProbesTest, HttpTimeoutCoversTheWholeExchange) {
  FlipServer server(io_);
  server.status = {{"/hang", 0}};
  ProbeResult r = Http(server.port(), "/hang", absl::Milliseconds(200));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.message, "timeout after 200ms");
  EXPECT_GE(r.latency, absl::Milliseconds(200));
  EXPECT_LT(r.latency, absl::Seconds(2));
}

TEST_F(ProbesTest, HangingTargetDoesNotBlockOtherProbes) {
  SilentListener silent(io_);
  FlipServer server(io_);
  server.status = {{"/healthz", 200}};
  std::optional<ProbeResult> hung, fast;
  auto t0 = std::chrono::steady_clock::now();
  std::chrono::steady_clock::duration fast_at{};
  ProbeHttp(io_, "127.0.0.1", silent.port(), "/healthz", absl::Seconds(1),
            [&](ProbeResult r) { hung = std::move(r); });
  ProbeHttp(io_, "127.0.0.1", server.port(), "/healthz", absl::Seconds(1), [&](ProbeResult r) {
    fast = std::move(r);
    fast_at = std::chrono::steady_clock::now() - t0;
  });
  RunUntil(hung);
  ASSERT_TRUE(fast.has_value());
  EXPECT_TRUE(fast->ok);
  EXPECT_LT(fast_at, std::chrono::milliseconds(500));
  EXPECT_FALSE(hung->ok);
  EXPECT_EQ(hung->message, "timeout after 1s");
}

TEST_F(ProbesTest, Tcp) {
  SilentListener silent(io_);
  std::optional<ProbeResult> ok, refused;
  ProbeTcp(io_, "localhost", silent.port(), absl::Seconds(1), [&](ProbeResult r) { ok = r; });
  ProbeTcp(io_, "127.0.0.1", ClosedPort(), absl::Seconds(1), [&](ProbeResult r) { refused = r; });
  RunUntil(ok);
  RunUntil(refused);
  EXPECT_TRUE(ok->ok);
  EXPECT_EQ(ok->message, "connected");
  EXPECT_FALSE(refused->ok);
  EXPECT_THAT(refused->message, HasSubstr("refused"));
}

TEST_F(ProbesTest, BadHost) {
  std::optional<ProbeResult> r;
  ProbeTcp(io_, "example.com", 80, absl::Seconds(1), [&](ProbeResult x) { r = x; });
  RunUntil(r);
  EXPECT_FALSE(r->ok);
  EXPECT_THAT(r->message, StartsWith("bad probe host"));
}

TEST_F(ProbesTest, ExecAdapter) {
  std::optional<ProbeResult> r;
  ProbeExec(io_, {"sh", "-c", "echo nope; exit 2"}, {{"PATH", "/usr/bin:/bin"}}, "",
            absl::Seconds(2), [&](ProbeResult x) { r = x; });
  RunUntil(r);
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->message, "exit code 2: nope");
}

}  // namespace
}  // namespace palm::health
