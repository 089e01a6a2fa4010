// The rollout planner against a small simulated fleet: every planning step is followed by
// the fleet moving one step toward the plan (new instances become ready, stopped ones go
// away), and the invariants are checked at every transition.
#include "palm/controller/rollout.h"

#include <algorithm>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace palm::controller {
namespace {

using model::CanaryStep;
using model::Deployment;
using model::IntOrPercent;
using model::StrategyType;
using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

// Instances per revision: `pending` were created this step and become ready at the next;
// removed ones terminate for one step.
struct Fleet {
  std::map<int64_t, int64_t> ready, pending, terminating;

  RolloutView View() const {
    RolloutView v;
    for (const auto& [rev, n] : ready) {
      v.revisions[rev].slots += n;
      v.revisions[rev].ready += n;
      v.revisions[rev].available += n;
    }
    for (const auto& [rev, n] : pending) v.revisions[rev].slots += n;
    for (const auto& [rev, n] : terminating) v.revisions[rev].terminating += n;
    for (auto it = v.revisions.begin(); it != v.revisions.end();) {
      const RevisionCounts& c = it->second;
      it = c.slots == 0 && c.terminating == 0 ? v.revisions.erase(it) : std::next(it);
    }
    return v;
  }
  int64_t Total() const {
    int64_t n = 0;
    for (const auto* m : {&ready, &pending, &terminating}) {
      for (const auto& [rev, k] : *m) n += k;
    }
    return n;
  }
  int64_t Available() const {
    int64_t n = 0;
    for (const auto& [rev, k] : ready) n += k;
    return n;
  }
  // One step of the world: terminating instances are gone, pending ones are ready, and the
  // plan's targets are applied (surplus removed, unready first; missing ones created).
  void Apply(const std::map<int64_t, int64_t>& targets) {
    terminating.clear();
    for (auto& [rev, n] : pending) ready[rev] += n;
    pending.clear();
    std::set<int64_t> revs;
    for (const auto& [rev, n] : ready) revs.insert(rev);
    for (const auto& [rev, n] : targets) revs.insert(rev);
    for (int64_t rev : revs) {
      int64_t want = targets.count(rev) ? targets.at(rev) : 0;
      int64_t have = ready[rev];
      if (have > want) {
        ready[rev] = want;
        terminating[rev] += have - want;
      } else if (have < want) {
        pending[rev] += want - have;
      }
    }
  }
};

Deployment MakeDeployment(int64_t replicas, model::Strategy s) {
  Deployment d;
  d.name = "web";
  d.replicas = replicas;
  d.strategy_spec = std::move(s);
  d.revision = d.stable_revision = d.latest_revision = 1;
  return d;
}

model::Strategy Rolling(IntOrPercent surge, IntOrPercent unavailable) {
  model::Strategy s;
  s.type = StrategyType::kRolling;
  s.max_surge = surge;
  s.max_unavailable = unavailable;
  return s;
}

// Starts a rollout to revision 2 of a deployment whose revision 1 is fully up.
void NewRevision(Deployment& d, Fleet& fleet) {
  fleet.ready[1] = d.replicas;
  d.revision = d.latest_revision = 2;
  StartRollout(d, kT0, "test");
}

struct RollingCase {
  int64_t replicas;
  IntOrPercent surge, unavailable;
};

class RollingBounds : public ::testing::TestWithParam<RollingCase> {};

TEST_P(RollingBounds, NeverAboveSurgeNorBelowUnavailableAndCompletes) {
  const RollingCase& c = GetParam();
  Deployment d = MakeDeployment(c.replicas, Rolling(c.surge, c.unavailable));
  model::Fenceposts f = model::ResolveFenceposts(c.surge, c.unavailable, c.replicas);
  Fleet fleet;
  NewRevision(d, fleet);
  int steps = 0;
  for (; steps < 200 && d.stable_revision != 2; ++steps) {
    RolloutPlan plan = PlanRollout(d, fleet.View(), kT0 + absl::Seconds(steps), nullptr);
    fleet.Apply(plan.targets);
    EXPECT_LE(fleet.Total(), c.replicas + f.max_surge) << "step " << steps;
    EXPECT_GE(fleet.Available(), c.replicas - f.max_unavailable) << "step " << steps;
  }
  EXPECT_EQ(d.stable_revision, 2);
  EXPECT_EQ(d.rollout.phase, "Complete");
  EXPECT_EQ(fleet.ready[2] + fleet.pending[2], c.replicas);
  EXPECT_EQ(fleet.ready[1], 0);
}

INSTANTIATE_TEST_SUITE_P(
    KubernetesExamples, RollingBounds,
    ::testing::Values(RollingCase{10, {25, true}, {25, true}},   // 3 / 2
                      RollingCase{10, {1, false}, {0, false}},   // one at a time
                      RollingCase{10, {0, false}, {1, false}},   // replace in place
                      RollingCase{100, {25, true}, {0, false}},  // the benchmark's
                      RollingCase{3, {50, true}, {50, true}},
                      RollingCase{1, {25, true}, {25, true}},    // 1 / 0
                      RollingCase{5, {0, true}, {0, true}}));    // fencepost: unavailable 1

TEST(Rolling, UnhealthyOldInstancesGoFirst) {
  Deployment d = MakeDeployment(4, Rolling({0, false}, {1, false}));
  d.revision = d.latest_revision = 2;
  StartRollout(d, kT0, "test");
  RolloutView v;
  v.revisions[1] = {4, 2, 2, 0};  // two of the old instances are not ready
  RolloutPlan plan = PlanRollout(d, v, kT0, nullptr);
  // maxScaledDown = 4 - 3 - 0 = 1 ... the unready ones cost nothing: cleaned first.
  EXPECT_EQ(plan.targets[1], 3);
  EXPECT_EQ(plan.targets[2], 0);
}

TEST(Rolling, ReplicasChangedMidRolloutScaleProportionally) {
  Deployment d = MakeDeployment(10, Rolling({3, false}, {2, false}));
  d.revision = d.latest_revision = 2;
  StartRollout(d, kT0, "test");
  RolloutView v;
  v.revisions[1] = {8, 8, 8, 0};
  v.revisions[2] = {5, 5, 5, 0};
  d.rollout.replicas = 10;
  d.replicas = 20;  // allowed 13 -> 23: +10 spread 8:5
  RolloutPlan plan = PlanRollout(d, v, kT0, nullptr);
  EXPECT_EQ(plan.targets[1] + plan.targets[2], 23);
  EXPECT_EQ(plan.targets[1], 15);  // 8 * 23 / 13 = 14, plus the leftover 1 (the largest)
  EXPECT_EQ(plan.targets[2], 8);   // 5 * 23 / 13 = 8
}

TEST(Recreate, StopsEveryOldInstanceBeforeStartingNewOnes) {
  model::Strategy s;
  s.type = StrategyType::kRecreate;
  Deployment d = MakeDeployment(5, s);
  Fleet fleet;
  NewRevision(d, fleet);
  int steps = 0;
  for (; steps < 20 && d.stable_revision != 2; ++steps) {
    RolloutPlan plan = PlanRollout(d, fleet.View(), kT0, nullptr);
    EXPECT_FALSE(plan.targets[2] > 0 && (fleet.ready[1] > 0 || fleet.terminating[1] > 0));
    fleet.Apply(plan.targets);
  }
  EXPECT_EQ(d.stable_revision, 2);
}

model::Strategy Canary(std::vector<CanaryStep> steps) {
  model::Strategy s;
  s.type = StrategyType::kCanary;
  s.steps = std::move(steps);
  return s;
}
CanaryStep Weight(int64_t w) {
  CanaryStep s;
  s.kind = CanaryStep::Kind::kSetWeight;
  s.weight = w;
  return s;
}
CanaryStep Pause(std::optional<double> seconds = std::nullopt) {
  CanaryStep s;
  s.kind = CanaryStep::Kind::kPause;
  s.pause_s = seconds;
  return s;
}
CanaryStep Analysis(double max_error_rate) {
  CanaryStep s;
  s.kind = CanaryStep::Kind::kAnalysis;
  s.analysis.interval_s = 10;
  s.analysis.count = 2;
  s.analysis.min_samples = 10;
  s.analysis.max_error_rate = max_error_rate;
  return s;
}

// Plans and applies until nothing changes any more (at most `limit` steps).
void Settle(Deployment& d, Fleet& fleet, absl::Time now, const StatsFn& stats = nullptr,
            int limit = 20) {
  for (int i = 0; i < limit; ++i) fleet.Apply(PlanRollout(d, fleet.View(), now, stats).targets);
}

TEST(Canary, StepsSizeTheCanaryAndSplitTasksByWeight) {
  Deployment d = MakeDeployment(10, Canary({Weight(20), Pause(), Weight(50), Pause(30)}));
  Fleet fleet;
  NewRevision(d, fleet);
  Settle(d, fleet, kT0);
  EXPECT_EQ(d.rollout.phase, "Paused");
  EXPECT_EQ(d.rollout.pause_reason, "step");
  EXPECT_EQ(d.rollout.step_index, 1);
  RolloutPlan plan = PlanRollout(d, fleet.View(), kT0, nullptr);
  EXPECT_EQ(plan.targets[1], 10);  // the stable revision stays whole
  EXPECT_EQ(plan.targets[2], 2);   // ceil(10 * 20 / 100)
  EXPECT_EQ(plan.routing.canary_revision, 2);
  EXPECT_EQ(plan.routing.weights[2], 20);
  EXPECT_EQ(plan.routing.weights[1], 80);

  ASSERT_TRUE(PromoteRollout(d, false, kT0).ok());
  Settle(d, fleet, kT0);
  EXPECT_EQ(d.rollout.step_index, 3);  // at the timed pause
  EXPECT_EQ(fleet.ready[2], 5);
  EXPECT_TRUE(d.rollout.pause_until.has_value());
  Settle(d, fleet, kT0 + absl::Seconds(31));
  EXPECT_EQ(d.stable_revision, 2);
  EXPECT_EQ(d.rollout.phase, "Complete");
  EXPECT_EQ(fleet.ready[1], 0);
  EXPECT_EQ(fleet.ready[2], 10);
}

tasks::WindowStats Stats(int64_t count, double error_rate) {
  tasks::WindowStats s;
  s.count = count;
  s.failed = static_cast<int64_t>(count * error_rate);
  s.succeeded = count - s.failed;
  s.error_rate = error_rate;
  s.success_rate = 1 - error_rate;
  return s;
}

TEST(Canary, FailedAnalysisRollsBackWithAutoRollback) {
  model::Strategy s = Canary({Weight(50), Analysis(0.2), Weight(100)});
  s.auto_rollback = true;
  Deployment d = MakeDeployment(4, s);
  Fleet fleet;
  NewRevision(d, fleet);
  StatsFn stats = [](int64_t rev, absl::Duration) {
    return rev == 2 ? Stats(50, 0.6) : Stats(50, 0.0);
  };
  Settle(d, fleet, kT0, stats);
  ASSERT_EQ(d.rollout.analysis->phase, "Running");
  RolloutPlan plan = PlanRollout(d, fleet.View(), kT0 + absl::Seconds(10), stats);
  EXPECT_EQ(d.revision, 1);  // the template went back
  EXPECT_EQ(plan.effects.revert_to, 1);
  EXPECT_EQ(d.rollout.phase, "RollingBack");
  bool rolled_back = false;
  for (const auto& e : plan.effects.events) rolled_back |= e.kind == "RolledBack";
  EXPECT_TRUE(rolled_back);
  EXPECT_EQ(plan.targets[2], 0);  // the stable revision is whole: the canary goes at once
  EXPECT_TRUE(plan.routing.weights.empty());
  fleet.Apply(plan.targets);
  Settle(d, fleet, kT0 + absl::Seconds(11), stats);
  EXPECT_EQ(d.rollout.phase, "Complete");
  EXPECT_EQ(fleet.ready[2], 0);
}

TEST(Canary, FailedAnalysisWithoutAutoRollbackAborts) {
  Deployment d = MakeDeployment(4, Canary({Weight(50), Analysis(0.2)}));
  Fleet fleet;
  NewRevision(d, fleet);
  StatsFn stats = [](int64_t rev, absl::Duration) { return Stats(50, rev == 2 ? 0.6 : 0); };
  Settle(d, fleet, kT0, stats);
  Settle(d, fleet, kT0 + absl::Seconds(10), stats);
  EXPECT_TRUE(d.rollout.aborted);
  EXPECT_EQ(d.rollout.phase, "Degraded");
  EXPECT_EQ(d.revision, 2);  // the template stays; the next change starts over
  EXPECT_EQ(fleet.ready[2], 0);
  EXPECT_EQ(fleet.ready[1], 4);
}

TEST(Canary, TooFewSamplesIsInconclusiveAndPausesForAHuman) {
  Deployment d = MakeDeployment(4, Canary({Weight(50), Analysis(0.2)}));
  Fleet fleet;
  NewRevision(d, fleet);
  StatsFn stats = [](int64_t, absl::Duration) { return Stats(3, 0); };
  Settle(d, fleet, kT0, stats);
  Settle(d, fleet, kT0 + absl::Seconds(10), stats);
  Settle(d, fleet, kT0 + absl::Seconds(20), stats);
  EXPECT_EQ(d.rollout.phase, "Paused");
  EXPECT_EQ(d.rollout.pause_reason, "inconclusive");
  EXPECT_EQ(d.rollout.analysis->phase, "Inconclusive");
  ASSERT_TRUE(ResumeRollout(d, kT0 + absl::Seconds(21)).ok());
  Settle(d, fleet, kT0 + absl::Seconds(21), stats);
  EXPECT_EQ(d.stable_revision, 2);
}

TEST(Canary, RelativeToStableUsesOneOverNWhenStableHadNoErrors) {
  CanaryStep a = Analysis(1.0);
  a.analysis.max_error_rate.reset();
  a.analysis.relative_to_stable.error_rate_ratio = 2;
  Deployment d = MakeDeployment(2, Canary({Weight(50), a}));
  Fleet fleet;
  NewRevision(d, fleet);
  // 1 error in 100 vs a stable with none in 100: 0.01 <= 2 x 0.01, passes.
  StatsFn stats = [](int64_t rev, absl::Duration) { return Stats(100, rev == 2 ? 0.01 : 0); };
  Settle(d, fleet, kT0, stats);
  Settle(d, fleet, kT0 + absl::Seconds(10), stats);
  Settle(d, fleet, kT0 + absl::Seconds(20), stats);
  EXPECT_EQ(d.stable_revision, 2);
}

TEST(BlueGreen, PreviewGetsNoRoutedTasksUntilPromotedThenOldStaysForTheDelay) {
  model::Strategy s;
  s.type = StrategyType::kBlueGreen;
  s.scale_down_delay_s = 60;
  Deployment d = MakeDeployment(3, s);
  Fleet fleet;
  NewRevision(d, fleet);
  Settle(d, fleet, kT0);
  EXPECT_EQ(d.rollout.pause_reason, "preview");
  RolloutPlan plan = PlanRollout(d, fleet.View(), kT0, nullptr);
  EXPECT_EQ(plan.routing.stable_revision, 1);
  EXPECT_EQ(plan.routing.preview_revision, 2);
  EXPECT_TRUE(plan.routing.weights.empty());
  EXPECT_EQ(fleet.ready[2], 3);

  auto plain = PromoteRollout(d, false, kT0);
  ASSERT_TRUE(plain.ok());
  plan = PlanRollout(d, fleet.View(), kT0, nullptr);
  EXPECT_EQ(d.stable_revision, 2);  // switched at once: the preview was already full
  EXPECT_EQ(plan.routing.stable_revision, 2);
  EXPECT_EQ(plan.targets[1], 3);    // kept for scale_down_delay_s
  fleet.Apply(plan.targets);
  Settle(d, fleet, kT0 + absl::Seconds(61));
  EXPECT_EQ(fleet.ready[1], 0);
}

TEST(BlueGreen, AutoPromoteAfterTheDelay) {
  model::Strategy s;
  s.type = StrategyType::kBlueGreen;
  s.auto_promote = true;
  s.auto_promote_after_s = 30;
  Deployment d = MakeDeployment(2, s);
  Fleet fleet;
  NewRevision(d, fleet);
  Settle(d, fleet, kT0);
  EXPECT_EQ(d.stable_revision, 1);
  Settle(d, fleet, kT0 + absl::Seconds(31));
  EXPECT_EQ(d.stable_revision, 2);
}

TEST(Deadline, NoProgressFailsAndAutoRollbackReturnsToStable) {
  model::Strategy s = Rolling({1, false}, {0, false});
  s.progress_deadline_s = 60;
  s.auto_rollback = true;
  Deployment d = MakeDeployment(2, s);
  d.revision = d.latest_revision = 2;
  StartRollout(d, kT0, "test");
  RolloutView v;
  v.revisions[1] = {2, 2, 2, 0};
  v.revisions[2] = {1, 0, 0, 0};  // never becomes ready
  PlanRollout(d, v, kT0, nullptr);
  PlanRollout(d, v, kT0 + absl::Seconds(30), nullptr);
  EXPECT_EQ(d.revision, 2);
  RolloutPlan plan = PlanRollout(d, v, kT0 + absl::Seconds(61), nullptr);
  EXPECT_EQ(d.revision, 1);
  EXPECT_EQ(plan.effects.revert_to, 1);
  EXPECT_EQ(plan.targets[2], 0);
  ASSERT_FALSE(plan.effects.outcomes.empty());
  EXPECT_EQ(plan.effects.outcomes.front().outcome, "RolledBack");
}

TEST(Deadline, WithoutAutoRollbackTheRolloutIsFailedAndKeepsTrying) {
  model::Strategy s = Rolling({1, false}, {0, false});
  s.progress_deadline_s = 60;
  Deployment d = MakeDeployment(2, s);
  d.revision = d.latest_revision = 2;
  StartRollout(d, kT0, "test");
  RolloutView v;
  v.revisions[1] = {2, 2, 2, 0};
  v.revisions[2] = {1, 0, 0, 0};
  PlanRollout(d, v, kT0, nullptr);
  PlanRollout(d, v, kT0 + absl::Seconds(61), nullptr);
  EXPECT_EQ(d.rollout.phase, "Failed");
  EXPECT_EQ(d.revision, 2);
}

TEST(Verbs, AnswerConflictWhenTheyDoNotApply) {
  Deployment d = MakeDeployment(2, Rolling({1, false}, {0, false}));
  auto st = PromoteRollout(d, false, kT0);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("no rollout"));
  EXPECT_FALSE(PauseRollout(d, kT0).ok());
  EXPECT_FALSE(AbortRollout(d, kT0).ok());
  EXPECT_FALSE(ResumeRollout(d, kT0).ok());

