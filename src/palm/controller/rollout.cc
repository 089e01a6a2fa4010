#include "palm/controller/rollout.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "palm/base/clock.h"
#include "palm/base/error.h"

namespace palm::controller {

using model::CanaryStep;
using model::Deployment;
using model::Json;
using model::RolloutState;
using model::Strategy;
using model::StrategyType;

namespace {

constexpr char kProgressing[] = "Progressing";
constexpr char kPaused[] = "Paused";
constexpr char kComplete[] = "Complete";
constexpr char kFailed[] = "Failed";
constexpr char kRollingBack[] = "RollingBack";
constexpr char kDegraded[] = "Degraded";

int64_t Replicas(const Deployment& d) { return d.drained ? 0 : d.replicas; }

std::string StepName(const Strategy& s, int64_t index) {
  if (index < 0 || index >= static_cast<int64_t>(s.steps.size())) return "done";
  const CanaryStep& step = s.steps[index];
  switch (step.kind) {
    case CanaryStep::Kind::kSetWeight: return absl::StrCat("set_weight ", step.weight);
    case CanaryStep::Kind::kPause:
      return step.pause_s ? absl::StrCat("pause ", *step.pause_s, "s") : "pause";
    case CanaryStep::Kind::kAnalysis: return "analysis";
  }
  return "";
}

// "step 2/6 (pause)" for messages.
std::string StepLabel(const Strategy& s, int64_t index) {
  return absl::StrCat("step ", index + 1, "/", s.steps.size(), " (", StepName(s, index), ")");
}

void ClearPause(RolloutState& st) {
  st.pause_reason.clear();
  st.pause_until.reset();
}

// Moves a canary past its current step.
void NextStep(RolloutState& st) {
  ++st.step_index;
  ClearPause(st);
}

absl::Status Conflict409(const std::string& code, const Deployment& d, const std::string& what,
                         const std::string& hint) {
  std::string phase = d.rollout.phase.empty() ? "Complete" : d.rollout.phase;
  return Conflict(code, absl::StrCat("deployment ", d.name, " is ", phase, ": ", what), hint);
}

// Aborts the rollout of d.revision: back on the stable revision, Degraded until the next
// change. The one place an abort is decided, by a failure (`reason` says which) or the user.
RolloutEffects AbortWith(Deployment& d, const std::string& reason) {
  RolloutState& st = d.rollout;
  st.aborted = true;
  st.phase = kDegraded;
  st.weight = 0;
  st.user_paused = st.promote_full = st.promote_requested = false;
  ClearPause(st);
  st.message = absl::StrCat("deployment ", d.name, ": rollout of revision ", d.revision,
                            " aborted (", reason, "); back on revision ", d.stable_revision);
  RolloutEffects fx;
  fx.events.push_back({"warning", "RolloutAborted", st.message});
  fx.outcomes.push_back({d.revision, "Aborted", reason});
  return fx;
}

// Builds the plan for one deployment; see rollout.h for the semantics.
class Planner {
 public:
  Planner(Deployment& d, const RolloutView& view, absl::Time now, const StatsFn& stats)
      : d_(d), st_(d.rollout), s_(d.strategy_spec), view_(view), now_(now), stats_(stats) {}

  RolloutPlan Run() {
    for (const auto& [rev, c] : view_.revisions) plan_.targets[rev] = c.slots;
    plan_.wake_at = view_.next_available_at;
    if (d_.drained) {
      for (auto& [rev, n] : plan_.targets) n = 0;
      plan_.routing = Routing({d_.stable_revision});
      return std::move(plan_);
    }
    if (d_.revision == d_.stable_revision) {
      Steady();
    } else if (st_.aborted) {
      ConvergeOn(d_.stable_revision);
      st_.phase = kDegraded;
    } else {
      Advance();
    }
    st_.replicas = R();
    return std::move(plan_);
  }

 private:
  int64_t R() const { return Replicas(d_); }
  const RevisionCounts& Count(int64_t rev) const {
    static const RevisionCounts kNone;
    auto it = view_.revisions.find(rev);
    return it == view_.revisions.end() ? kNone : it->second;
  }
  void Emit(std::string severity, std::string kind, std::string message) {
    st_.message = message;
    plan_.effects.events.push_back({std::move(severity), std::move(kind), std::move(message)});
  }
  void Outcome(int64_t rev, std::string outcome, std::string message) {
    plan_.effects.outcomes.push_back({rev, std::move(outcome), std::move(message)});
  }
  void Wake(absl::Time t) { plan_.wake_at = std::min(plan_.wake_at, t); }
  // Every revision other than `keep` goes to zero.
  void ZeroExcept(std::initializer_list<int64_t> keep) {
    for (auto& [rev, n] : plan_.targets) {
      if (std::find(keep.begin(), keep.end(), rev) == keep.end()) n = 0;
    }
  }

