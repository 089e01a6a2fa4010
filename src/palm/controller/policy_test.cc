#include "palm/controller/policy.h"

#include "gtest/gtest.h"

namespace palm::controller {
namespace {

using model::Instance;
using model::InstanceState;

TEST(BackoffDelay, DoublesFromInitialAndCapsAtMax) {
  model::RestartPolicy p;  // 1 s initial, 300 s max
  EXPECT_EQ(BackoffDelay(p, 0), absl::ZeroDuration());
  EXPECT_EQ(BackoffDelay(p, 1), absl::Seconds(1));
  EXPECT_EQ(BackoffDelay(p, 2), absl::Seconds(2));
  EXPECT_EQ(BackoffDelay(p, 3), absl::Seconds(4));
  EXPECT_EQ(BackoffDelay(p, 9), absl::Seconds(256));
  EXPECT_EQ(BackoffDelay(p, 10), absl::Seconds(300));
  EXPECT_EQ(BackoffDelay(p, 1000), absl::Seconds(300));
  p.backoff_initial_s = 0;
  EXPECT_EQ(BackoffDelay(p, 5), absl::ZeroDuration());
  p.backoff_initial_s = 0.25;
  p.backoff_max_s = 1;
  EXPECT_EQ(BackoffDelay(p, 2), absl::Milliseconds(500));
  EXPECT_EQ(BackoffDelay(p, 4), absl::Seconds(1));
}

TEST(ShouldRestart, FollowsThePolicy) {
  model::ExitInfo ok{0, std::nullopt, absl::UnixEpoch()};
  model::ExitInfo bad{3, std::nullopt, absl::UnixEpoch()};
  model::ExitInfo killed{std::nullopt, 9, absl::UnixEpoch()};
  model::ExitInfo unknown{std::nullopt, std::nullopt, absl::UnixEpoch()};
  using M = model::RestartMode;
  EXPECT_TRUE(ShouldRestart(M::kAlways, ok));
  EXPECT_FALSE(ShouldRestart(M::kOnFailure, ok));
  EXPECT_TRUE(ShouldRestart(M::kOnFailure, bad));
  EXPECT_TRUE(ShouldRestart(M::kOnFailure, killed));
  EXPECT_TRUE(ShouldRestart(M::kOnFailure, unknown));
  EXPECT_FALSE(ShouldRestart(M::kNever, bad));
}

TEST(RanStably, ComparesTheRunWithResetAfter) {
  model::RestartPolicy p;  // reset after 600 s
  absl::Time t0 = absl::FromUnixSeconds(1000);
  EXPECT_FALSE(RanStably(p, t0, t0 + absl::Seconds(599)));
  EXPECT_TRUE(RanStably(p, t0, t0 + absl::Seconds(600)));
}

TEST(ScaleDownOrder, NotRunningFirstThenOldRevisionThenNewest) {
  auto make = [](int seq, InstanceState s, int rev) {
    Instance in;
    in.seq = seq;
    in.state = s;
    in.revision = rev;
    return in;
  };
  std::vector<Instance> v = {
      make(1, InstanceState::kRunning, 2), make(2, InstanceState::kRunning, 2),
      make(3, InstanceState::kBackOff, 2), make(4, InstanceState::kRunning, 1),
      make(5, InstanceState::kRunning, 2), make(6, InstanceState::kPending, 2)};
  std::vector<const Instance*> view;
  for (auto& in : v) view.push_back(&in);
  std::vector<size_t> order = ScaleDownOrder(view, 2);
  std::vector<int> seqs;
  for (size_t i : order) seqs.push_back(v[i].seq);
  EXPECT_EQ(seqs, (std::vector<int>{6, 3, 4, 5, 2, 1}));
}

}  // namespace
}  // namespace palm::controller
