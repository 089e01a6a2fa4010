#include "palm/base/semver.h"

#include "gtest/gtest.h"

namespace palm {
namespace {

TEST(CompareSemver, FollowsSemverPrecedence) {
  // The example chain from semver.org section 11.
  const char* chain[] = {"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
                         "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.2.0",
                         "1.10.0", "2.0.0"};
  for (size_t i = 0; i + 1 < std::size(chain); ++i) {
    EXPECT_LT(CompareSemver(chain[i], chain[i + 1]), 0) << chain[i] << " < " << chain[i + 1];
    EXPECT_GT(CompareSemver(chain[i + 1], chain[i]), 0) << chain[i + 1] << " > " << chain[i];
  }
  EXPECT_EQ(CompareSemver("1.2.3+build.5", "1.2.3"), 0);
}

}  // namespace
}  // namespace palm