  // Tasks go to the serving revisions in proportion to their ready instances, so each
  // ready instance gets an equal share (one revision: everything to it).
  tasks::RoutingTable Routing(std::vector<int64_t> serving) const {
    tasks::RoutingTable r;
    r.stable_revision = d_.stable_revision;
    if (serving.size() < 2) return r;
    for (int64_t rev : serving) {
      if (int64_t ready = Count(rev).ready; ready > 0) r.weights[rev] = static_cast<int>(ready);
    }
    if (r.weights.size() < 2) r.weights.clear();
    return r;
  }
  // ---- No rollout under way, or rolling back to the stable revision ----------------------
  void Steady() {
    int64_t stable = d_.stable_revision;
    int64_t kept = KeptForScaleDownDelay();
    bool others = false;
    for (const auto& [rev, c] : view_.revisions) {
      if (rev != stable && rev != kept && c.slots > 0) others = true;
    }
    if (others) {
      ConvergeOn(stable, kept);
      return;
    }
    ZeroExcept({stable, kept});
    plan_.targets[stable] = R();
    plan_.routing = Routing({stable});
    bool first = st_.phase == kProgressing;  // the deployment's first rollout
    if ((first || st_.phase == kRollingBack) && Count(stable).available >= R()) {
      st_.phase = kComplete;
      if (first) Outcome(stable, kComplete, absl::StrCat("rolled out to ", R(), " replicas"));
      Emit("info", "RolloutComplete",
           absl::StrCat("deployment ", d_.name, first ? ": revision " : ": back on revision ",
                        stable, " (", R(), " replicas available)"));
    }
  }

  // Blue-green after promotion: the old revision stays scaled up until scale_down_at.
  int64_t KeptForScaleDownDelay() {
    if (st_.scale_down_revision == 0 || !st_.scale_down_at) return 0;
    int64_t rev = st_.scale_down_revision;
    if (rev != d_.stable_revision && now_ < *st_.scale_down_at && Count(rev).slots > 0) {
      Wake(*st_.scale_down_at);
      plan_.targets[rev] = std::min(Count(rev).slots, R());
      return rev;
    }
    if (Count(rev).slots > 0 && rev != d_.stable_revision) {
      Emit("info", "RevisionScaledDown",
           absl::StrCat("deployment ", d_.name, ": revision ", rev,
                        " scaled down after scale_down_delay_s"));
    }
    st_.scale_down_revision = 0;
    st_.scale_down_at.reset();
    return 0;
  }

  // Moves every instance onto revision `target` (rolling, or recreate for that strategy),
  // leaving `kept` alone. Routing over what serves meanwhile.
  void ConvergeOn(int64_t target, int64_t kept = 0) {
    if (s_.type == StrategyType::kRecreate) {
      Recreate(target, kept);
    } else {
      RollTowards(target, kept);
    }
    // Revisions scaled to zero are on their way out: they get nothing new.
    std::vector<int64_t> serving;
    for (const auto& [rev, n] : plan_.targets) {
      if (rev != kept && n > 0) serving.push_back(rev);
    }
    plan_.routing = Routing(serving);
  }

  model::Fenceposts Fence() const {
    if (s_.type == StrategyType::kRolling) {
      return model::ResolveFenceposts(s_.max_surge, s_.max_unavailable, R());
    }
    // Canary and blue-green roll back (and finish) with the stable revision kept whole:
    // the new one may grow to full size next to it, nothing goes below what is available.
    return {R(), 0};
  }

  // Kubernetes' rolling update toward `target` (deployment/sync.go, rolling.go).
  void RollTowards(int64_t target, int64_t kept) {
    if (st_.user_paused) return;  // hold every size
    model::Fenceposts f = Fence();
    if (ScaleProportionally(target, f)) return;
    int64_t total = 0;
    for (const auto& [rev, c] : view_.revisions) {
      if (rev != kept) total += c.slots + c.terminating;
    }
    int64_t& grow = plan_.targets[target];
    grow = std::min(grow, R());
    int64_t up = std::min(R() + f.max_surge - total, R() - grow);
    if (up > 0) grow += up;

    std::vector<int64_t> olds;
    int64_t all = 0, available = 0;
    for (const auto& [rev, n] : plan_.targets) {
      if (rev == kept) continue;
      all += n;
      available += std::min(Count(rev).available, n);
      if (rev != target && n > 0) olds.push_back(rev);
    }
    int64_t min_available = R() - f.max_unavailable;
    int64_t new_unavailable = std::max<int64_t>(0, grow - Count(target).available);
    int64_t max_down = all - min_available - new_unavailable;
    if (max_down <= 0) return;
    // Unhealthy old instances first: removing them costs no availability.
    int64_t cleaned = 0;
    for (int64_t rev : olds) {
      int64_t& n = plan_.targets[rev];
      int64_t take = std::min(std::max<int64_t>(0, n - Count(rev).available), max_down - cleaned);
      n -= take;
      cleaned += take;
    }
    int64_t down = std::min(available - min_available, max_down - cleaned);
    for (int64_t rev : olds) {
      if (down <= 0) break;
      int64_t& n = plan_.targets[rev];
      int64_t take = std::min(n, down);
      n -= take;
      down -= take;
    }
  }

