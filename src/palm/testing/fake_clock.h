// FakeClock: a Clock that moves only when a test calls Advance(). Thread-safe.
#pragma once

#include <atomic>

#include "palm/base/clock.h"

namespace palm::testing {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'800'000'000))
      : now_ns_(absl::ToUnixNanos(start)) {}
  absl::Time Now() const override { return absl::FromUnixNanos(now_ns_.load()); }
  absl::Time MonotonicNow() const override { return Now(); }
  void Advance(absl::Duration d) { now_ns_ += absl::ToInt64Nanoseconds(d); }

 private:
  std::atomic<int64_t> now_ns_;
};

}  // namespace palm::testing
