#include "palm/tasks/metrics.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace palm::tasks {
namespace {

// Upper bounds are at most one bucket (a factor of 2^(1/8)) above the value.
constexpr double kBucketRatio = 1.0905077326652577;

// The nearest-rank q-quantile of `v` in milliseconds.
double ExactQuantileMs(std::vector<absl::Duration> v, double q) {
  std::sort(v.begin(), v.end());
  size_t rank = std::max<size_t>(1, static_cast<size_t>(std::ceil(q * v.size())));
  return absl::ToDoubleMilliseconds(v[rank - 1]);
}

void ExpectWithinOneBucket(double got_ms, double exact_ms, const std::string& what) {
  EXPECT_GE(got_ms, exact_ms) << what << ": the upper bound of the bucket";
  EXPECT_LT(got_ms, exact_ms * kBucketRatio * 1.000001) << what;
  EXPECT_LT(std::fabs(got_ms - exact_ms) / exact_ms, 0.10) << what << ": relative error";
}

// ---- LatencyHistogram --------------------------------------------------------------

TEST(LatencyHistogramTest, EmptyIsZero) {
  LatencyHistogram h;
  EXPECT_EQ(h.count(), 0);
  EXPECT_EQ(h.QuantileMs(0.5), 0);
  EXPECT_EQ(h.QuantileMs(1), 0);
}

TEST(LatencyHistogramTest, SingleValuesAcrossTheRange) {
  for (absl::Duration d : {absl::Microseconds(1), absl::Microseconds(3), absl::Microseconds(999),
                           absl::Milliseconds(1), absl::Microseconds(12'500), absl::Seconds(2),
                           absl::Minutes(7), absl::Hours(1), absl::Hours(24)}) {
    LatencyHistogram h;
    h.Add(d);
    EXPECT_EQ(h.count(), 1);
    const double ms = absl::ToDoubleMilliseconds(d);
    for (double q : {0.01, 0.5, 0.99, 1.0}) {
      ExpectWithinOneBucket(h.QuantileMs(q), ms, absl::FormatDuration(d));
    }
  }
}

TEST(LatencyHistogramTest, ExtremesAreClampedToTheEndBuckets) {
  LatencyHistogram tiny;
  tiny.Add(absl::ZeroDuration());
  tiny.Add(absl::Nanoseconds(10));
  tiny.Add(-absl::Seconds(1));
  EXPECT_EQ(tiny.count(), 3);
  EXPECT_NEAR(tiny.QuantileMs(1), kBucketRatio / 1000, 1e-9) << "below 1 µs: the first bucket";

  LatencyHistogram huge;
  huge.Add(absl::Hours(24 * 30));
  huge.Add(absl::InfiniteDuration());
  const double last_ms = std::exp2(37.0) / 1000;  // 2^37 µs, about 38 hours
  EXPECT_NEAR(huge.QuantileMs(0.5), last_ms, 1e-6);
  EXPECT_NEAR(huge.QuantileMs(1), last_ms, 1e-6);
}

TEST(LatencyHistogramTest, UniformDistribution) {
  LatencyHistogram h;
  std::vector<absl::Duration> all;
  for (int ms = 1; ms <= 10'000; ++ms) {
    all.push_back(absl::Milliseconds(ms));
    h.Add(all.back());
  }
  EXPECT_EQ(h.count(), 10'000);
  for (double q : {0.001, 0.1, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0}) {
    ExpectWithinOneBucket(h.QuantileMs(q), ExactQuantileMs(all, q), absl::StrCat("q=", q));
  }
  EXPECT_LT(h.QuantileMs(0.5), 5000 * 1.1);
  EXPECT_GE(h.QuantileMs(0.99), 9900);
}

TEST(LatencyHistogramTest, SkewedDistributions) {
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> lognormal(std::log(50'000.0), 1.0);  // µs, median 50 ms
  std::exponential_distribution<double> exponential(1.0 / 2'000.0);        // µs, mean 2 ms
  for (int dist = 0; dist < 2; ++dist) {
    LatencyHistogram h;
    std::vector<absl::Duration> all;
    for (int i = 0; i < 50'000; ++i) {
      double us = dist == 0 ? lognormal(rng) : exponential(rng);
      all.push_back(absl::Microseconds(std::max(1.0, std::round(us))));
      h.Add(all.back());
    }
    for (double q : {0.5, 0.9, 0.99, 0.999}) {
      ExpectWithinOneBucket(h.QuantileMs(q), ExactQuantileMs(all, q),
                            absl::StrCat(dist == 0 ? "lognormal" : "exponential", " q=", q));
    }
  }
}

TEST(LatencyHistogramTest, QuantilesAreMonotonic) {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int64_t> us(1, 10'000'000);
  LatencyHistogram h;
  for (int i = 0; i < 1000; ++i) h.Add(absl::Microseconds(us(rng)));
  double prev = 0;
  for (double q = 0.01; q <= 1.0; q += 0.01) {
    double v = h.QuantileMs(q);
    EXPECT_GE(v, prev) << q;
    prev = v;
  }
  EXPECT_EQ(h.QuantileMs(2), h.QuantileMs(1)) << "q is clamped to (0, 1]";
  EXPECT_EQ(h.QuantileMs(0), h.QuantileMs(0.0001));
}

TEST(LatencyHistogramTest, MergeAndClear) {
  LatencyHistogram a, b, both;
  for (int i = 1; i <= 100; ++i) {
    a.Add(absl::Milliseconds(i));
    both.Add(absl::Milliseconds(i));
    b.Add(absl::Seconds(i));
    both.Add(absl::Seconds(i));
  }
  a.Merge(b);
  EXPECT_EQ(a.count(), 200);
  for (double q : {0.1, 0.5, 0.75, 0.99}) EXPECT_EQ(a.QuantileMs(q), both.QuantileMs(q)) << q;
  a.Merge(LatencyHistogram());
  EXPECT_EQ(a.count(), 200);
  a.Clear();
  EXPECT_EQ(a.count(), 0);
  EXPECT_EQ(a.QuantileMs(0.5), 0);
  a.Add(absl::Milliseconds(3));
  ExpectWithinOneBucket(a.QuantileMs(0.5), 3, "after Clear");
}

// ---- WindowStats ---------------------------------------------------------------------

TEST(WindowStatsTest, ToJson) {
  WindowStats s;
  s.window = absl::Seconds(60);
  s.count = 4;
  s.succeeded = 2;
  s.failed = 1;
  s.timed_out = 1;
  s.error_rate = 0.5;
  s.success_rate = 0.5;
  s.p50_ms = 12.5;
  s.p90_ms = 100.12345678;
  s.p99_ms = 2000;
  const nlohmann::json want = nlohmann::json::parse(R"({
    "window_s": 60, "count": 4, "succeeded": 2, "failed": 1, "timed_out": 1,
    "error_rate": 0.5, "success_rate": 0.5, "p50_ms": 12.5, "p90_ms": 100.123,
    "p99_ms": 2000.0})");
  EXPECT_EQ(s.ToJson(), want) << s.ToJson().dump();
  EXPECT_TRUE(s.ToJson()["window_s"].is_number_integer());
}

// ---- RevisionMetrics -----------------------------------------------------------------

// Monotonic times are arbitrary; start somewhere that is not a multiple of the ring.
absl::Time At(double seconds) {
  return absl::UnixEpoch() + absl::Seconds(123'456) + absl::Seconds(seconds);
}

TEST(RevisionMetricsTest, EmptyRevision) {
  RevisionMetrics m;
  WindowStats w = m.Window(At(0), absl::Seconds(60));
  EXPECT_EQ(w.window, absl::Seconds(60));
  EXPECT_EQ(w.count, 0);
  EXPECT_EQ(w.error_rate, 0);
  EXPECT_EQ(w.success_rate, 0);
  EXPECT_EQ(w.p50_ms, 0);
  EXPECT_EQ(w.p99_ms, 0);
  EXPECT_EQ(m.Totals(),
            nlohmann::json::parse(R"({"count": 0, "succeeded": 0, "failed": 0, "timed_out": 0})"));
}

TEST(RevisionMetricsTest, CountsRatesAndLatency) {
  RevisionMetrics m;
  for (int i = 0; i < 6; ++i) m.Record(At(1), Outcome::kSucceeded, absl::Milliseconds(100));
  m.Record(At(2), Outcome::kSucceeded, absl::Milliseconds(300));
  m.Record(At(2.5), Outcome::kFailed, absl::Milliseconds(5));
  // A timeout's "service time" would be the lease; it must not move the percentiles.
  m.Record(At(3), Outcome::kTimedOut, absl::Hours(1));
  m.Record(At(3), Outcome::kTimedOut, absl::Hours(1));
  WindowStats w = m.Window(At(10), absl::Seconds(60));
  EXPECT_EQ(w.count, 10);
  EXPECT_EQ(w.succeeded, 7);
  EXPECT_EQ(w.failed, 1);
  EXPECT_EQ(w.timed_out, 2);
  EXPECT_DOUBLE_EQ(w.error_rate, 0.3);
  EXPECT_DOUBLE_EQ(w.success_rate, 0.7);
  ExpectWithinOneBucket(w.p50_ms, 100, "p50");
  ExpectWithinOneBucket(w.p90_ms, 300, "p90 (8 latencies: rank 8)");
  ExpectWithinOneBucket(w.p99_ms, 300, "p99");
  EXPECT_EQ(m.Totals(),
            nlohmann::json::parse(R"({"count": 10, "succeeded": 7, "failed": 1, "timed_out": 2})"));
}

TEST(RevisionMetricsTest, OnlyTimeoutsHaveNoLatency) {
  RevisionMetrics m;
  m.Record(At(0), Outcome::kTimedOut, absl::Seconds(60));
  WindowStats w = m.Window(At(0), absl::Seconds(60));
  EXPECT_EQ(w.count, 1);
  EXPECT_EQ(w.error_rate, 1.0);
  EXPECT_EQ(w.success_rate, 0.0);
  EXPECT_EQ(w.p50_ms, 0);
}

TEST(RevisionMetricsTest, WindowsSlideWithTime) {
  RevisionMetrics m;
  m.Record(At(0), Outcome::kSucceeded, absl::Milliseconds(10));
  m.Record(At(10), Outcome::kFailed, absl::Milliseconds(20));
  m.Record(At(100), Outcome::kSucceeded, absl::Milliseconds(30));
  EXPECT_EQ(m.Window(At(100), absl::Seconds(60)).count, 1);
  EXPECT_EQ(m.Window(At(100), absl::Seconds(91)).count, 2) << "seconds 10..100";
  EXPECT_EQ(m.Window(At(100), absl::Seconds(90)).count, 1) << "seconds 11..100";
  EXPECT_EQ(m.Window(At(100), absl::Seconds(101)).count, 3);
  EXPECT_EQ(m.Window(At(100), absl::Seconds(300)).failed, 1);
  // As time goes on the old seconds fall out.
  EXPECT_EQ(m.Window(At(159.999), absl::Seconds(60)).count, 1) << "second 100 is still in";
  EXPECT_EQ(m.Window(At(160), absl::Seconds(60)).count, 0);
  EXPECT_EQ(m.Window(At(160), absl::Seconds(300)).count, 3);
  EXPECT_EQ(m.Window(At(309), absl::Seconds(300)).count, 2) << "second 9 is out, 10 in";
  WindowStats late = m.Window(At(999.9), kMaxWindow);
  EXPECT_EQ(late.count, 1) << "only second 100 is within the last 900 (100..999)";
  ExpectWithinOneBucket(late.p50_ms, 30, "p50 of what is left");
  EXPECT_EQ(m.Window(At(1000), kMaxWindow).count, 0);
  EXPECT_EQ(m.Totals()["count"], 3) << "totals never slide";
}

TEST(RevisionMetricsTest, WindowIsRoundedUpAndBounded) {
  RevisionMetrics m;
  m.Record(At(0), Outcome::kSucceeded, absl::Milliseconds(1));
  EXPECT_EQ(m.Window(At(59), absl::Milliseconds(59'200)).window, absl::Seconds(60));
  EXPECT_EQ(m.Window(At(59), absl::Milliseconds(59'200)).count, 1);
  EXPECT_EQ(m.Window(At(0), absl::Hours(2)).window, kMaxWindow);
  EXPECT_EQ(m.Window(At(0), absl::ZeroDuration()).window, absl::Seconds(1));
  EXPECT_EQ(m.Window(At(0.9), absl::ZeroDuration()).count, 1) << "the current second";
  EXPECT_EQ(m.Window(At(0), -absl::Seconds(5)).window, absl::Seconds(1));
}

TEST(RevisionMetricsTest, TheRingWrapsAroundWithoutMixingSeconds) {
  RevisionMetrics m;
  // One success per second for 30 minutes: the ring is reused twice.
  for (int s = 0; s < 1800; ++s) {
    m.Record(At(s), Outcome::kSucceeded, absl::Milliseconds(s < 900 ? 1 : 1000));
  }
  WindowStats all = m.Window(At(1799), kMaxWindow);
  EXPECT_EQ(all.count, 900);
  ExpectWithinOneBucket(all.p50_ms, 1000, "only the second half is in the window");
  ExpectWithinOneBucket(all.p90_ms, 1000, "p90");
  EXPECT_EQ(m.Window(At(1799), absl::Seconds(60)).count, 60);
  EXPECT_EQ(m.Totals()["succeeded"], 1800);
  // A gap longer than the ring: nothing stale is counted.
  m.Record(At(5000), Outcome::kFailed, absl::Milliseconds(2));
  EXPECT_EQ(m.Window(At(5000), kMaxWindow).count, 1);
  EXPECT_EQ(m.Window(At(5000), kMaxWindow).failed, 1);
}

TEST(RevisionMetricsTest, ASampleOlderThanItsSlotCountsOnlyInTotals) {
  RevisionMetrics m;
  m.Record(At(900), Outcome::kSucceeded, absl::Milliseconds(1));
  m.Record(At(0), Outcome::kFailed, absl::Milliseconds(1));  // same slot, 15 minutes older
  WindowStats w = m.Window(At(900), kMaxWindow);
  EXPECT_EQ(w.count, 1);
  EXPECT_EQ(w.succeeded, 1) << "the newer second was not overwritten";
  EXPECT_EQ(m.Totals()["count"], 2);
}

TEST(RevisionMetricsTest, TimesBeforeTheEpochWork) {
  RevisionMetrics m;
  const absl::Time t = absl::UnixEpoch() - absl::Seconds(1000.5);
  m.Record(t, Outcome::kSucceeded, absl::Milliseconds(1));
  m.Record(t + absl::Seconds(1), Outcome::kSucceeded, absl::Milliseconds(1));
  m.Record(absl::UnixEpoch() - absl::Seconds(0.5), Outcome::kFailed, absl::Milliseconds(1));
  EXPECT_EQ(m.Window(absl::UnixEpoch(), absl::Seconds(2)).failed, 1) << "second -1";
  EXPECT_EQ(m.Window(t + absl::Seconds(1), absl::Seconds(2)).count, 2);
  EXPECT_EQ(m.Window(t + absl::Seconds(1), absl::Seconds(1)).count, 1);
}

TEST(RevisionMetricsTest, ManyRevisionsCostLittleUntilTheyRecord) {
  // The ring is allocated on the first Record: idle revisions stay at their object size.
  EXPECT_LT(sizeof(RevisionMetrics), 128u);
  std::vector<RevisionMetrics> many(10'000);
  for (const RevisionMetrics& m : many) EXPECT_EQ(m.Window(At(0), kMaxWindow).count, 0);
}

}  // namespace
}  // namespace palm::tasks