  // Kubernetes' proportional scaling: replicas changed while several revisions have
  // instances; each grows or shrinks in proportion to its size, the rest goes to the largest.
  bool ScaleProportionally(int64_t target, const model::Fenceposts& f) {
    int64_t prev = st_.replicas;
    if (prev <= 0 || prev == R() || s_.type != StrategyType::kRolling) return false;
    std::vector<int64_t> revs;
    int64_t current = 0;
    for (const auto& [rev, n] : plan_.targets) {
      if (n > 0) revs.push_back(rev);
      current += n;
    }
    if (revs.size() < 2) return false;
    int64_t prev_allowed = prev + model::Resolve(s_.max_surge, prev, /*round_up=*/true);
    int64_t allowed = R() + f.max_surge;
    int64_t delta = allowed - current;
    if (delta == 0 || prev_allowed <= 0) return false;
    // Largest first; the newest (the target) first among equals.
    std::sort(revs.begin(), revs.end(), [&](int64_t a, int64_t b) {
      int64_t na = plan_.targets[a], nb = plan_.targets[b];
      if (na != nb) return na > nb;
      return (a == target) > (b == target) || (a != target && b != target && a > b);
    });
    int64_t added = 0;
    for (int64_t rev : revs) {
      int64_t& n = plan_.targets[rev];
      int64_t want = n * allowed / prev_allowed - n;
      want = delta > 0 ? std::min(want, delta - added) : std::max(want, delta - added);
      n = std::max<int64_t>(0, n + want);
      added += want;
    }
    int64_t& largest = plan_.targets[revs.front()];
    largest = std::max<int64_t>(0, largest + delta - added);
    Emit("info", "RolloutStep",
         absl::StrCat("deployment ", d_.name, ": replicas changed from ", prev, " to ", R(),
                      " mid-rollout; revisions resized in proportion"));
    return true;
  }

  void Recreate(int64_t target, int64_t kept) {
    bool olds = false;
    for (const auto& [rev, c] : view_.revisions) {
      if (rev != target && rev != kept && (c.slots > 0 || c.terminating > 0)) olds = true;
    }
    ZeroExcept({kept});
    plan_.targets[target] = olds ? 0 : R();
  }

  // ---- A rollout to d.revision ------------------------------------------------------------
  void Advance() {
    int64_t target = d_.revision;
    switch (s_.type) {
      case StrategyType::kRolling:
      case StrategyType::kRecreate:
        ConvergeOn(target, KeptForScaleDownDelay());
        if (Converged(target)) Complete();
        break;
      case StrategyType::kCanary: Canary(); break;
      case StrategyType::kBlueGreen: BlueGreen(); break;
    }
    if (d_.revision != d_.stable_revision && !st_.aborted) {
      if (st_.phase != kFailed) {
        st_.phase = st_.user_paused || !st_.pause_reason.empty() ? kPaused : kProgressing;
      }
      CheckDeadline();
    }
  }

  bool Converged(int64_t target) const {
    for (const auto& [rev, c] : view_.revisions) {
      if (rev != target && rev != st_.scale_down_revision && c.slots > 0) return false;
    }
    const RevisionCounts& c = Count(target);
    return c.slots == R() && c.available >= R();
  }

  // The rollout reached its end: the new revision is the stable one.
  void Complete() {
    int64_t rev = d_.revision;
    d_.stable_revision = rev;
    st_.phase = kComplete;
    ClearPause(st_);
    st_.user_paused = st_.promote_full = st_.promote_requested = false;
    Outcome(rev, kComplete, absl::StrCat("rolled out to ", R(), " replicas"));
    Emit("info", "RolloutComplete",
         absl::StrCat("deployment ", d_.name, ": revision ", rev, " rolled out (", R(),
                      " replicas available)"));
    Steady();
  }

  // An automatic failure (analysis failed, deadline passed).
  void Fail(const std::string& reason) {
    if (s_.auto_rollback) {
      Rollback(reason);
    } else {
      RolloutEffects fx = AbortWith(d_, reason);
      auto& into = plan_.effects;
      into.events.insert(into.events.end(), fx.events.begin(), fx.events.end());
      into.outcomes.insert(into.outcomes.end(), fx.outcomes.begin(), fx.outcomes.end());
      ConvergeOn(d_.stable_revision);
    }
  }

  void Rollback(const std::string& reason) {
    int64_t failed = d_.revision;
    Outcome(failed, "RolledBack", reason);
    Emit("warning", "RolledBack",
         absl::StrCat("deployment ", d_.name, ": revision ", failed, " rolled back to ",
                      d_.stable_revision, ": ", reason));
    d_.revision = d_.stable_revision;
    plan_.effects.revert_to = d_.stable_revision;
    ClearPause(st_);
    st_.user_paused = st_.promote_full = st_.promote_requested = false;
    st_.weight = 0;
    st_.phase = kRollingBack;
    Steady();
  }

