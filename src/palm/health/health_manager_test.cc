#include "palm/health/health_manager.h"

#include <chrono>
#include <functional>
#include <optional>

#include "gmock/gmock.h"
#include <map>
#include <tuple>

#include "gtest/gtest.h"
#include "palm/base/utf8.h"
#include "palm/base/error.h"
#include "palm/health/test_util.h"

namespace palm::health {
namespace {

using model::HealthCheckSpec;
using model::ProbeSpec;
using model::ProbeType;
using ::testing::HasSubstr;
using testing::FlipServer;
using testing::SilentListener;

ProbeSpec Http(const std::string& path, int failure_threshold = 3, double period = 0.05) {
  ProbeSpec s;
  s.type = ProbeType::kHttp;
  s.port = "http";
  s.path = path;
  s.period_s = period;
  s.timeout_s = 1;
  s.failure_threshold = failure_threshold;
  return s;
}

class HealthManagerTest : public ::testing::Test {
 protected:
  HealthManagerTest()
      : server_(io_), manager_(io_, RealClock::Get(), [this](const HealthReport& r) {
          // reports_ keeps the flips of started/live/ready (what these tests are about);
          // the manager also reports first results and failing-probe changes.
          auto& f = flags_[r.key];
          if (std::tie(f.started, f.live, f.ready) != std::tie(r.started, r.live, r.ready)) {
            reports_.push_back(r);
            f = r;
          }
        }) {}

  void Track(ProbeTarget t) {
    std::string key = t.key;
    manager_.Track(std::move(t));
    flags_[key] = *manager_.Report(key);
  }

  ProbeTarget Target(const std::string& key, HealthCheckSpec spec, int port = 0) {
    ProbeTarget t;
    t.key = key;
    t.spec = std::move(spec);
    t.ports = {{"http", port != 0 ? port : server_.port()}};
    t.started_at = RealClock::Get().Now();
    t.env = {{"PATH", "/usr/bin:/bin"}};
    return t;
  }

  // Runs the loop until `pred` holds; false after `limit`.
  bool RunUntil(const std::function<bool()>& pred, absl::Duration limit = absl::Seconds(5)) {
    const auto end = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(limit);
    while (!pred()) {
      if (std::chrono::steady_clock::now() > end) return false;
      io_.run_for(std::chrono::milliseconds(5));
    }
    return true;
  }
  void RunFor(absl::Duration d) {
    const auto end = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(d);
    while (std::chrono::steady_clock::now() < end) io_.run_for(std::chrono::milliseconds(5));
  }
  std::optional<HealthReport> LastFor(const std::string& key) const {
    for (auto it = reports_.rbegin(); it != reports_.rend(); ++it) {
      if (it->key == key) return *it;
    }
    return std::nullopt;
  }

