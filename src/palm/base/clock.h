// Clock: the only source of time in palm (wall time for records, monotonic for timers).
// RealClock reads the OS; FakeClock (palm/testing) is advanced by tests.
// Thread-safety: implementations must be safe to call from any thread.
#pragma once

#include "absl/time/time.h"

namespace palm {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time (RFC 3339 in records).
  virtual absl::Time Now() const = 0;
  // Monotonic time for deadlines and durations; never goes backwards.
  virtual absl::Time MonotonicNow() const = 0;
};

class RealClock final : public Clock {
 public:
  absl::Time Now() const override;
  absl::Time MonotonicNow() const override;
  // A process-wide instance.
  static RealClock& Get();
};

// RFC 3339 UTC with millisecond precision: "2026-11-22T19:08:06.123Z".
std::string FormatTime(absl::Time t);
// Parses what FormatTime writes (and any RFC 3339 time); false on malformed input.
bool ParseTime(std::string_view s, absl::Time* out);

}  // namespace palm