  // ---- Canary ---------------------------------------------------------------------------
  void Canary() {
    int64_t stable = d_.stable_revision, canary = d_.revision;
    if (!st_.user_paused && !st_.promote_full) {
      AdvanceSteps();
      if (d_.revision != canary || st_.aborted) return;  // rolled back or aborted
    }
    bool last = st_.promote_full || st_.step_index >= static_cast<int64_t>(s_.steps.size());
    int64_t kept = KeptForScaleDownDelay();
    ZeroExcept({stable, canary, kept});
    plan_.targets[stable] = R();
    plan_.targets[canary] = last ? R() : model::CanaryReplicas(s_, R(), st_.weight);
    plan_.routing = CanaryRouting(stable, canary);
    if (last && !st_.user_paused && Count(canary).available >= R()) {
      if (st_.weight != 100) {
        st_.weight = 100;
        Emit("info", "RolloutStep",
             absl::StrCat("deployment ", d_.name, ": canary revision ", canary,
                          " at full size; all tasks go to it"));
      }
      Complete();
    }
  }

  tasks::RoutingTable CanaryRouting(int64_t stable, int64_t canary) const {
    tasks::RoutingTable r;
    r.stable_revision = stable;
    r.canary_revision = canary;
    int64_t w = std::clamp<int64_t>(st_.weight, 0, 100);
    if (w > 0) {
      r.weights[canary] = static_cast<int>(w);
      if (w < 100) r.weights[stable] = static_cast<int>(100 - w);
    }
    return r;
  }

  void AdvanceSteps() {
    const int64_t n = static_cast<int64_t>(s_.steps.size());
    while (st_.step_index < n) {
      const CanaryStep& step = s_.steps[st_.step_index];
      std::string label = StepLabel(s_, st_.step_index);
      switch (step.kind) {
        case CanaryStep::Kind::kSetWeight: {
          int64_t size = model::CanaryReplicas(s_, R(), step.weight);
          if (st_.weight != step.weight) {
            st_.weight = step.weight;
            Emit("info", "RolloutStep",
                 absl::StrCat("deployment ", d_.name, ": ", label, ": ", step.weight,
                              "% of tasks to revision ", d_.revision, " (", size,
                              " canary replicas)"));
          }
          if (Count(d_.revision).available < size) {
            st_.message = absl::StrCat(label, ": waiting for ", size,
                                       " canary replicas to be available (",
                                       Count(d_.revision).available, " so far)");
            return;
          }
          NextStep(st_);
          break;
        }
        case CanaryStep::Kind::kPause:
          if (!step.pause_s) {
            waiting_ = true;
            if (st_.pause_reason != "step") {
              st_.pause_reason = "step";
              Emit("info", "RolloutPaused",
                   absl::StrCat("deployment ", d_.name, ": ", label,
                                ": paused until `palm deployment promote ", d_.name, "`"));
            }
            return;
          }
          if (!st_.pause_until) {
            st_.pause_until = now_ + absl::Seconds(*step.pause_s);
            Emit("info", "RolloutPaused",
                 absl::StrCat("deployment ", d_.name, ": ", label, ": pausing until ",
                              palm::FormatTime(*st_.pause_until)));
          }
          if (now_ < *st_.pause_until) {
            waiting_ = true;
            Wake(*st_.pause_until);
            return;
          }
          NextStep(st_);
          break;
        case CanaryStep::Kind::kAnalysis: {
          std::string phase = Analyze(step.analysis, "canary", st_.step_index);
          if (phase == "Running") return;
          if (phase == "Failed") {
            Fail(absl::StrCat("analysis failed at ", label, ": ", LastReasons()));
            return;
          }
          if (phase == "Inconclusive") {
            waiting_ = true;
            st_.pause_reason = "inconclusive";
            st_.message = absl::StrCat(label, ": analysis inconclusive (", LastReasons(),
                                       "); `palm deployment promote ", d_.name,
                                       "` goes on, `abort` goes back");
            return;
          }
          NextStep(st_);
          break;
        }
      }
    }
  }