  boost::asio::io_context io_;
  FlipServer server_;
  std::vector<HealthReport> reports_;
  std::map<std::string, HealthReport> flags_;
  HealthManager manager_;
};

TEST_F(HealthManagerTest, LivenessFailureReportedAfterFailureThreshold) {
  server_.status["/healthz"] = 200;
  HealthCheckSpec hc;
  hc.liveness = Http("/healthz", 3);
  Track(Target("default/a-001", hc));
  ASSERT_TRUE(manager_.Report("default/a-001")->live);
  ASSERT_TRUE(RunUntil([&] { return server_.hits["/healthz"] >= 3; }));
  EXPECT_TRUE(reports_.empty()) << "no flips while healthy";

  server_.status["/healthz"] = 503;
  const int before = server_.hits["/healthz"];
  ASSERT_TRUE(RunUntil([&] { return !reports_.empty(); }));
  EXPECT_EQ(server_.hits["/healthz"] - before, 3) << "declared dead at the third failure";
  const HealthReport& r = reports_.back();
  EXPECT_EQ(r.key, "default/a-001");
  EXPECT_FALSE(r.live);
  EXPECT_FALSE(r.ready);
  EXPECT_EQ(r.failing_probe, "liveness");
  EXPECT_EQ(r.message, "HTTP 503");
  nlohmann::json d = manager_.Describe("default/a-001");
  EXPECT_EQ(d["liveness"]["status"], "Failure");
  EXPECT_EQ(d["liveness"]["type"], "http");
  EXPECT_EQ(d["liveness"]["consecutive_failures"], 3);
  EXPECT_EQ(d["liveness"]["last_message"], "HTTP 503");
  EXPECT_TRUE(d["liveness"]["last_at"].is_string());
}

TEST_F(HealthManagerTest, ReadinessFlips) {
  server_.status["/ready"] = 503;
  HealthCheckSpec hc;
  hc.readiness = Http("/ready", 2);
  Track(Target("default/r-001", hc));
  EXPECT_FALSE(manager_.Report("default/r-001")->ready);
  ASSERT_TRUE(RunUntil([&] { return server_.hits["/ready"] >= 4; }));
  EXPECT_TRUE(reports_.empty()) << "failing readiness of a never-ready instance flips nothing";
  EXPECT_EQ(manager_.Report("default/r-001")->failing_probe, "readiness");
  EXPECT_EQ(manager_.Report("default/r-001")->message, "HTTP 503");

  server_.status["/ready"] = 200;
  ASSERT_TRUE(RunUntil([&] { return !reports_.empty(); }));
  EXPECT_TRUE(reports_.back().ready);
  EXPECT_TRUE(reports_.back().live);
  EXPECT_EQ(reports_.back().failing_probe, "");

  server_.status["/ready"] = 503;
  ASSERT_TRUE(RunUntil([&] { return reports_.size() == 2; }));
  EXPECT_FALSE(reports_.back().ready);
  EXPECT_TRUE(reports_.back().live) << "readiness never kills";
  EXPECT_EQ(reports_.back().failing_probe, "readiness");
}

TEST_F(HealthManagerTest, StartupProbeHoldsLivenessOff) {
  server_.status["/started"] = 503;
  server_.status["/healthz"] = 503;
  HealthCheckSpec hc;
  hc.startup = Http("/started", 1000);
  hc.liveness = Http("/healthz", 1);
  Track(Target("default/s-001", hc));
  EXPECT_FALSE(manager_.Report("default/s-001")->started);
  ASSERT_TRUE(RunUntil([&] { return server_.hits["/started"] >= 5; }));
  EXPECT_EQ(server_.hits["/healthz"], 0);
  EXPECT_TRUE(reports_.empty());

  server_.status["/started"] = 200;
  ASSERT_TRUE(RunUntil([&] { return reports_.size() >= 2; }));
  EXPECT_TRUE(reports_[0].started);
  EXPECT_TRUE(reports_[0].live);
  EXPECT_TRUE(reports_[0].ready);
  EXPECT_FALSE(reports_[1].live);
  EXPECT_EQ(reports_[1].failing_probe, "liveness");
  const int started_hits = server_.hits["/started"];
  RunFor(absl::Milliseconds(200));
  EXPECT_EQ(server_.hits["/started"], started_hits) << "a startup probe that passed never runs again";
}

TEST_F(HealthManagerTest, HangingTargetDoesNotBlockAnotherInstance) {
  SilentListener silent(io_);
  server_.status["/ready"] = 200;
  HealthCheckSpec hung;
  hung.liveness = Http("/healthz", 1);
  hung.liveness->timeout_s = 0.5;
  HealthCheckSpec fine;
  fine.readiness = Http("/ready");
  const auto t0 = std::chrono::steady_clock::now();
  Track(Target("default/hung-001", hung, silent.port()));
  Track(Target("default/fine-001", fine));
  ASSERT_TRUE(RunUntil([&] { return LastFor("default/fine-001").has_value(); }));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(400));
  EXPECT_TRUE(LastFor("default/fine-001")->ready);
  ASSERT_TRUE(RunUntil([&] { return server_.hits["/ready"] >= 5; }));
  EXPECT_FALSE(LastFor("default/hung-001").has_value()) << "still waiting for its timeout";

