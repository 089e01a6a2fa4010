// Supervisor: revisions and rollouts (the planner in rollout.h decides; this applies).
#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "palm/base/error.h"
#include "palm/controller/policy.h"
#include "palm/controller/supervisor.h"
#include "palm/controller/supervisor_live.h"
#include "palm/model/codec.h"

namespace palm::controller {

using model::Deployment;
using model::Instance;
using model::InstanceState;
using model::Json;
using model::Revision;

namespace {

store::RevisionRow Row(const Revision& r) {
  return {r.tenant, r.deployment, r.number, model::ToJson(r)};
}

}  // namespace

// ---- Revisions ------------------------------------------------------------------------

void Supervisor::NewRevision(Deployment& d, const std::string& cause) {
  absl::Time now = clock_.Now();
  Revision r;
  r.tenant = d.tenant;
  r.deployment = d.name;
  r.number = ++d.latest_revision;
  r.spec = d.spec;
  r.config = d.config;
  r.env = d.env;
  r.change_cause = cause;
  r.created_at = now;
  r.deployed_at = now;
  pending_.put_revisions.push_back(Row(r));
  d.revision = r.number;
  revisions_[{d.tenant, d.name}][r.number] = std::move(r);
}

void Supervisor::CopyTemplate(Deployment& d, int64_t rev) const {
  auto dep = revisions_.find({d.tenant, d.name});
  if (dep == revisions_.end()) return;
  auto it = dep->second.find(rev);
  if (it == dep->second.end()) return;
  d.spec = it->second.spec;
  d.config = it->second.config;
  d.env = it->second.env;
}

Deployment Supervisor::TemplateFor(const Deployment& d, int64_t rev) const {
  Deployment t = d;
  if (rev != d.revision) CopyTemplate(t, rev);
  return t;
}

void Supervisor::RecordEffects(const Deployment& d, const RolloutEffects& fx) {
  for (const RolloutEvent& e : fx.events) {
    Emit(e.severity.c_str(), e.kind.c_str(), "deployment", d.name, d.name, d.tenant, e.message,
         "system");
  }
  auto& revs = revisions_[{d.tenant, d.name}];
  for (const OutcomeChange& o : fx.outcomes) {
    auto it = revs.find(o.revision);
    if (it == revs.end()) continue;
    it->second.outcome = o.outcome;
    it->second.outcome_message = o.message;
    it->second.outcome_at = clock_.Now();
    pending_.put_revisions.push_back(Row(it->second));
  }
}

void Supervisor::PruneRevisions(const Deployment& d) {
  DeploymentKey key{d.tenant, d.name};
  auto& revs = revisions_[key];
  // Only revisions beyond the limit can go: most passes have nothing to look at.
  if (static_cast<int64_t>(revs.size()) <= d.revision_history_limit) return;
  std::set<int64_t> in_use = {d.revision, d.stable_revision, d.rollout.to_revision,
                              d.rollout.scale_down_revision};
  for (const Live* live : InstancesOf(key)) in_use.insert(live->inst.revision);
  int64_t kept = 0;
  for (auto it = revs.rbegin(); it != revs.rend();) {
    if (in_use.count(it->first) || kept++ < d.revision_history_limit) {
      ++it;
      continue;
    }
    pending_.DeleteRevision(Row(it->second));
    it = std::make_reverse_iterator(revs.erase(std::next(it).base()));
  }
}

absl::StatusOr<std::vector<Revision>> Supervisor::History(const DeploymentKey& key) const {
  PALM_RETURN_IF_ERROR(GetDeployment(key).status());
  std::vector<Revision> out;
  if (auto it = revisions_.find(key); it != revisions_.end()) {
    for (const auto& [n, r] : it->second) out.push_back(r);
  }
  return out;
}

// ---- Planning -------------------------------------------------------------------------

RolloutView Supervisor::Observe(const DeploymentKey& key, const Deployment& d,
                                absl::Time now) const {
  RolloutView view;
  absl::Duration min_ready = absl::Seconds(d.strategy_spec.min_ready_s);
  for (const Live* live : InstancesOf(key)) {
    const Instance& in = live->inst;
    RevisionCounts& c = view.revisions[in.revision];
    if (live->removing) {
      if (in.pid > 0) ++c.terminating;
      continue;
    }
    // Draining and stopping slots are on their way out too (an instance restart).
    ++c.slots;
    if (in.state != InstanceState::kRunning || !in.ready) continue;
    ++c.ready;
    absl::Time since = in.ready_since.value_or(now);
    if (now - since >= min_ready) {
      ++c.available;
    } else {
      view.next_available_at = std::min(view.next_available_at, since + min_ready);
    }
  }
  return view;
}

RolloutPlan Supervisor::PlanStep(Deployment& d, absl::Time now) {
  DeploymentKey key{d.tenant, d.name};
  Json before = model::ToJson(d.rollout);
  int64_t revision = d.revision, stable = d.stable_revision;
  StatsFn stats;
  if (tasks_) {
    stats = [this, &d](int64_t rev, absl::Duration window) {
      return tasks_->RevisionStats(d.tenant, d.name, rev, window);
    };
  }
  RolloutPlan plan = PlanRollout(d, Observe(key, d, now), now, stats);
  if (plan.effects.revert_to) CopyTemplate(d, *plan.effects.revert_to);
  RecordEffects(d, plan.effects);
  if (d.revision != revision || d.stable_revision != stable ||
      model::ToJson(d.rollout) != before) {
    pending_.put_deployments.push_back({d.tenant, d.name, model::ToJson(d)});
  }
  PruneRevisions(d);  // revisions whose last instances went away may go now
  targets_[key] = plan.targets;
  routing_[key] = plan.routing;
  if (tasks_) tasks_->SetDeployment(d.tenant, d.name, plan.routing);
  return plan;
}

bool Supervisor::ScaleRevisions(Deployment& d, const std::map<int64_t, int64_t>& targets) {
  DeploymentKey key{d.tenant, d.name};
  std::map<int64_t, std::vector<Live*>> by_rev;
  for (Live* live : InstancesOf(key)) {
    if (!live->removing) by_rev[live->inst.revision].push_back(live);
  }
  auto target = [&](int64_t rev) {
    auto it = targets.find(rev);
    return it == targets.end() ? int64_t{0} : it->second;
  };
  bool changed = false;
  // A drained deployment waits for its tasks however long they take (leases bound it).
  std::optional<absl::Duration> drain;
  if (d.drained) drain = absl::InfiniteDuration();
  for (auto& [rev, slots] : by_rev) {
    size_t keep = static_cast<size_t>(target(rev));
    if (slots.size() <= keep) continue;
    std::vector<const Instance*> view;
    for (Live* l : slots) view.push_back(&l->inst);
    std::vector<size_t> order = ScaleDownOrder(view, d.revision);
    for (size_t i = 0; i < slots.size() - keep; ++i) BeginStop(*slots[order[i]], true, false, drain);
    changed = true;
  }
  std::vector<std::string> created;
  for (const auto& [rev, want] : targets) {
    size_t have = by_rev.count(rev) ? by_rev[rev].size() : 0;
    for (size_t i = have; i < static_cast<size_t>(want); ++i) {
      created.push_back(NewInstance(d, rev).inst.id);
    }
  }
  if (!created.empty()) {
    pending_.put_deployments.push_back({d.tenant, d.name, model::ToJson(d)});
    Emit("info", "InstancesCreated", "deployment", d.name, d.name, d.tenant,
         absl::StrCat("deployment ", d.name, ": creating ", created.size(), " instances"),
         "system");
    changed = true;
  }
  return changed;
}

// ---- Verbs ----------------------------------------------------------------------------

absl::StatusOr<Deployment> Supervisor::SaveRollout(Deployment d, const RolloutEffects& fx) {
  DeploymentKey key{d.tenant, d.name};
  d.updated_at = clock_.Now();
  RecordEffects(d, fx);
  PruneRevisions(d);
  pending_.put_deployments.push_back({d.tenant, d.name, model::ToJson(d)});
  deployments_[key] = d;
  MarkDirty(key);
  PALM_RETURN_IF_ERROR(
      CommitMutation(absl::StrCat("the rollout change to deployment ", key.name)));
  return d;
}

absl::StatusOr<Deployment> Supervisor::PauseRollout(const DeploymentKey& key) {
  PALM_ASSIGN_OR_RETURN(const Deployment* found, GetDeployment(key));
  Deployment d = *found;
  PALM_ASSIGN_OR_RETURN(RolloutEffects fx, controller::PauseRollout(d, clock_.Now()));
  return SaveRollout(std::move(d), fx);
}

absl::StatusOr<Deployment> Supervisor::ResumeDeployment(const DeploymentKey& key) {
  PALM_ASSIGN_OR_RETURN(const Deployment* found, GetDeployment(key));
  Deployment d = *found;
  if (d.drained) {
    d.drained = false;
    return SaveDeployment(std::move(d), "DeploymentResumed",
                          absl::StrCat("deployment ", key.name, " resumed"));
  }
  PALM_ASSIGN_OR_RETURN(RolloutEffects fx, controller::ResumeRollout(d, clock_.Now()));
  return SaveRollout(std::move(d), fx);
}

absl::StatusOr<Deployment> Supervisor::PromoteRollout(const DeploymentKey& key, bool full) {
  PALM_ASSIGN_OR_RETURN(const Deployment* found, GetDeployment(key));
  Deployment d = *found;
  PALM_ASSIGN_OR_RETURN(RolloutEffects fx, controller::PromoteRollout(d, full, clock_.Now()));
  return SaveRollout(std::move(d), fx);
}

absl::StatusOr<Deployment> Supervisor::AbortRollout(const DeploymentKey& key) {
  PALM_ASSIGN_OR_RETURN(const Deployment* found, GetDeployment(key));
  Deployment d = *found;
  PALM_ASSIGN_OR_RETURN(RolloutEffects fx, controller::AbortRollout(d, clock_.Now()));
  return SaveRollout(std::move(d), fx);
}

absl::StatusOr<Deployment> Supervisor::UndoRollout(const DeploymentKey& key,
                                                   std::optional<int64_t> to) {
  PALM_ASSIGN_OR_RETURN(const Deployment* found, GetDeployment(key));
  Deployment d = *found;
  auto& revs = revisions_[key];
  int64_t target = 0;
  if (to) {
    if (!revs.count(*to)) {
      bool pruned = *to >= 1 && *to <= d.latest_revision;
      return NotFound("REVISION_NOT_FOUND",
                      pruned ? absl::StrCat("revision ", *to, " of deployment ", d.name,
                                            " was pruned (revision_history_limit ",
                                            d.revision_history_limit, ")")
                             : absl::StrCat("deployment ", d.name, " has no revision ", *to,
                                            " (the latest is ", d.latest_revision, ")"),
                      absl::StrCat("`palm deployment history ", d.name,
                                   "` lists the revisions kept"));
    }
    target = *to;
  } else if (d.revision != d.stable_revision) {
    target = d.stable_revision;
  } else {
    // The revision deployed most recently before the current one.
    absl::Time best = absl::InfinitePast();
    for (const auto& [n, r] : revs) {
      absl::Time at = r.deployed_at.value_or(r.created_at);
      if (n != d.revision && at >= best) {
        best = at;
        target = n;
      }
    }
    if (target == 0) {
      return Conflict("NO_PREVIOUS_REVISION",
                   absl::StrCat("deployment ", d.name, " has no revision before ", d.revision),
                   "`palm deployment history` lists the revisions kept");
    }
  }
  if (target == d.revision) {
    return Conflict("ALREADY_AT_REVISION",
                 absl::StrCat("deployment ", d.name, " is already at revision ", target),
                 absl::StrCat("`palm deployment history ", d.name, "` lists the others"));
  }
  int64_t from = d.revision;
  absl::Time now = clock_.Now();
  RolloutEffects fx;
  if (RolloutActive(d) && from != d.stable_revision) {
    fx.outcomes.push_back({from, "RolledBack", absl::StrCat("undo to revision ", target)});
  }
  CopyTemplate(d, target);
  d.revision = target;
  Revision& r = revs[target];
  r.deployed_at = now;
  pending_.put_revisions.push_back(Row(r));
  // Still fully available (blue-green within scale_down_delay_s): it takes over at once.
  RolloutView view = Observe(key, d, now);
  auto it = view.revisions.find(target);
  if (it != view.revisions.end() && it->second.available >= d.replicas) {
    d.stable_revision = target;
  }
  RolloutEffects start = StartRollout(d, now, absl::StrCat("undo from revision ", from));
  fx.events.push_back({"info", "RolledBack",
                       absl::StrCat("deployment ", d.name, ": undo from revision ", from,
                                    " to revision ", target)});
  fx.events.insert(fx.events.end(), start.events.begin(), start.events.end());
  fx.outcomes.insert(fx.outcomes.end(), start.outcomes.begin(), start.outcomes.end());
  return SaveRollout(std::move(d), fx);
}

absl::StatusOr<Deployment> Supervisor::RestartRollout(const DeploymentKey& key) {
  PALM_ASSIGN_OR_RETURN(const Deployment* found, GetDeployment(key));
  Deployment d = *found;
  NewRevision(d, "restart");
  RolloutEffects fx = StartRollout(d, clock_.Now(), "restart");
  return SaveRollout(std::move(d), fx);
}

}  // namespace palm::controller
