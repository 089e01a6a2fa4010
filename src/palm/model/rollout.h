// The rollout objects of DESIGN.md section 3: a deployment's strategy (parsed and
// validated), its revisions (the pod-template history) and the state of the rollout under
// way, as plain values with their JSON forms.
//
// Strategy documents are kept verbatim in Deployment::strategy (what the API echoes) and
// parsed into Strategy by ParseStrategy, which refuses what makes no sense with the path of
// the bad field ("deployment.strategy.steps[2].set_weight: must be ...").
// Thread-safe: pure values and functions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace palm::model {

using Json = nlohmann::json;

// A count ("3") or a percentage of replicas ("25%"), as Kubernetes' IntOrString.
struct IntOrPercent {
  int64_t value = 0;
  bool percent = false;
  bool operator==(const IntOrPercent&) const = default;
};
// value (a count) or value% of replicas rounded up (max_surge) or down (max_unavailable).
int64_t Resolve(const IntOrPercent& v, int64_t replicas, bool round_up);
// Kubernetes' ResolveFenceposts: max_surge rounded up, max_unavailable rounded down; when
// both come out 0 (e.g. a percentage of few replicas), max_unavailable becomes 1 so the
// rollout can make progress.
struct Fenceposts {
  int64_t max_surge = 0;
  int64_t max_unavailable = 0;
};
Fenceposts ResolveFenceposts(const IntOrPercent& max_surge, const IntOrPercent& max_unavailable,
                             int64_t replicas);

// Canary analysis (and blue-green pre-promotion analysis): every interval_s the candidate's
// task results over the last interval_s are measured against the thresholds and against the
// stable revision over the same window. At least one threshold is required.
struct RelativeToStable {
  std::optional<double> error_rate_ratio;   // candidate error rate <= ratio x stable's
  std::optional<double> p99_latency_ratio;  // candidate p99 <= ratio x stable's
};
struct AnalysisSpec {
  double interval_s = 30;       // 1..900 (the metrics keep 15 minutes)
  int64_t count = 1;            // measurements per run, 1..100
  int64_t failure_limit = 0;    // more failed measurements than this fail the run
  int64_t min_samples = 20;     // fewer tasks in the window: the measurement is Inconclusive
  std::optional<double> max_error_rate;      // 0..1
  std::optional<double> max_p99_latency_ms;  // > 0
  std::optional<double> min_success_rate;    // 0..1
  RelativeToStable relative_to_stable;
  bool has_threshold() const;
};

// One canary step: exactly one of the three.
struct CanaryStep {
  enum class Kind { kSetWeight, kPause, kAnalysis };
  Kind kind = Kind::kSetWeight;
  int64_t weight = 0;                   // set_weight: 0..100
  std::optional<double> pause_s;        // pause: timed; nullopt = until `promote`
  // analysis: the strategy's `analysis` merged with this step's own fields.
  AnalysisSpec analysis;
};

enum class StrategyType { kRolling, kRecreate, kBlueGreen, kCanary };
std::string_view ToString(StrategyType t);  // rolling | recreate | blue_green | canary

struct Strategy {
  StrategyType type = StrategyType::kRolling;
  // Every type.
  double min_ready_s = 0;              // ready this long before it counts as available
  double progress_deadline_s = 600;    // > min_ready_s
  bool auto_rollback = false;          // deadline passed or analysis failed: back to stable
  // rolling (defaults as Kubernetes: 25% / 25%).
  IntOrPercent max_surge{25, true};
  IntOrPercent max_unavailable{25, true};
  // canary
  std::vector<CanaryStep> steps;
  std::optional<AnalysisSpec> analysis;     // the defaults of analysis steps
  std::optional<int64_t> canary_replicas;   // default ceil(replicas * weight / 100)
  // blue_green
  std::optional<int64_t> preview_replicas;  // default replicas
  bool auto_promote = false;
  double auto_promote_after_s = 0;
  double scale_down_delay_s = 300;
  std::optional<AnalysisSpec> pre_promotion_analysis;
};