  ASSERT_TRUE(RunUntil([&] { return LastFor("default/hung-001").has_value(); }));
  EXPECT_FALSE(LastFor("default/hung-001")->live);
  EXPECT_EQ(LastFor("default/hung-001")->message, "timeout after 500ms");
}

TEST_F(HealthManagerTest, HeartbeatReadiness) {
  std::optional<absl::Time> hb;
  HealthCheckSpec hc;
  hc.readiness.emplace();
  hc.readiness->type = ProbeType::kHeartbeat;
  hc.readiness->max_age_s = 0.3;
  hc.readiness->period_s = 0.05;
  hc.readiness->failure_threshold = 1;
  ProbeTarget t = Target("default/h-001", hc);
  t.last_heartbeat = [&] { return hb; };
  Track(t);
  RunFor(absl::Milliseconds(150));
  EXPECT_TRUE(reports_.empty());
  EXPECT_EQ(manager_.Describe("default/h-001")["readiness"]["last_message"], "no heartbeat yet");

  hb = RealClock::Get().Now();
  ASSERT_TRUE(RunUntil([&] { return !reports_.empty(); }));
  EXPECT_TRUE(reports_.back().ready);
  const auto ready_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(RunUntil([&] { return reports_.size() == 2; }));
  EXPECT_GE(std::chrono::steady_clock::now() - ready_at, std::chrono::milliseconds(150));
  EXPECT_FALSE(reports_.back().ready);
  EXPECT_THAT(reports_.back().message, HasSubstr("no heartbeat for"));
}

TEST_F(HealthManagerTest, CheckNowRunsEveryProbeAtOnce) {
  server_.status["/started"] = 200;
  server_.status["/healthz"] = 503;
  HealthCheckSpec hc;
  hc.startup = Http("/started");
  hc.startup->initial_delay_s = 3600;  // would not run for an hour
  hc.liveness = Http("/healthz");
  hc.readiness.emplace();
  hc.readiness->type = ProbeType::kExec;
  hc.readiness->command = {"sh", "-c", "exit 4"};
  Track(Target("default/c-001", hc));

  std::optional<std::vector<ProbeCheck>> checks;
  ASSERT_TRUE(manager_.CheckNow("default/c-001", [&](std::vector<ProbeCheck> c) { checks = c; }).ok());
  EXPECT_FALSE(checks.has_value());
  ASSERT_TRUE(RunUntil([&] { return checks.has_value(); }));
  ASSERT_EQ(checks->size(), 3u);
  EXPECT_EQ((*checks)[0].probe, "startup");
  EXPECT_TRUE((*checks)[0].ok);
  EXPECT_EQ((*checks)[1].probe, "liveness");
  EXPECT_EQ((*checks)[1].type, "http");
  EXPECT_FALSE((*checks)[1].ok);
  EXPECT_EQ((*checks)[1].message, "HTTP 503");
  EXPECT_GT((*checks)[1].latency_ms, 0);
  EXPECT_EQ((*checks)[2].type, "exec");
  EXPECT_EQ((*checks)[2].message, "exit code 4");
  // Diagnostic only: the startup probe's own state is untouched.
  EXPECT_FALSE(manager_.Report("default/c-001")->started);
  EXPECT_EQ(manager_.Describe("default/c-001")["startup"]["status"], "Unknown");

  absl::Status missing = manager_.CheckNow("default/nope", [](std::vector<ProbeCheck>) {});
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(manager_.Describe("default/nope").is_null());
}

// Probe output is any bytes: what reaches the report, the check and Describe is valid UTF-8.
TEST_F(HealthManagerTest, ExecProbeOutputThatIsNotUtf8IsMadeValid) {
  HealthCheckSpec hc;
  hc.liveness.emplace();
  hc.liveness->type = ProbeType::kExec;
  hc.liveness->command = {"sh", "-c", "printf 'bad \\377\\376 byte'; exit 3"};
  hc.liveness->period_s = 0.05;
  hc.liveness->failure_threshold = 1;
  Track(Target("default/u-001", hc));
  ASSERT_TRUE(RunUntil([&] { return LastFor("default/u-001").has_value(); }));
  const HealthReport r = *LastFor("default/u-001");
  EXPECT_FALSE(r.live);
  EXPECT_EQ(FindInvalidUtf8(r.message), std::string::npos) << r.message;
  EXPECT_THAT(r.message, HasSubstr("exit code 3: bad \xef\xbf\xbd"));
  EXPECT_EQ(FindInvalidUtf8(manager_.Describe("default/u-001").dump()), std::string::npos);

  std::optional<std::vector<ProbeCheck>> checks;
  ASSERT_TRUE(manager_.CheckNow("default/u-001", [&](std::vector<ProbeCheck> c) { checks = c; }).ok());
  ASSERT_TRUE(RunUntil([&] { return checks.has_value(); }));
  ASSERT_EQ(checks->size(), 1u);
  EXPECT_EQ(FindInvalidUtf8((*checks)[0].message), std::string::npos) << (*checks)[0].message;
}

TEST_F(HealthManagerTest, UntrackAndRetrackReset) {
  server_.status["/healthz"] = 503;
  HealthCheckSpec hc;
  hc.liveness = Http("/healthz", 2);
  Track(Target("default/u-001", hc));
  ASSERT_TRUE(RunUntil([&] { return !reports_.empty(); }));
  EXPECT_FALSE(reports_.back().live);
  // A restart: tracked again from a new start, alive until proven dead again.
  Track(Target("default/u-001", hc));
  EXPECT_EQ(manager_.tracked(), 1u);
  EXPECT_TRUE(manager_.Report("default/u-001")->live);
  manager_.Untrack("default/u-001");
  EXPECT_EQ(manager_.tracked(), 0u);
  const int hits = server_.hits["/healthz"];
  RunFor(absl::Milliseconds(200));
  EXPECT_LE(server_.hits["/healthz"], hits + 1) << "at most the probe already in flight";
  EXPECT_EQ(reports_.size(), 1u);
}

TEST_F(HealthManagerTest, ManyInstancesShareOneTimer) {
  server_.status["/ready"] = 200;
  HealthCheckSpec hc;
  hc.readiness = Http("/ready", 3, 0.1);
  for (int i = 0; i < 200; ++i) Track(Target("default/m-" + std::to_string(i), hc));
  ASSERT_TRUE(RunUntil([&] { return reports_.size() == 200; }));
  for (const HealthReport& r : reports_) EXPECT_TRUE(r.ready);
  // Rounds of 200 probes keep coming every 100 ms, and no faster: periodic, not a busy loop.
  // Counted against the time they took, so a slow build (sanitizers) cannot fail it.
  const int before = server_.hits["/ready"];
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(RunUntil([&] { return server_.hits["/ready"] >= before + 200 * 4; }));
  const double elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int rounds = (server_.hits["/ready"] - before) / 200;
  EXPECT_LE(rounds, elapsed_s / 0.1 + 2) << rounds << " rounds in " << elapsed_s << " s";
}

TEST_F(HealthManagerTest, MissingPortIsAProbeFailure) {
  HealthCheckSpec hc;
  hc.liveness = Http("/healthz", 1);
  ProbeTarget t = Target("default/p-001", hc);
  t.ports.clear();
  Track(t);
  ASSERT_TRUE(RunUntil([&] { return !reports_.empty(); }));
  EXPECT_EQ(reports_.back().message, "port \"http\" has no assigned port");
}

}  // namespace
}  // namespace palm::health
