#include "palm/http/fd_limit.h"

#include <sys/resource.h>

#include "gtest/gtest.h"

namespace palm::http {
namespace {

TEST(FdLimitTest, ConnectionsLeaveAReserveForEverythingElse) {
  EXPECT_EQ(MaxConnectionsForFdLimit(1024), 768u);     // 256 kept
  EXPECT_EQ(MaxConnectionsForFdLimit(4096), 3072u);    // a quarter kept
  EXPECT_EQ(MaxConnectionsForFdLimit(20000), 15000u);
  EXPECT_EQ(MaxConnectionsForFdLimit(1u << 20), kMaxConnectionsCeiling);
  EXPECT_EQ(MaxConnectionsForFdLimit(100), 16u);  // a tiny limit still serves a few
  EXPECT_EQ(MaxConnectionsForFdLimit(0), 16u);
}

TEST(FdLimitTest, RaisesTheSoftLimitToTheHardLimit) {
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  if (saved.rlim_max == RLIM_INFINITY || saved.rlim_max < 64) GTEST_SKIP() << "no usable hard limit";
  rlimit low = saved;
  low.rlim_cur = 64;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  auto got = RaiseFdLimit();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->previous, 64u);
  EXPECT_EQ(got->soft, saved.rlim_max);
  EXPECT_EQ(got->hard, saved.rlim_max);
  rlimit now{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &now), 0);
  EXPECT_EQ(now.rlim_cur, saved.rlim_max);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
}

}  // namespace
}  // namespace palm::http
