#include "palm/health/probe_state.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palm/testing/fake_clock.h"

namespace palm::health {
namespace {

using model::HealthCheckSpec;
using model::ProbeSpec;
using model::ProbeType;

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

ProbeSpec Spec(double delay, double period, int success = 1, int failure = 3) {
  ProbeSpec s;
  s.type = ProbeType::kHttp;
  s.port = "http";
  s.initial_delay_s = delay;
  s.period_s = period;
  s.success_threshold = success;
  s.failure_threshold = failure;
  return s;
}

TEST(ProbeStateTest, ScheduleIsStartPlusDelayThenPeriodAfterEachResult) {
  ProbeState p(ProbeKind::kLiveness, Spec(5, 10), kStart);
  EXPECT_EQ(p.NextRunAt(), kStart + absl::Seconds(5));
  p.Record(true, "HTTP 200", kStart + absl::Seconds(5.3));
  EXPECT_EQ(p.NextRunAt(), kStart + absl::Seconds(15.3));
  p.NotBefore(kStart + absl::Seconds(1));  // earlier: no effect
  EXPECT_EQ(p.NextRunAt(), kStart + absl::Seconds(15.3));
  p.NotBefore(kStart + absl::Seconds(20));
  EXPECT_EQ(p.NextRunAt(), kStart + absl::Seconds(20));
}

TEST(ProbeStateTest, InitialStatusByKind) {
  EXPECT_EQ(ProbeState(ProbeKind::kLiveness, Spec(0, 1), kStart).status(), ProbeStatus::kSuccess);
  EXPECT_EQ(ProbeState(ProbeKind::kReadiness, Spec(0, 1), kStart).status(), ProbeStatus::kUnknown);
  EXPECT_EQ(ProbeState(ProbeKind::kStartup, Spec(0, 1), kStart).status(), ProbeStatus::kUnknown);
}

TEST(ProbeStateTest, FailureOnlyAfterThresholdAndStatusIsSticky) {
  ProbeState p(ProbeKind::kLiveness, Spec(0, 1, 1, 3), kStart);
  absl::Time t = kStart;
  p.Record(false, "HTTP 503", t += absl::Seconds(1));
  p.Record(false, "HTTP 503", t += absl::Seconds(1));
  EXPECT_EQ(p.status(), ProbeStatus::kSuccess);
  EXPECT_EQ(p.consecutive_failures(), 2);
  p.Record(true, "HTTP 200", t += absl::Seconds(1));  // resets the failure count
  p.Record(false, "HTTP 503", t += absl::Seconds(1));
  p.Record(false, "timeout after 1s", t += absl::Seconds(1));
  EXPECT_EQ(p.status(), ProbeStatus::kSuccess);
  p.Record(false, "HTTP 500", t += absl::Seconds(1));
  EXPECT_EQ(p.status(), ProbeStatus::kFailure);
  EXPECT_EQ(p.consecutive_failures(), 3);
  EXPECT_EQ(p.consecutive_successes(), 0);
  EXPECT_EQ(p.last_message(), "HTTP 500");
  EXPECT_EQ(p.last_result_at(), t);
  p.Record(true, "HTTP 200", t += absl::Seconds(1));
  EXPECT_EQ(p.status(), ProbeStatus::kSuccess);
  EXPECT_EQ(p.last_failure_message(), "HTTP 500");
}

TEST(ProbeStateTest, ReadinessNeedsSuccessThreshold) {
  ProbeState p(ProbeKind::kReadiness, Spec(0, 1, 2, 2), kStart);
  absl::Time t = kStart;
  p.Record(true, "", t += absl::Seconds(1));
  EXPECT_EQ(p.status(), ProbeStatus::kUnknown);
  p.Record(true, "", t += absl::Seconds(1));
  EXPECT_EQ(p.status(), ProbeStatus::kSuccess);
  p.Record(false, "x", t += absl::Seconds(1));
  EXPECT_EQ(p.status(), ProbeStatus::kSuccess);  // one failure < failure_threshold 2
  p.Record(false, "x", t += absl::Seconds(1));
  EXPECT_EQ(p.status(), ProbeStatus::kFailure);
  p.Record(true, "", t += absl::Seconds(1));
  EXPECT_EQ(p.status(), ProbeStatus::kFailure);  // one success < success_threshold 2
}

TEST(ProbeStateTest, SucceededStartupNeverRunsAgain) {
  ProbeState p(ProbeKind::kStartup, Spec(0, 1, 1, 30), kStart);
  p.Record(false, "connect: Connection refused", kStart + absl::Seconds(1));
  EXPECT_EQ(p.NextRunAt(), kStart + absl::Seconds(2));
  p.Record(true, "connected", kStart + absl::Seconds(2));
  EXPECT_EQ(p.NextRunAt(), absl::InfiniteFuture());
}

TEST(ProbeSetTest, NoProbesMeansStartedLiveReady) {
  ProbeSet s(HealthCheckSpec{}, kStart);
  EXPECT_TRUE(s.started());
  EXPECT_TRUE(s.live());
  EXPECT_TRUE(s.ready());
  EXPECT_FALSE(s.Failing().has_value());
  EXPECT_FALSE(s.Runnable(ProbeKind::kLiveness));
}

TEST(ProbeSetTest, StartupHoldsLivenessAndReadinessOff) {
  HealthCheckSpec hc;
  hc.startup = Spec(0, 1, 1, 5);
  hc.liveness = Spec(2, 10);
  hc.readiness = Spec(0, 3);
  ProbeSet s(hc, kStart);
  EXPECT_FALSE(s.started());
  EXPECT_TRUE(s.live());
  EXPECT_FALSE(s.ready());
  EXPECT_EQ(s.Failing(), ProbeKind::kStartup);
  EXPECT_TRUE(s.Runnable(ProbeKind::kStartup));
  EXPECT_FALSE(s.Runnable(ProbeKind::kLiveness));
  EXPECT_FALSE(s.Runnable(ProbeKind::kReadiness));

  EXPECT_FALSE(s.Record(ProbeKind::kStartup, false, "refused", kStart + absl::Seconds(1)));
  const absl::Time ok_at = kStart + absl::Seconds(7);
  EXPECT_TRUE(s.Record(ProbeKind::kStartup, true, "ok", ok_at));  // started flips
  EXPECT_TRUE(s.started());
  EXPECT_FALSE(s.Runnable(ProbeKind::kStartup));
  EXPECT_TRUE(s.Runnable(ProbeKind::kLiveness));
  // Their first runs (start+2s, start+0s) passed while held off: they run at the success.
  EXPECT_EQ(s.Get(ProbeKind::kLiveness)->NextRunAt(), ok_at);
  EXPECT_EQ(s.Get(ProbeKind::kReadiness)->NextRunAt(), ok_at);
  EXPECT_FALSE(s.ready());
  EXPECT_EQ(s.Failing(), ProbeKind::kReadiness);
  EXPECT_TRUE(s.Record(ProbeKind::kReadiness, true, "HTTP 200", ok_at));
  EXPECT_TRUE(s.ready());
  EXPECT_FALSE(s.Failing().has_value());
}

TEST(ProbeSetTest, StartupFailureMeansNotLive) {
  HealthCheckSpec hc;
  hc.startup = Spec(0, 1, 1, 2);
  ProbeSet s(hc, kStart);
  EXPECT_FALSE(s.Record(ProbeKind::kStartup, false, "refused", kStart + absl::Seconds(1)));
  EXPECT_TRUE(s.Record(ProbeKind::kStartup, false, "refused", kStart + absl::Seconds(2)));
  EXPECT_FALSE(s.live());
  EXPECT_EQ(s.Failing(), ProbeKind::kStartup);
  EXPECT_EQ(s.Get(ProbeKind::kStartup)->last_failure_message(), "refused");
}

TEST(ProbeSetTest, LivenessFailureMakesNotReadyEither) {
  HealthCheckSpec hc;
  hc.liveness = Spec(0, 1, 1, 1);
  hc.readiness = Spec(0, 1);
  ProbeSet s(hc, kStart);
  s.Record(ProbeKind::kReadiness, true, "", kStart);
  EXPECT_TRUE(s.ready());
  EXPECT_TRUE(s.Record(ProbeKind::kLiveness, false, "HTTP 500", kStart + absl::Seconds(1)));
  EXPECT_FALSE(s.live());
  EXPECT_FALSE(s.ready());
  EXPECT_EQ(s.Failing(), ProbeKind::kLiveness);
}

TEST(ProbeSetTest, DrivenByFakeClockOverAMinute) {
  // A liveness probe every 10 s with failure_threshold 3 against a target that dies at 30 s:
  // the failure is declared at the third failed run (t = 50 s), not before.
  testing::FakeClock clock(kStart);
  HealthCheckSpec hc;
  hc.liveness = Spec(0, 10, 1, 3);
  ProbeSet s(hc, clock.MonotonicNow());
  std::optional<absl::Time> died_at;
  for (int i = 0; i < 60; ++i) {
    const absl::Time now = clock.MonotonicNow();
    if (s.Get(ProbeKind::kLiveness)->NextRunAt() <= now) {
      const bool healthy = now - kStart < absl::Seconds(30);
      if (s.Record(ProbeKind::kLiveness, healthy, healthy ? "HTTP 200" : "HTTP 503", now)) {
        died_at = now;
      }
    }
    clock.Advance(absl::Seconds(1));
  }
  ASSERT_TRUE(died_at.has_value());
  EXPECT_EQ(*died_at - kStart, absl::Seconds(50));
}

TEST(HeartbeatTest, Verdicts) {
  const absl::Duration max_age = absl::Seconds(15);
  const absl::Time now = kStart + absl::Seconds(100);
  EXPECT_TRUE(EvaluateHeartbeat(now - absl::Seconds(15), kStart, now, max_age, false).ok);
  HeartbeatVerdict old = EvaluateHeartbeat(now - absl::Seconds(17.6), kStart, now, max_age, false);
  EXPECT_FALSE(old.ok);
  EXPECT_EQ(old.message, "no heartbeat for 17s");
  HeartbeatVerdict none = EvaluateHeartbeat(std::nullopt, kStart, now, max_age, false);
  EXPECT_FALSE(none.ok);
  EXPECT_EQ(none.message, "no heartbeat yet");
  // A heartbeat from before this start belongs to the previous run.
  EXPECT_FALSE(EvaluateHeartbeat(kStart - absl::Seconds(1), kStart, kStart + absl::Seconds(1),
                                 max_age, false)
                   .ok);
  // Liveness gives a fresh process max_age to send its first heartbeat.
  EXPECT_TRUE(EvaluateHeartbeat(std::nullopt, kStart, kStart + absl::Seconds(10), max_age, true).ok);
  HeartbeatVerdict late =
      EvaluateHeartbeat(std::nullopt, kStart, kStart + absl::Seconds(20), max_age, true);
  EXPECT_FALSE(late.ok);
  EXPECT_EQ(late.message, "no heartbeat since the start 20s ago");
}

}  // namespace
}  // namespace palm::health