  // ---- Blue-green -------------------------------------------------------------------------
  void BlueGreen() {
    int64_t active = d_.stable_revision, preview = d_.revision;
    int64_t size = s_.preview_replicas ? std::min(*s_.preview_replicas, R()) : R();
    int64_t kept = KeptForScaleDownDelay();
    ZeroExcept({active, preview, kept});
    plan_.targets[active] = R();
    plan_.targets[preview] = st_.promote_requested ? R() : size;
    plan_.routing = Routing({active});
    plan_.routing.preview_revision = preview;
    if (st_.user_paused) return;
    if (!st_.promote_requested) {
      if (Count(preview).available < size) {
        st_.message = absl::StrCat("waiting for the preview revision ", preview, ": ",
                                   Count(preview).available, "/", size, " available");
        return;
      }
      if (!st_.preview_ready_at) {
        st_.preview_ready_at = now_;
        Emit("info", "RolloutStep",
             absl::StrCat("deployment ", d_.name, ": preview revision ", preview, " ready (",
                          size, " replicas); it gets only tasks sent with --target preview"));
      }
      if (!PrePromotionPassed()) return;
      if (s_.auto_promote) {
        absl::Time at = *st_.preview_ready_at + absl::Seconds(s_.auto_promote_after_s);
        if (now_ < at) {
          waiting_ = true;
          Wake(at);
          st_.message = absl::StrCat("preview revision ", preview, " auto-promotes at ",
                                     palm::FormatTime(at));
          return;
        }
        st_.promote_requested = true;
        ClearPause(st_);
        Emit("info", "RolloutPromoted",
             absl::StrCat("deployment ", d_.name, ": preview revision ", preview,
                          " auto-promoted"));
        plan_.targets[preview] = R();
      } else {
        waiting_ = true;
        if (st_.pause_reason != "preview") {
          st_.pause_reason = "preview";
          Emit("info", "RolloutPaused",
               absl::StrCat("deployment ", d_.name, ": preview revision ", preview,
                            " ready; `palm deployment promote ", d_.name,
                            "` switches the tasks to it"));
        }
        return;
      }
    }
    if (Count(preview).available < R()) {
      st_.message = absl::StrCat("promoting revision ", preview, ": ",
                                 Count(preview).available, "/", R(), " available");
      return;
    }
    // Switch every task at once; the old revision stays for an instant undo.
    st_.scale_down_revision = active;
    st_.scale_down_at = now_ + absl::Seconds(s_.scale_down_delay_s);
    Complete();
  }

  // True when there is no pre-promotion analysis or it passed (or a human overrode it).
  bool PrePromotionPassed() {
    if (!s_.pre_promotion_analysis) return true;
    std::string phase = Analyze(*s_.pre_promotion_analysis, "pre_promotion", -1);
    if (phase == "Successful") return true;
    if (phase == "Failed") {
      Fail(absl::StrCat("pre-promotion analysis failed: ", LastReasons()));
    } else if (phase == "Inconclusive") {
      waiting_ = true;
      st_.pause_reason = "inconclusive";
      st_.message = absl::StrCat("pre-promotion analysis inconclusive (", LastReasons(),
                                 "); `palm deployment promote ", d_.name, "` promotes anyway");
    }
    return false;
  }

  // ---- Analysis ---------------------------------------------------------------------------
  // Runs (or goes on with) the analysis `kind`/`step`; returns its phase.
  std::string Analyze(const model::AnalysisSpec& spec, const std::string& kind, int64_t step) {
    auto& run = st_.analysis;
    if (!run || run->kind != kind || run->step != step) {
      run = model::AnalysisRun{};
      run->kind = kind;
      run->step = step;
      run->next_at = now_ + absl::Seconds(spec.interval_s);
      Emit("info", "RolloutStep",
           absl::StrCat("deployment ", d_.name, ": ", kind, " analysis of revision ",
                        d_.revision, " started (", spec.count, " measurements every ",
                        spec.interval_s, "s)"));
    }
    if (run->phase != "Running") return run->phase;
    waiting_ = true;
    if (now_ < *run->next_at) {
      Wake(*run->next_at);
      return run->phase;
    }
    Measure(spec, *run);
    if (run->failed > spec.failure_limit) {
      run->phase = "Failed";
    } else if (run->measurements >= spec.count) {
      run->phase = run->inconclusive > 0 ? "Inconclusive" : "Successful";
    }
    if (run->phase == "Running") {
      run->next_at = now_ + absl::Seconds(spec.interval_s);
      Wake(*run->next_at);
      return run->phase;
    }
    run->next_at.reset();
    std::string summary =
        absl::StrCat(run->successful, " successful, ", run->failed, " failed, ",
                     run->inconclusive, " inconclusive of ", run->measurements);
    Emit(run->phase == "Failed" ? "error" : (run->phase == "Inconclusive" ? "warning" : "info"),
         absl::StrCat("Analysis", run->phase),
         absl::StrCat("deployment ", d_.name, ": ", kind, " analysis of revision ",
                      d_.revision, " ", run->phase, " (", summary, ")",
                      run->phase == "Successful" ? "" : absl::StrCat(": ", LastReasons())));
    return run->phase;
  }

