#include "palm/base/clock.h"

#include <time.h>

#include <string>

#include "absl/time/clock.h"

namespace palm {

absl::Time RealClock::Now() const { return absl::Now(); }

absl::Time RealClock::MonotonicNow() const {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return absl::UnixEpoch() + absl::Seconds(ts.tv_sec) + absl::Nanoseconds(ts.tv_nsec);
}

RealClock& RealClock::Get() {
  static RealClock clock;
  return clock;
}

std::string FormatTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

bool ParseTime(std::string_view s, absl::Time* out) {
  std::string err;
  return absl::ParseTime(absl::RFC3339_full, std::string(s), out, &err);
}

}  // namespace palm
