#include "palm/tasks/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace palm::tasks {
namespace {

constexpr int64_t kRingSeconds = 15 * 60;
static_assert(kMaxWindow == absl::Seconds(kRingSeconds));

// Non-negative modulo: monotonic clocks may start anywhere.
size_t Slot(int64_t second) {
  return static_cast<size_t>(((second % kRingSeconds) + kRingSeconds) % kRingSeconds);
}

// Bucket i holds durations in [2^(i/8), 2^((i+1)/8)) microseconds; the first also holds
// everything shorter, the last everything longer. Neighbouring bounds are 2^(1/8) = 1.09
// apart, so the upper bound overstates a duration by less than 9.1 %.
int BucketIndex(absl::Duration d) {
  double us = absl::ToDoubleMicroseconds(d);
  if (!(us >= 1)) return 0;  // also NaN-safe
  double i = std::floor(std::log2(us) * LatencyHistogram::kSubBuckets);
  return static_cast<int>(std::min<double>(i, LatencyHistogram::kBuckets - 1));
}

double UpperBoundMs(int index) {
  return std::exp2(static_cast<double>(index + 1) / LatencyHistogram::kSubBuckets) / 1000.0;
}

// Milliseconds to the microsecond: the histogram is not more precise than that.
double RoundMs(double ms) { return std::round(ms * 1000.0) / 1000.0; }

int64_t Floor(absl::Time t) { return absl::ToUnixSeconds(t); }  // rounds down

}  // namespace

void LatencyHistogram::Add(absl::Duration d) {
  uint32_t& b = buckets_[BucketIndex(d)];
  if (b < std::numeric_limits<uint32_t>::max()) ++b;
  ++count_;
}

void LatencyHistogram::Merge(const LatencyHistogram& o) {
  if (o.count_ == 0) return;
  for (int i = 0; i < kBuckets; ++i) {
    uint64_t sum = uint64_t{buckets_[i]} + o.buckets_[i];
    buckets_[i] =
        static_cast<uint32_t>(std::min<uint64_t>(sum, std::numeric_limits<uint32_t>::max()));
  }
  count_ += o.count_;
}

void LatencyHistogram::Clear() {
  if (count_ == 0) return;
  buckets_.fill(0);
  count_ = 0;
}

double LatencyHistogram::QuantileMs(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // The smallest value with at least q of the samples at or below it (nearest rank).
  int64_t rank = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(q * count_)));
  int64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += buckets_[i];
    if (seen >= rank) return UpperBoundMs(i);
  }
  // Only when a bucket saturated its 32-bit count: the rank lies in the last used bucket.
  for (int i = kBuckets - 1; i >= 0; --i) {
    if (buckets_[i] > 0) return UpperBoundMs(i);
  }
  return 0;
}

nlohmann::json WindowStats::ToJson() const {
  return {{"window_s", absl::ToInt64Seconds(window)},
          {"count", count},
          {"succeeded", succeeded},
          {"failed", failed},
          {"timed_out", timed_out},
          {"error_rate", error_rate},
          {"success_rate", success_rate},
          {"p50_ms", RoundMs(p50_ms)},
          {"p90_ms", RoundMs(p90_ms)},
          {"p99_ms", RoundMs(p99_ms)}};
}

RevisionMetrics::Bucket& RevisionMetrics::BucketFor(int64_t second) {
  Bucket& b = ring_[Slot(second)];
  if (b.second != second) {
    b.second = second;
    b.succeeded = b.failed = b.timed_out = 0;
    b.latency.Clear();
  }
  return b;
}

void RevisionMetrics::Record(absl::Time now, Outcome outcome, absl::Duration service) {
  switch (outcome) {
    case Outcome::kSucceeded:
      ++total_succeeded_;
      break;
    case Outcome::kFailed:
      ++total_failed_;
      break;
    case Outcome::kTimedOut:
      ++total_timed_out_;
      break;
  }
  if (ring_.empty()) ring_.resize(kRingSeconds);
  const int64_t second = Floor(now);
  // A sample older than what its slot holds now is outside every window: totals only. (An
  // unused slot says -1, which may be a real second before the epoch; it holds nothing.)
  const Bucket& current = ring_[Slot(second)];
  if (current.second > second && current.succeeded + current.failed + current.timed_out > 0) {
    return;
  }
  Bucket& b = BucketFor(second);
  switch (outcome) {
    case Outcome::kSucceeded:
      ++b.succeeded;
      break;
    case Outcome::kFailed:
      ++b.failed;
      break;
    case Outcome::kTimedOut:
      ++b.timed_out;
      return;  // says nothing about latency
  }
  b.latency.Add(std::max(service, absl::ZeroDuration()));
}

WindowStats RevisionMetrics::Window(absl::Time now, absl::Duration window) const {
  int64_t seconds = absl::ToInt64Seconds(absl::Ceil(window, absl::Seconds(1)));
  seconds = std::clamp<int64_t>(seconds, 1, kRingSeconds);
  WindowStats st;
  st.window = absl::Seconds(seconds);
  if (ring_.empty()) return st;
  // The current (partial) second and the seconds - 1 before it.
  const int64_t last = Floor(now), first = last - seconds + 1;
  LatencyHistogram latency;
  for (const Bucket& b : ring_) {
    if (b.second < first || b.second > last) continue;
    st.succeeded += b.succeeded;
    st.failed += b.failed;
    st.timed_out += b.timed_out;
    latency.Merge(b.latency);
  }
  st.count = st.succeeded + st.failed + st.timed_out;
  if (st.count > 0) {
    st.error_rate = static_cast<double>(st.failed + st.timed_out) / st.count;
    st.success_rate = static_cast<double>(st.succeeded) / st.count;
  }
  st.p50_ms = latency.QuantileMs(0.50);
  st.p90_ms = latency.QuantileMs(0.90);
  st.p99_ms = latency.QuantileMs(0.99);
  return st;
}

nlohmann::json RevisionMetrics::Totals() const {
  return {{"count", total_succeeded_ + total_failed_ + total_timed_out_},
          {"succeeded", total_succeeded_},
          {"failed", total_failed_},
          {"timed_out", total_timed_out_}};
}

}  // namespace palm::tasks