  void Measure(const model::AnalysisSpec& spec, model::AnalysisRun& run) {
    absl::Duration window = absl::Seconds(spec.interval_s);
    tasks::WindowStats cand = stats_ ? stats_(d_.revision, window) : tasks::WindowStats{};
    tasks::WindowStats base =
        stats_ ? stats_(d_.stable_revision, window) : tasks::WindowStats{};
    std::vector<std::string> reasons;
    std::string outcome = "Successful";
    if (cand.count < spec.min_samples) {
      outcome = "Inconclusive";
      reasons.push_back(absl::StrCat("only ", cand.count, " tasks in the last ", spec.interval_s,
                                     "s (min_samples ", spec.min_samples, ")"));
    } else {
      reasons = Violations(spec, cand, base);
      if (!reasons.empty()) outcome = "Failed";
    }
    ++run.measurements;
    if (outcome == "Successful") ++run.successful;
    if (outcome == "Failed") ++run.failed;
    if (outcome == "Inconclusive") ++run.inconclusive;
    run.last = {{"at", palm::FormatTime(now_)},
                {"outcome", outcome},
                {"reasons", reasons},
                {"window_s", spec.interval_s},
                {"candidate", cand.ToJson()},
                {"stable", base.ToJson()}};
    Emit(outcome == "Failed" ? "warning" : "info", "AnalysisMeasurement",
         absl::StrCat("deployment ", d_.name, ": revision ", d_.revision, " measurement ",
                      run.measurements, "/", spec.count, " ", outcome, ": ", cand.count,
                      " tasks, error rate ", cand.error_rate, ", p99 ", cand.p99_ms, " ms",
                      reasons.empty() ? "" : absl::StrCat(" (", absl::StrJoin(reasons, "; "), ")")));
  }

  static std::vector<std::string> Violations(const model::AnalysisSpec& spec,
                                             const tasks::WindowStats& cand,
                                             const tasks::WindowStats& base) {
    std::vector<std::string> out;
    if (spec.max_error_rate && cand.error_rate > *spec.max_error_rate) {
      out.push_back(absl::StrCat("error rate ", cand.error_rate, " > max_error_rate ",
                                 *spec.max_error_rate));
    }
    if (spec.min_success_rate && cand.success_rate < *spec.min_success_rate) {
      out.push_back(absl::StrCat("success rate ", cand.success_rate, " < min_success_rate ",
                                 *spec.min_success_rate));
    }
    if (spec.max_p99_latency_ms && cand.p99_ms > *spec.max_p99_latency_ms) {
      out.push_back(absl::StrCat("p99 ", cand.p99_ms, " ms > max_p99_latency_ms ",
                                 *spec.max_p99_latency_ms));
    }
    // Against the stable revision over the same window. A stable revision without errors
    // in n tasks is taken as 1/n (the resolution of what was seen), so one canary error
    // among many tasks is not an infinite ratio.
    const model::RelativeToStable& rel = spec.relative_to_stable;
    if (rel.error_rate_ratio && base.count > 0) {
      double baseline = std::max(base.error_rate, 1.0 / static_cast<double>(base.count));
      if (cand.error_rate > *rel.error_rate_ratio * baseline) {
        out.push_back(absl::StrCat("error rate ", cand.error_rate, " > ",
                                   *rel.error_rate_ratio, " x stable's ", base.error_rate));
      }
    }
    if (rel.p99_latency_ratio && base.count > 0 && base.p99_ms > 0 &&
        cand.p99_ms > *rel.p99_latency_ratio * base.p99_ms) {
      out.push_back(absl::StrCat("p99 ", cand.p99_ms, " ms > ", *rel.p99_latency_ratio,
                                 " x stable's ", base.p99_ms, " ms"));
    }
    return out;
  }

  std::string LastReasons() const {
    if (!st_.analysis || !st_.analysis->last.is_object()) return "no measurement";
    const Json& r = st_.analysis->last["reasons"];
    std::vector<std::string> parts;
    for (const Json& x : r) parts.push_back(x.get<std::string>());
    return parts.empty() ? "no threshold crossed" : absl::StrJoin(parts, "; ");
  }

  // ---- Progress deadline ------------------------------------------------------------------
  void CheckDeadline() {
    absl::Duration deadline = absl::Seconds(s_.progress_deadline_s);
    if (st_.user_paused || waiting_ || st_.phase == kFailed) {
      st_.last_progress_at = now_;  // time spent waiting on purpose does not count
      return;
    }
    std::string mark = absl::StrCat(st_.step_index, ":", st_.weight, ":",
                                    st_.promote_requested ? 1 : 0);
    for (const auto& [rev, c] : view_.revisions) {
      absl::StrAppend(&mark, "|", rev, "=", c.slots, "/", c.available);
    }
    if (mark != st_.progress_mark || !st_.last_progress_at) {
      st_.progress_mark = std::move(mark);
      st_.last_progress_at = now_;
    }
    absl::Time due = *st_.last_progress_at + deadline;
    if (now_ < due) {
      Wake(due);
      return;
    }
    std::string reason = absl::StrCat("no progress for ", s_.progress_deadline_s,
                                      "s (progress_deadline_s)");
    Emit("error", "ProgressDeadlineExceeded",
         absl::StrCat("deployment ", d_.name, ": rollout of revision ", d_.revision, ": ",
                      reason));
    if (s_.auto_rollback) {
      Rollback(reason);
    } else {
      st_.phase = kFailed;
      Outcome(d_.revision, kFailed, reason);
    }
  }

