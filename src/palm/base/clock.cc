#include "palm/base/clock.h"

#include <time.h>

#include <cstdio>
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
  // By hand: absl::FormatTime goes through strftime-like parsing of the format on every
  // call, and records (tasks, events) format several times each.
  absl::TimeZone::CivilInfo ci = absl::UTCTimeZone().At(t);
  const absl::CivilSecond& c = ci.cs;
  int64_t year = c.year();
  if (year < 0 || year > 9999) {
    return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E3SZ", t, absl::UTCTimeZone());
  }
  int64_t ms = absl::ToInt64Milliseconds(ci.subsecond);
  char buf[32];
  int n = std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                        static_cast<int>(year), c.month(), c.day(), c.hour(), c.minute(),
                        c.second(), static_cast<int>(ms));
  return std::string(buf, static_cast<size_t>(n));
}

bool ParseTime(std::string_view s, absl::Time* out) {
  std::string err;
  return absl::ParseTime(absl::RFC3339_full, std::string(s), out, &err);
}

}  // namespace palm