// Parses and validates a strategy document (Deployment::strategy; {} = rolling with the
// defaults). `path` prefixes messages ("deployment.strategy"). Refuses: unknown fields,
// fields of another type ("steps" on rolling: canary only), max_surge and max_unavailable
// both 0, progress_deadline_s <= min_ready_s, weights outside 0..100 or going down, analysis
// steps without any threshold, canary/preview replicas outside 0..10000.
absl::StatusOr<Strategy> ParseStrategy(const Json& doc, std::string_view path);

// Canary size at `weight` percent: canary_replicas when set (capped at replicas), else
// ceil(replicas * weight / 100); 0 at weight 0.
int64_t CanaryReplicas(const Strategy& s, int64_t replicas, int64_t weight);

// One revision of a deployment's pod template (spec, config, env): Kubernetes'
// ControllerRevision. Revisions are numbered 1, 2, ... per deployment and never reused.
struct Revision {
  std::string tenant;
  std::string deployment;
  int64_t number = 1;
  std::string spec;                    // name@version
  Json config = Json::object();
  std::map<std::string, std::string> env;
  std::string change_cause;            // "created", "spec buyer@1.0.0 -> buyer@1.1.0", "restart", ...
  absl::Time created_at;
  std::optional<absl::Time> deployed_at;  // last time a rollout to it started (undo sets it)
  // Progressing | Complete | Superseded | Aborted | RolledBack | Failed ("" = never rolled)
  std::string outcome;
  std::string outcome_message;
  std::optional<absl::Time> outcome_at;
};
Json ToJson(const Revision& r);
absl::StatusOr<Revision> RevisionFromStored(const Json& doc);
// The template parts equal (what makes a change a new revision).
bool SameTemplate(const Revision& r, const std::string& spec, const Json& config,
                  const std::map<std::string, std::string>& env);

// One measurement (or the summary of a run) of an analysis, as status and events show it.
struct AnalysisRun {
  std::string kind;                    // "canary" (a step) | "pre_promotion"
  int64_t step = -1;                   // canary step index; -1 for pre-promotion
  int64_t measurements = 0, successful = 0, failed = 0, inconclusive = 0;
  std::optional<absl::Time> next_at;   // next measurement (wall time)
  // Running | Successful | Failed | Inconclusive
  std::string phase = "Running";
  // The last measurement: {"at", "outcome", "reasons": [...], "candidate": WindowStats,
  // "stable": WindowStats, "window_s"}.
  Json last = nullptr;
};

// The rollout under way (or the last one), persisted with the deployment so a rollout
// resumes where it stood after a restart of the daemon.
struct RolloutState {
  // "" (none yet) | Progressing | Paused | Complete | Failed | RollingBack | Degraded
  std::string phase;
  int64_t from_revision = 0;           // stable when it started
  int64_t to_revision = 0;             // the revision being rolled out
  int64_t step_index = 0;              // canary: the step under way (== steps.size(): done)
  int64_t weight = 0;                  // canary: tasks routed to the canary, percent
  bool user_paused = false;            // `palm deployment pause`
  // Why it waits for a human: "" | "step" (pause without duration) | "inconclusive" |
  // "preview" (blue-green awaiting promote).
  std::string pause_reason;
  std::optional<absl::Time> pause_until;     // a timed pause step ends then
  bool promote_full = false;           // `promote --full`: skip the remaining steps
  bool promote_requested = false;      // blue-green: switch once the preview is full
  bool aborted = false;                // back on stable; Degraded until the next change
  std::optional<AnalysisRun> analysis;       // the analysis under way or the last one
  std::optional<absl::Time> preview_ready_at;  // blue-green: preview fully available since
  // Blue-green after promotion: the old revision stays scaled up until then (instant undo).
  int64_t scale_down_revision = 0;
  std::optional<absl::Time> scale_down_at;
  std::optional<absl::Time> started_at;
  std::optional<absl::Time> last_progress_at;
  std::string progress_mark;           // what counted as progress last (see the planner)
  int64_t replicas = 0;                // replicas the targets were last sized for
  std::string message;                 // the latest human-readable reason
};
Json ToJson(const RolloutState& s);
absl::StatusOr<RolloutState> RolloutStateFromStored(const Json& doc);

}  // namespace palm::model
