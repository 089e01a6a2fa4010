// Per-revision task metrics over sliding windows: the numbers canary analysis and the
// autoscaler judge a revision by (DESIGN.md section 3, Task; issue #4 item 4).
//
// A RevisionMetrics keeps one-second buckets for the last kMaxWindow; each bucket counts
// completed deliveries (succeeded, failed, timed out) and holds a latency histogram of their
// service time (lease granted -> result) in logarithmic buckets. Memory: nothing until the
// first Record; about 1.2 MB for a revision busy in every second of the last 15 minutes.
// Window(w) sums the buckets of the last `w` (rounded up to whole seconds, at most
// kMaxWindow); percentiles are read from the summed histogram. Totals since start are kept
// too (for /metrics). All times come from the caller (monotonic).
// Thread-safety: none (event loop).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace palm::tasks {

inline constexpr absl::Duration kMaxWindow = absl::Minutes(15);

// Logarithmic latency histogram: 8 buckets per power of two (bounds 2^(1/8) apart) from 1 µs
// to ~1 day (relative error < 10 %), 32-bit counts.
class LatencyHistogram {
 public:
  static constexpr int kSubBuckets = 8;
  static constexpr int kBuckets = 37 * kSubBuckets;
  void Add(absl::Duration d);
  void Merge(const LatencyHistogram& o);
  void Clear();
  int64_t count() const { return count_; }
  // The q-quantile (0 < q <= 1) in milliseconds; 0 when empty. Upper bound of the bucket.
  double QuantileMs(double q) const;

 private:
  std::array<uint32_t, kBuckets> buckets_{};
  int64_t count_ = 0;
};

struct WindowStats {
  absl::Duration window;
  int64_t count = 0;       // succeeded + failed + timed_out
  int64_t succeeded = 0;
  int64_t failed = 0;      // the agent answered ok: false
  int64_t timed_out = 0;   // a lease expired
  double error_rate = 0;   // (failed + timed_out) / count; 0 when count == 0
  double success_rate = 0; // succeeded / count; 0 when count == 0
  double p50_ms = 0, p90_ms = 0, p99_ms = 0;  // service time of successes and failures
  // {"window_s", "count", "succeeded", "failed", "timed_out", "error_rate", "success_rate",
  //  "p50_ms", "p90_ms", "p99_ms"}
  nlohmann::json ToJson() const;
};

enum class Outcome { kSucceeded, kFailed, kTimedOut };

class RevisionMetrics {
 public:
  // `service` is ignored for kTimedOut (a timeout says nothing about latency).
  void Record(absl::Time now, Outcome outcome, absl::Duration service);
  WindowStats Window(absl::Time now, absl::Duration window) const;
  // Since start: {"count", "succeeded", "failed", "timed_out"}.
  nlohmann::json Totals() const;

 private:
  struct Bucket {
    int64_t second = -1;  // absolute second this bucket holds (-1 = empty)
    int64_t succeeded = 0, failed = 0, timed_out = 0;
    LatencyHistogram latency;
  };
  Bucket& BucketFor(int64_t second);
  std::vector<Bucket> ring_;  // kMaxWindow seconds, allocated on first Record
  int64_t total_succeeded_ = 0, total_failed_ = 0, total_timed_out_ = 0;
};

}  // namespace palm::tasks
