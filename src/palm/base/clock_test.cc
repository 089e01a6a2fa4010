#include "palm/base/clock.h"

#include <random>

#include "gtest/gtest.h"

namespace palm {
namespace {

TEST(FormatTimeTest, MatchesRfc3339WithMilliseconds) {
  EXPECT_EQ(palm::FormatTime(absl::FromUnixMillis(1'800'000'000'123)),
            "2027-01-15T08:00:00.123Z");
  EXPECT_EQ(palm::FormatTime(absl::UnixEpoch()), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(palm::FormatTime(absl::FromUnixMillis(-1)), "1969-12-31T23:59:59.999Z");
}

TEST(FormatTimeTest, AgreesWithAbslAndRoundTrips) {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int64_t> ms(-2'000'000'000'000, 4'000'000'000'000);
  for (int i = 0; i < 10000; ++i) {
    absl::Time t = absl::FromUnixMicros(ms(rng) * 1000 + static_cast<int64_t>(rng() % 1000));
    std::string mine = palm::FormatTime(t);
    ASSERT_EQ(mine, absl::FormatTime("%Y-%m-%d%ET%H:%M:%E3SZ", t, absl::UTCTimeZone())) << t;
    absl::Time back;
    ASSERT_TRUE(palm::ParseTime(mine, &back));
    EXPECT_EQ(back, absl::FromUnixMillis(absl::ToUnixMillis(t))) << mine;  // floored to ms
  }
}

}  // namespace
}  // namespace palm