  d.revision = 2;
  StartRollout(d, kT0, "test");
  st = PromoteRollout(d, false, kT0);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("no steps"));
  ASSERT_TRUE(PauseRollout(d, kT0).ok());
  EXPECT_EQ(d.rollout.phase, "Paused");
  ASSERT_TRUE(ResumeRollout(d, kT0).ok());
  ASSERT_TRUE(AbortRollout(d, kT0).ok());
  EXPECT_EQ(d.rollout.phase, "Degraded");
  EXPECT_FALSE(AbortRollout(d, kT0).ok());
}

TEST(Verbs, PausedRollingHoldsEverySize) {
  Deployment d = MakeDeployment(4, Rolling({1, false}, {0, false}));
  Fleet fleet;
  NewRevision(d, fleet);
  ASSERT_TRUE(PauseRollout(d, kT0).ok());
  RolloutPlan plan = PlanRollout(d, fleet.View(), kT0, nullptr);
  EXPECT_EQ(plan.targets[1], 4);
  EXPECT_EQ(plan.targets[2], 0);
}

TEST(Drained, EverythingGoesToZeroAndTheRolloutWaits) {
  Deployment d = MakeDeployment(4, Rolling({1, false}, {0, false}));
  Fleet fleet;
  NewRevision(d, fleet);
  d.drained = true;
  RolloutPlan plan = PlanRollout(d, fleet.View(), kT0, nullptr);
  EXPECT_EQ(plan.targets[1], 0);
  EXPECT_EQ(d.stable_revision, 1);
}

}  // namespace
}  // namespace palm::controller