  Deployment& d_;
  RolloutState& st_;
  const Strategy& s_;
  const RolloutView& view_;
  absl::Time now_;
  const StatsFn& stats_;
  RolloutPlan plan_;
  bool waiting_ = false;  // the rollout waits on purpose (pause, analysis, promotion)
};

RolloutEffects One(std::string severity, std::string kind, std::string message) {
  RolloutEffects fx;
  fx.events.push_back({std::move(severity), std::move(kind), std::move(message)});
  return fx;
}

}  // namespace

bool RolloutActive(const Deployment& d) {
  if (d.rollout.phase == kRollingBack) return true;
  return d.revision != d.stable_revision && !d.rollout.aborted;
}

RolloutPlan PlanRollout(Deployment& d, const RolloutView& view, absl::Time now,
                        const StatsFn& stats) {
  return Planner(d, view, now, stats).Run();
}

RolloutEffects StartRollout(Deployment& d, absl::Time now, const std::string& cause) {
  RolloutEffects fx;
  RolloutState& old = d.rollout;
  bool superseded = old.to_revision != 0 && old.to_revision != d.revision &&
                    old.to_revision != d.stable_revision && !old.aborted &&
                    (old.phase == kProgressing || old.phase == kPaused || old.phase == kFailed);
  if (superseded) {
    fx.outcomes.push_back({old.to_revision, "Superseded",
                           absl::StrCat("replaced by revision ", d.revision,
                                        " before it completed")});
  }
  RolloutState st;
  st.scale_down_revision = old.scale_down_revision;
  st.scale_down_at = old.scale_down_at;
  st.replicas = Replicas(d);
  st.from_revision = d.stable_revision;
  st.to_revision = d.revision;
  st.started_at = st.last_progress_at = now;
  std::string strategy(model::ToString(d.strategy_spec.type));
  if (d.revision == d.stable_revision) {
    st.phase = kRollingBack;
    st.message = absl::StrCat("going back to revision ", d.revision, ": ", cause);
    fx.events.push_back({"info", "RolloutStarted",
                         absl::StrCat("deployment ", d.name, ": back to revision ",
                                      d.revision, " (", cause, ")")});
  } else {
    st.phase = kProgressing;
    st.message = absl::StrCat("rolling out revision ", d.revision, " (", strategy, ")");
    fx.outcomes.push_back({d.revision, kProgressing, cause});
    fx.events.push_back({"info", "RolloutStarted",
                         absl::StrCat("deployment ", d.name, ": rollout of revision ",
                                      d.revision, " started (", strategy, ", from revision ",
                                      d.stable_revision, "): ", cause)});
  }
  d.rollout = std::move(st);
  return fx;
}

absl::StatusOr<RolloutEffects> PauseRollout(Deployment& d, absl::Time) {
  if (!RolloutActive(d) || d.rollout.phase == kRollingBack) {
    return Conflict409("NO_ROLLOUT", d, "no rollout is under way to pause",
                       "a change of spec, config or env starts one");
  }
  if (d.rollout.user_paused) return RolloutEffects{};
  d.rollout.user_paused = true;
  d.rollout.phase = kPaused;
  d.rollout.message = "paused by the user; `palm deployment resume` goes on";
  return One("info", "RolloutPaused",
             absl::StrCat("deployment ", d.name, ": rollout of revision ", d.revision,
                          " paused by the user"));
}

absl::StatusOr<RolloutEffects> ResumeRollout(Deployment& d, absl::Time now) {
  RolloutState& st = d.rollout;
  std::string what;
  if (st.user_paused) {
    st.user_paused = false;
    what = "resumed";
  } else if (RolloutActive(d) && st.pause_reason == "preview") {
    st.promote_requested = true;
    ClearPause(st);
    what = "resumed: the preview is promoted";
  } else if (RolloutActive(d) && (st.pause_reason == "step" || st.pause_reason == "inconclusive")) {
    if (d.strategy_spec.type == StrategyType::kCanary) {
      NextStep(st);
    } else {
      if (st.analysis) st.analysis->phase = "Successful";  // a human accepted it
      ClearPause(st);
    }
    what = "resumed past the pause";
  } else if (st.aborted && d.revision != d.stable_revision) {
    RolloutEffects fx = StartRollout(d, now, "retried after an abort");
    fx.events.push_back({"info", "RolloutResumed",
                         absl::StrCat("deployment ", d.name, ": aborted rollout of revision ",
                                      d.revision, " retried")});
    return fx;
  } else {
    return Conflict409("NOT_PAUSED", d, "nothing is paused or drained",
                       "`palm rollout status` shows where the rollout stands");
  }
  st.phase = kProgressing;
  st.last_progress_at = now;
  st.message = what;
  return One("info", "RolloutResumed",
             absl::StrCat("deployment ", d.name, ": rollout of revision ", d.revision, " ",
                          what));
}

absl::StatusOr<RolloutEffects> PromoteRollout(Deployment& d, bool full, absl::Time now) {
  RolloutState& st = d.rollout;
  const Strategy& s = d.strategy_spec;
  if (!RolloutActive(d) || st.phase == kRollingBack) {
    return Conflict409("NOTHING_TO_PROMOTE", d, "no rollout is under way",
                       "a change of spec, config or env starts one");
  }
  if (s.type == StrategyType::kRolling || s.type == StrategyType::kRecreate) {
    return Conflict409("NOTHING_TO_PROMOTE", d,
                       absl::StrCat("a ", std::string(model::ToString(s.type)),
                                    " rollout has no steps to promote; it proceeds by itself"),
                       "`palm deployment pause` / `resume` hold and release it");
  }
  std::string what;
  bool canary = s.type == StrategyType::kCanary;
  if (full) {
    (canary ? st.promote_full : st.promote_requested) = true;
    st.user_paused = false;
    ClearPause(st);
    what = "promoted fully: remaining steps and analyses skipped";
  } else if (canary && (!st.pause_reason.empty() || st.pause_until)) {
    what = absl::StrCat("promoted past ", StepLabel(s, st.step_index));
    NextStep(st);
  } else if (!canary && (st.pause_reason == "preview" || st.pause_reason == "inconclusive")) {
    st.promote_requested = true;
    ClearPause(st);
    what = "promoted: tasks switch to the preview once it is at full size";
  } else {
    std::string where = canary ? absl::StrCat("at ", StepLabel(s, st.step_index))
                               : "preparing the preview";
    return Conflict409("NOTHING_TO_PROMOTE", d,
                       absl::StrCat("the rollout of revision ", d.revision, " is ", where,
                                    "; nothing waits for promotion"),
                       absl::StrCat("`palm deployment promote ", d.name,
                                    " --full` skips the remaining steps"));
  }
  st.phase = kProgressing;
  st.last_progress_at = now;
  st.message = what;
  return One("info", "RolloutPromoted",
             absl::StrCat("deployment ", d.name, ": revision ", d.revision, " ", what));
}

absl::StatusOr<RolloutEffects> AbortRollout(Deployment& d, absl::Time) {
  if (!RolloutActive(d) || d.rollout.phase == kRollingBack) {
    return Conflict409("NO_ROLLOUT", d, "no rollout is under way to abort",
                       "`palm deployment undo` goes back to an earlier revision");
  }
  return AbortWith(d, "by the user");
}

Json RolloutStatus(const Deployment& d) {
  const RolloutState& st = d.rollout;
  const Strategy& s = d.strategy_spec;
  auto time = [](const std::optional<absl::Time>& t) {
    return t ? Json(palm::FormatTime(*t)) : Json();
  };
  bool active = RolloutActive(d);
  Json analysis = nullptr;
  if (st.analysis) {
    const model::AnalysisRun& a = *st.analysis;
    analysis = {{"kind", a.kind},          {"step", a.step},
                {"phase", a.phase},        {"measurements", a.measurements},
                {"successful", a.successful}, {"failed", a.failed},
                {"inconclusive", a.inconclusive}, {"next_at", time(a.next_at)},
                {"last", a.last}};
  }
  std::optional<absl::Time> deadline;
  if (active && st.last_progress_at && st.phase == kProgressing) {
    deadline = *st.last_progress_at + absl::Seconds(s.progress_deadline_s);
  }
  bool canary = s.type == StrategyType::kCanary && active && !st.aborted;
  bool preview = s.type == StrategyType::kBlueGreen && active && !st.aborted &&
                 d.revision != d.stable_revision;
  return {{"strategy", model::ToString(s.type)},
          {"phase", st.phase},
          {"from_revision", st.from_revision},
          {"to_revision", st.to_revision},
          {"step", st.step_index},
          {"steps", s.steps.size()},
          {"step_name", s.type == StrategyType::kCanary ? StepName(s, st.step_index) : ""},
          {"weight", st.weight},
          {"paused", st.phase == kPaused},
          {"pause_reason", st.user_paused ? "user" : st.pause_reason},
          {"pause_until", time(st.pause_until)},
          {"aborted", st.aborted},
          {"canary_revision", canary ? Json(d.revision) : Json()},
          {"preview_revision", preview ? Json(d.revision) : Json()},
          {"scale_down_revision",
           st.scale_down_revision ? Json(st.scale_down_revision) : Json()},
          {"scale_down_at", time(st.scale_down_at)},
          {"started_at", time(st.started_at)},
          {"last_progress_at", time(st.last_progress_at)},
          {"progress_deadline_at", time(deadline)},
          {"message", st.message},
          {"analysis", analysis}};
}

}  // namespace palm::controller
