// The rollout planner: pure decisions of the deployment controller for moving a deployment
// from its stable revision to its current one with its strategy (rolling, recreate,
// blue-green, canary), as Kubernetes' deployment controller and Argo Rollouts do.
//
// The supervisor observes how many instances each revision has (RolloutView), calls
// PlanRollout, and applies the plan: it sizes each revision to its target (creating or
// removing instances; unhealthy ones go first), gives the task engine the routing table,
// and persists the deployment (whose `rollout` state PlanRollout advanced) with the plan's
// events in one transaction. The plan is a function of the persisted state, the view and
// the time, so a daemon killed mid-rollout resumes where it stood.
//
// Semantics (docs/api.md "Rollouts"):
// - Rolling: Kubernetes' exact arithmetic. The new revision grows while the total (every
//   instance still holding a process, including those stopping) stays <= replicas +
//   max_surge; old revisions shrink, unhealthy instances first, while the available
//   instances stay >= replicas - max_unavailable. A replicas change mid-rollout is spread
//   over the revisions in proportion to their size.
// - Recreate: every old instance is gone before the new revision starts.
// - Canary: steps set_weight / pause / analysis; the stable revision stays at full size,
//   the canary has CanaryReplicas(weight); tasks split by weight.
// - Blue-green: the preview runs at preview_replicas (default replicas) and gets no routed
//   task; promotion (manual, or auto_promote after auto_promote_after_s, after a passing
//   pre_promotion_analysis) scales it to full, then switches all routing at once; the old
//   revision stays scaled up for scale_down_delay_s.
// - A rollout that makes no progress for progress_deadline_s (paused time does not count)
//   is Failed; with auto_rollback the template returns to the stable revision (revert_to)
//   and the planner rolls back to it. A Failed analysis aborts (auto_rollback: rolls back);
//   an Inconclusive one pauses for a human.
// Thread-safety: pure functions of their arguments.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "palm/model/objects.h"
#include "palm/tasks/engine.h"

namespace palm::controller {

// What the supervisor sees of one revision's instances.
struct RevisionCounts {
  int64_t slots = 0;        // instances not being removed (Kubernetes' ReplicaSet size)
  int64_t ready = 0;        // Running and ready
  int64_t available = 0;    // ready for at least strategy.min_ready_s
  int64_t terminating = 0;  // being removed, process still there
};

struct RolloutView {
  std::map<int64_t, RevisionCounts> revisions;  // every revision that has instances
  // When the next ready instance becomes available (min_ready_s), if any.
  absl::Time next_available_at = absl::InfiniteFuture();
};

// A revision's task results over the last `window` (the task engine's RevisionStats).
using StatsFn = std::function<tasks::WindowStats(int64_t revision, absl::Duration window)>;

struct RolloutEvent {
  std::string severity;  // info | warning | error
  std::string kind;      // RolloutStarted, RolloutStep, AnalysisFailed, RolledBack, ...
  std::string message;
};

// A revision's outcome in the history changed.
struct OutcomeChange {
  int64_t revision = 0;
  std::string outcome;   // Progressing | Complete | Superseded | Aborted | RolledBack | Failed
  std::string message;
};

// What the planner decided besides the changes it made to the deployment.
struct RolloutEffects {
  std::vector<RolloutEvent> events;
  std::vector<OutcomeChange> outcomes;
  // The template must return to this revision (auto-rollback): the caller copies that
  // revision's spec, config and env into the deployment (revision is already set).
  std::optional<int64_t> revert_to;
};

struct RolloutPlan {
  std::map<int64_t, int64_t> targets;  // replicas wanted per revision; absent = 0
  tasks::RoutingTable routing;
  RolloutEffects effects;
  absl::Time wake_at = absl::InfiniteFuture();  // when to plan again at the latest
};

// One planning step for `d` (its rollout state, stable_revision and, on a rollback,
// revision are advanced in place).
RolloutPlan PlanRollout(model::Deployment& d, const RolloutView& view, absl::Time now,
                        const StatsFn& stats);

// The template changed to d.revision (apply, undo, restart): starts the rollout to it (or,
// when d.revision is the stable revision, the roll back to it). `cause` is for the event.
RolloutEffects StartRollout(model::Deployment& d, absl::Time now, const std::string& cause);

// True while a rollout is under way (progressing, paused, failed or rolling back).
bool RolloutActive(const model::Deployment& d);

// The verbs. Each changes `d` and says what to record, or answers 409 (kFailedPrecondition
// with code NO_ROLLOUT / NOT_PAUSED / NOTHING_TO_PROMOTE and the phase it is in) without
// changing anything.
absl::StatusOr<RolloutEffects> PauseRollout(model::Deployment& d, absl::Time now);
absl::StatusOr<RolloutEffects> ResumeRollout(model::Deployment& d, absl::Time now);
absl::StatusOr<RolloutEffects> PromoteRollout(model::Deployment& d, bool full, absl::Time now);
absl::StatusOr<RolloutEffects> AbortRollout(model::Deployment& d, absl::Time now);

// `status.rollout` of docs/api.md (without the per-revision counts, which the supervisor
// adds).
model::Json RolloutStatus(const model::Deployment& d);

}  // namespace palm::controller
