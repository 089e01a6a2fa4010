// rollout: fenceposts, strategy parsing and validation, and the stored forms of revisions
// and rollout states (see rollout.h).
#include "palm/model/rollout.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "palm/base/clock.h"
#include "palm/base/error.h"
#include "palm/model/field_reader.h"

namespace palm::model {
namespace {

using codec_internal::Bad;
using codec_internal::Describe;
using codec_internal::FieldReader;
using codec_internal::IndexPath;
using codec_internal::MapKind;
using codec_internal::Required;
using codec_internal::TimeJson;

constexpr int64_t kMaxReplicas = 10'000;
constexpr double kMaxMinReadyS = 86'400;
constexpr double kMaxDeadlineS = 7 * 86'400;
constexpr double kMaxScaleDownDelayS = 86'400;
constexpr double kMaxPauseS = 7 * 86'400;
constexpr double kMaxIntervalS = 900;  // the task metrics keep 15 minutes
constexpr int64_t kMaxCount = 100;
constexpr int64_t kMaxMinSamples = 1'000'000;
constexpr double kMaxLatencyMs = 86'400'000;
constexpr double kMaxRatio = 1'000;

constexpr StrategyType kTypes[] = {StrategyType::kRolling, StrategyType::kRecreate,
                                   StrategyType::kBlueGreen, StrategyType::kCanary};
const std::vector<std::string_view> kTypeNames = {"rolling", "recreate", "blue_green",
                                                  "canary"};
const std::vector<std::string_view> kRollingFields = {"max_surge", "max_unavailable"};
const std::vector<std::string_view> kCanaryFields = {"steps", "analysis", "canary_replicas"};
const std::vector<std::string_view> kBlueGreenFields = {
    "preview_replicas", "auto_promote", "auto_promote_after_s", "scale_down_delay_s",
    "pre_promotion_analysis"};
const std::vector<std::string_view> kAnalysisFields = {
    "interval_s",       "count",           "failure_limit",      "min_samples",
    "max_error_rate",   "max_p99_latency_ms", "min_success_rate", "relative_to_stable"};
const std::vector<std::string_view> kStepKinds = {"set_weight", "pause", "analysis"};

constexpr std::string_view kIntOrPercentHint =
    "a count of instances (3) or a percentage of replicas as a string (\"25%\")";
constexpr std::string_view kStepHint =
    "give exactly one of set_weight: N (0..100), pause: {} (until promote), "
    "pause: {duration_s: N} or analysis: {}";
constexpr std::string_view kThresholdFields =
    "set max_error_rate, max_p99_latency_ms, min_success_rate or relative_to_stable";

const std::vector<std::string_view>& AllStrategyFields() {
  static const auto* fields = [] {
    auto* f = new std::vector<std::string_view>{"type", "min_ready_s", "progress_deadline_s",
                                                "auto_rollback"};
    for (const auto* group : {&kRollingFields, &kCanaryFields, &kBlueGreenFields}) {
      f->insert(f->end(), group->begin(), group->end());
    }
    return f;
  }();
  return *fields;
}

// The strategy type a type-specific field belongs to; nullopt for the common fields.
std::optional<StrategyType> OwnerOf(std::string_view key) {
  auto in = [&](const std::vector<std::string_view>& v) {
    return std::find(v.begin(), v.end(), key) != v.end();
  };
  if (in(kRollingFields)) return StrategyType::kRolling;
  if (in(kCanaryFields)) return StrategyType::kCanary;
  if (in(kBlueGreenFields)) return StrategyType::kBlueGreen;
  return std::nullopt;
}

// A number in [min, max]; with `above_min` min itself is refused ("must be greater than 0").
struct Range {
  double min, max;
  bool above_min = false;
};

absl::Status ReadRanged(const FieldReader& r, std::string_view key, Range range, double* out) {
  const Json* v = r.Get(key);
  if (v == nullptr) return absl::OkStatus();
  double d = 0;
  PALM_RETURN_IF_ERROR(codec_internal::ReadNumber(*v, r.Path(key), range.min, range.max, &d));
  if (range.above_min && d <= range.min) {
    return Bad(r.Path(key),
               absl::StrCat("must be greater than ", range.min, ", got ", Describe(*v)));
  }
  *out = d;
  return absl::OkStatus();
}

// As above; an absent field keeps what `*out` holds (an inherited value or nullopt).
absl::Status ReadRanged(const FieldReader& r, std::string_view key, Range range,
                        std::optional<double>* out) {
  if (r.Get(key) == nullptr) return absl::OkStatus();
  double d = 0;
  PALM_RETURN_IF_ERROR(ReadRanged(r, key, range, &d));
  *out = d;
  return absl::OkStatus();
}

absl::Status ReadIntOrPercent(const FieldReader& r, std::string_view key, IntOrPercent* out) {
  const Json* v = r.Get(key);
  if (v == nullptr) return absl::OkStatus();
  const std::string path = r.Path(key);
  if (v->is_number()) {
    int64_t n = 0;
    absl::Status st = codec_internal::ReadInt(*v, path, 0, kMaxReplicas, &n);
    if (!st.ok()) return InvalidArgument(std::string(st.message()), kIntOrPercentHint);
    *out = {n, false};
    return absl::OkStatus();
  }
  if (v->is_string()) {
    const std::string& s = v->get_ref<const std::string&>();
    const std::string digits = s.substr(0, s.empty() ? 0 : s.size() - 1);
    const bool percent = s.size() >= 2 && s.size() <= 5 && s.back() == '%' &&
                         std::all_of(digits.begin(), digits.end(),
                                     [](char c) { return absl::ascii_isdigit(c); });
    if (percent) {
      const int64_t n = std::stoll(digits);
      if (n > 100) {
        return Bad(path, absl::StrCat("must be at most 100%, got ", Describe(*v)),
                   kIntOrPercentHint);
      }
      *out = {n, true};
      return absl::OkStatus();
    }
  }
  return Bad(path, absl::StrCat("must be a count or a percentage such as \"25%\", got ",
                                Describe(*v)),
             kIntOrPercentHint);
}

absl::Status ReadType(const FieldReader& r, StrategyType* out) {
  const Json* v = r.Get("type");
  if (v == nullptr) return absl::OkStatus();
  if (v->is_string()) {
    for (StrategyType t : kTypes) {
      if (*v == ToString(t)) {
        *out = t;
        return absl::OkStatus();
      }
    }
  }
  std::string problem =
      absl::StrCat("must be rolling, recreate, blue_green or canary, got ", Describe(*v));
  if (v->is_string()) {
    std::string s = codec_internal::Suggest(v->get<std::string>(), kTypeNames);
    if (!s.empty()) absl::StrAppend(&problem, "; did you mean \"", s, "\"?");
  }
  return Bad(r.Path("type"), problem, "rolling replaces instances a few at a time (the default)");
}

// "steps" on a rolling strategy and the like: refused rather than silently ignored.
absl::Status RefuseForeignFields(const FieldReader& r, const Json& doc, StrategyType type) {
  for (const auto& [key, value] : doc.items()) {
    std::optional<StrategyType> owner = OwnerOf(key);
    if (value.is_null() || !owner || *owner == type) continue;
    return Bad(r.Path(key),
               absl::StrCat("is a ", std::string(ToString(*owner)), " field; strategy.type is ",
                            std::string(ToString(type)),
                            r.Get("type") == nullptr ? " (the default)" : ""),
               absl::StrCat("set type: ", std::string(ToString(*owner)),
                            " to use it, or remove it"));
  }
  return absl::OkStatus();
}

// An analysis document over `base` (the defaults, or the strategy's `analysis` for a step):
// the fields given replace those of `base`.
absl::StatusOr<AnalysisSpec> ParseAnalysis(const Json& doc, const std::string& path,
                                           const AnalysisSpec& base) {
  FieldReader r(doc, path, kAnalysisFields);
  PALM_RETURN_IF_ERROR(r.Check());
  AnalysisSpec a = base;
  PALM_RETURN_IF_ERROR(ReadRanged(r, "interval_s", {1, kMaxIntervalS}, &a.interval_s));
  PALM_RETURN_IF_ERROR(r.Int("count", 1, kMaxCount, &a.count));
  PALM_RETURN_IF_ERROR(r.Int("failure_limit", 0, kMaxCount, &a.failure_limit));
  PALM_RETURN_IF_ERROR(r.Int("min_samples", 1, kMaxMinSamples, &a.min_samples));
  PALM_RETURN_IF_ERROR(ReadRanged(r, "max_error_rate", {0, 1}, &a.max_error_rate));
  PALM_RETURN_IF_ERROR(
      ReadRanged(r, "max_p99_latency_ms", {0, kMaxLatencyMs, true}, &a.max_p99_latency_ms));
  PALM_RETURN_IF_ERROR(ReadRanged(r, "min_success_rate", {0, 1}, &a.min_success_rate));
  if (const Json* rel = r.Get("relative_to_stable")) {
    FieldReader rr(*rel, r.Path("relative_to_stable"), {"error_rate_ratio", "p99_latency_ratio"});
    PALM_RETURN_IF_ERROR(rr.Check());
    RelativeToStable& out = a.relative_to_stable;
    PALM_RETURN_IF_ERROR(
        ReadRanged(rr, "error_rate_ratio", {0, kMaxRatio, true}, &out.error_rate_ratio));
    PALM_RETURN_IF_ERROR(
        ReadRanged(rr, "p99_latency_ratio", {0, kMaxRatio, true}, &out.p99_latency_ratio));
  }
  return a;
}

absl::Status RequireThreshold(const AnalysisSpec& a, const std::string& path,
                              std::string_view hint) {
  if (a.has_threshold()) return absl::OkStatus();
  return Bad(path, absl::StrCat("has no threshold, so no measurement could fail; ",
                                std::string(kThresholdFields)),
             hint);
}

// `key: ` with nothing after it (null) selects pause and analysis with their defaults.
bool HasStepKind(const Json& step, std::string_view kind) {
  auto it = step.find(kind);
  return it != step.end() && (!it->is_null() || kind != "set_weight");
}

absl::StatusOr<CanaryStep> ParseStep(const Json& doc, const std::string& path,
                                     const AnalysisSpec& defaults) {
  FieldReader r(doc, path, kStepKinds);
  PALM_RETURN_IF_ERROR(r.Check());
  std::vector<std::string_view> present;
  for (std::string_view k : kStepKinds) {
    if (HasStepKind(doc, k)) present.push_back(k);
  }
  if (present.empty()) return Bad(path, "has no step type", kStepHint);
  if (present.size() > 1) {
    return Bad(path,
               absl::StrCat("has ", present.size(), " step types (", std::string(present[0]),
                            " and ", std::string(present[1]), "); a step has exactly one"),
               "split it into consecutive steps, e.g. [{set_weight: 10}, {pause: {}}]");
  }
  CanaryStep step;
  const Json empty = Json::object();
  const Json* v = r.Get(present[0]);
  if (present[0] == "set_weight") {
    step.kind = CanaryStep::Kind::kSetWeight;
    PALM_RETURN_IF_ERROR(r.Int("set_weight", 0, 100, &step.weight));
  } else if (present[0] == "pause") {
    step.kind = CanaryStep::Kind::kPause;
    FieldReader p(v != nullptr ? *v : empty, r.Path("pause"), {"duration_s"});
    PALM_RETURN_IF_ERROR(p.Check());
    PALM_RETURN_IF_ERROR(ReadRanged(p, "duration_s", {0, kMaxPauseS, true}, &step.pause_s));
  } else {
    step.kind = CanaryStep::Kind::kAnalysis;
    PALM_ASSIGN_OR_RETURN(step.analysis,
                          ParseAnalysis(v != nullptr ? *v : empty, r.Path("analysis"), defaults));
    PALM_RETURN_IF_ERROR(RequireThreshold(
        step.analysis, r.Path("analysis"),
        "here, or in the strategy's `analysis` (the defaults of every analysis step)"));
  }
  return step;
}

absl::Status ReadSteps(const FieldReader& r, Strategy* s) {
  const Json* v = r.Get("steps");
  if (v == nullptr) return absl::OkStatus();
  const std::string path = r.Path("steps");
  if (!v->is_array()) {
    return Bad(path, absl::StrCat("must be a list of steps, got ", Describe(*v)), kStepHint);
  }
  const AnalysisSpec defaults = s->analysis.value_or(AnalysisSpec());
  int64_t last_weight = 0;
  for (size_t i = 0; i < v->size(); ++i) {
    const std::string step_path = IndexPath(path, i);
    PALM_ASSIGN_OR_RETURN(CanaryStep step, ParseStep((*v)[i], step_path, defaults));
    if (step.kind == CanaryStep::Kind::kSetWeight) {
      if (step.weight < last_weight) {
        return Bad(step_path + ".set_weight",
                   absl::StrCat("weights going down need an abort: step ", i, " sets ",
                                step.weight, " after ", last_weight),
                   "keep set_weight non-decreasing; `palm deployment abort` sends every task "
                   "back to the stable revision");
      }
      last_weight = step.weight;
    }
    s->steps.push_back(std::move(step));
  }
  return absl::OkStatus();
}

absl::Status ReadCommon(const FieldReader& r, Strategy* s) {
  PALM_RETURN_IF_ERROR(ReadRanged(r, "min_ready_s", {0, kMaxMinReadyS}, &s->min_ready_s));
  PALM_RETURN_IF_ERROR(
      ReadRanged(r, "progress_deadline_s", {0, kMaxDeadlineS}, &s->progress_deadline_s));
  if (s->progress_deadline_s <= s->min_ready_s) {
    return Bad(r.Path("progress_deadline_s"),
               absl::StrCat("must be greater than min_ready_s (", s->min_ready_s, "), got ",
                            s->progress_deadline_s,
                            r.Get("progress_deadline_s") == nullptr ? " (the default)" : ""),
               "an instance counts as available after min_ready_s of readiness; the deadline "
               "must leave time for that");
  }
  return r.Bool("auto_rollback", &s->auto_rollback);
}

absl::Status ReadRolling(const FieldReader& r, Strategy* s) {
  PALM_RETURN_IF_ERROR(ReadIntOrPercent(r, "max_surge", &s->max_surge));
  PALM_RETURN_IF_ERROR(ReadIntOrPercent(r, "max_unavailable", &s->max_unavailable));
  if (s->max_surge.value == 0 && s->max_unavailable.value == 0) {
    return Bad(r.Path("max_unavailable"), "max_surge and max_unavailable cannot both be 0",
               "the rollout could neither start a new instance nor stop an old one; "
               "max_surge: 1 starts a new instance before stopping an old one");
  }
  return absl::OkStatus();
}

absl::Status ReadCanary(const FieldReader& r, Strategy* s) {
  if (const Json* a = r.Get("analysis")) {
    PALM_ASSIGN_OR_RETURN(s->analysis, ParseAnalysis(*a, r.Path("analysis"), AnalysisSpec()));
  }
  PALM_RETURN_IF_ERROR(ReadSteps(r, s));
  return r.OptInt("canary_replicas", 0, kMaxReplicas, &s->canary_replicas);
}

absl::Status ReadBlueGreen(const FieldReader& r, Strategy* s) {
  PALM_RETURN_IF_ERROR(r.OptInt("preview_replicas", 0, kMaxReplicas, &s->preview_replicas));
  PALM_RETURN_IF_ERROR(r.Bool("auto_promote", &s->auto_promote));
  PALM_RETURN_IF_ERROR(
      ReadRanged(r, "auto_promote_after_s", {0, kMaxDeadlineS}, &s->auto_promote_after_s));
  PALM_RETURN_IF_ERROR(
      ReadRanged(r, "scale_down_delay_s", {0, kMaxScaleDownDelayS}, &s->scale_down_delay_s));
  if (const Json* a = r.Get("pre_promotion_analysis")) {
    const std::string path = r.Path("pre_promotion_analysis");
    PALM_ASSIGN_OR_RETURN(s->pre_promotion_analysis, ParseAnalysis(*a, path, AnalysisSpec()));
    PALM_RETURN_IF_ERROR(RequireThreshold(*s->pre_promotion_analysis, path,
                                          "or remove pre_promotion_analysis"));
  }
  return absl::OkStatus();
}

Json AnalysisRunJson(const AnalysisRun& a) {
  return {{"kind", a.kind},
          {"step", a.step},
          {"measurements", a.measurements},
          {"successful", a.successful},
          {"failed", a.failed},
          {"inconclusive", a.inconclusive},
          {"next_at", TimeJson(a.next_at)},
          {"phase", a.phase},
          {"last", a.last}};
}

absl::StatusOr<AnalysisRun> AnalysisRunFromStored(const Json& doc, const std::string& path) {
  FieldReader r(doc, path,
                {"kind", "step", "measurements", "successful", "failed", "inconclusive",
                 "next_at", "phase", "last"});
  PALM_RETURN_IF_ERROR(r.Check());
  AnalysisRun a;
  PALM_RETURN_IF_ERROR(r.String("kind", &a.kind));
  PALM_RETURN_IF_ERROR(r.Int("step", -1, INT64_MAX, &a.step));
  PALM_RETURN_IF_ERROR(r.Int("measurements", 0, INT64_MAX, &a.measurements));
  PALM_RETURN_IF_ERROR(r.Int("successful", 0, INT64_MAX, &a.successful));
  PALM_RETURN_IF_ERROR(r.Int("failed", 0, INT64_MAX, &a.failed));
  PALM_RETURN_IF_ERROR(r.Int("inconclusive", 0, INT64_MAX, &a.inconclusive));
  PALM_RETURN_IF_ERROR(r.OptTime("next_at", &a.next_at));
  PALM_RETURN_IF_ERROR(r.String("phase", &a.phase));
  if (auto it = doc.find("last"); it != doc.end()) a.last = *it;
  return a;
}

}  // namespace

int64_t Resolve(const IntOrPercent& v, int64_t replicas, bool round_up) {
  if (!v.percent) return v.value;
  const int64_t scaled = v.value * replicas;
  return round_up ? (scaled + 99) / 100 : scaled / 100;
}

Fenceposts ResolveFenceposts(const IntOrPercent& max_surge, const IntOrPercent& max_unavailable,
                             int64_t replicas) {
  Fenceposts f{Resolve(max_surge, replicas, /*round_up=*/true),
               Resolve(max_unavailable, replicas, /*round_up=*/false)};
  if (f.max_surge == 0 && f.max_unavailable == 0) f.max_unavailable = 1;
  return f;
}

bool AnalysisSpec::has_threshold() const {
  return max_error_rate || max_p99_latency_ms || min_success_rate ||
         relative_to_stable.error_rate_ratio || relative_to_stable.p99_latency_ratio;
}

std::string_view ToString(StrategyType t) {
  switch (t) {
    case StrategyType::kRolling:
      return "rolling";
    case StrategyType::kRecreate:
      return "recreate";
    case StrategyType::kBlueGreen:
      return "blue_green";
    case StrategyType::kCanary:
      return "canary";
  }
  return "rolling";
}

absl::StatusOr<Strategy> ParseStrategy(const Json& doc, std::string_view path) {
  Strategy s;
  if (doc.is_null()) return s;
  FieldReader r(doc, std::string(path), AllStrategyFields());
  PALM_RETURN_IF_ERROR(r.Check());
  PALM_RETURN_IF_ERROR(ReadType(r, &s.type));
  PALM_RETURN_IF_ERROR(RefuseForeignFields(r, doc, s.type));
  PALM_RETURN_IF_ERROR(ReadCommon(r, &s));
  switch (s.type) {
    case StrategyType::kRolling:
      PALM_RETURN_IF_ERROR(ReadRolling(r, &s));
      break;
    case StrategyType::kCanary:
      PALM_RETURN_IF_ERROR(ReadCanary(r, &s));
      break;
    case StrategyType::kBlueGreen:
      PALM_RETURN_IF_ERROR(ReadBlueGreen(r, &s));
      break;
    case StrategyType::kRecreate:
      break;
  }
  return s;
}

int64_t CanaryReplicas(const Strategy& s, int64_t replicas, int64_t weight) {
  weight = std::clamp<int64_t>(weight, 0, 100);
  if (weight == 0) return 0;
  if (s.canary_replicas) return std::min(*s.canary_replicas, replicas);
  return (replicas * weight + 99) / 100;
}

Json ToJson(const Revision& r) {
  return {{"tenant", r.tenant},
          {"deployment", r.deployment},
          {"revision", r.number},
          {"spec", r.spec},
          {"config", r.config},
          {"env", r.env},
          {"change_cause", r.change_cause},
          {"created_at", palm::FormatTime(r.created_at)},
          {"deployed_at", TimeJson(r.deployed_at)},
          {"outcome", r.outcome},
          {"outcome_message", r.outcome_message},
          {"outcome_at", TimeJson(r.outcome_at)}};
}

absl::StatusOr<Revision> RevisionFromStored(const Json& doc) {
  FieldReader r(doc, "revision",
                {"tenant", "deployment", "revision", "spec", "config", "env", "change_cause",
                 "created_at", "deployed_at", "outcome", "outcome_message", "outcome_at"});
  Revision rev;
  absl::Status st = [&]() -> absl::Status {
    PALM_RETURN_IF_ERROR(r.Check());
    PALM_RETURN_IF_ERROR(r.String("tenant", &rev.tenant));
    PALM_RETURN_IF_ERROR(r.String("deployment", &rev.deployment, Required{"the deployment"}));
    PALM_RETURN_IF_ERROR(
        r.Int("revision", 1, INT64_MAX, &rev.number, Required{"the revision number"}));
    PALM_RETURN_IF_ERROR(r.String("spec", &rev.spec, Required{"the spec as name@version"}));
    PALM_RETURN_IF_ERROR(r.Object("config", &rev.config));
    PALM_RETURN_IF_ERROR(r.Map("env", MapKind::kEnv, &rev.env));
    PALM_RETURN_IF_ERROR(r.String("change_cause", &rev.change_cause));
    PALM_RETURN_IF_ERROR(r.Time("created_at", &rev.created_at));
    PALM_RETURN_IF_ERROR(r.OptTime("deployed_at", &rev.deployed_at));
    PALM_RETURN_IF_ERROR(r.String("outcome", &rev.outcome));
    PALM_RETURN_IF_ERROR(r.String("outcome_message", &rev.outcome_message));
    return r.OptTime("outcome_at", &rev.outcome_at);
  }();
  if (!st.ok()) return Annotate(st, "stored revision");
  return rev;
}

bool SameTemplate(const Revision& r, const std::string& spec, const Json& config,
                  const std::map<std::string, std::string>& env) {
  return r.spec == spec && r.config == config && r.env == env;
}

Json ToJson(const RolloutState& s) {
  return {{"phase", s.phase},
          {"from_revision", s.from_revision},
          {"to_revision", s.to_revision},
          {"step_index", s.step_index},
          {"weight", s.weight},
          {"user_paused", s.user_paused},
          {"pause_reason", s.pause_reason},
          {"pause_until", TimeJson(s.pause_until)},
          {"promote_full", s.promote_full},
          {"promote_requested", s.promote_requested},
          {"aborted", s.aborted},
          {"analysis", s.analysis ? AnalysisRunJson(*s.analysis) : Json()},
          {"preview_ready_at", TimeJson(s.preview_ready_at)},
          {"scale_down_revision", s.scale_down_revision},
          {"scale_down_at", TimeJson(s.scale_down_at)},
          {"started_at", TimeJson(s.started_at)},
          {"last_progress_at", TimeJson(s.last_progress_at)},
          {"progress_mark", s.progress_mark},
          {"replicas", s.replicas},
          {"message", s.message}};
}

absl::StatusOr<RolloutState> RolloutStateFromStored(const Json& doc) {
  FieldReader r(doc, "rollout",
                {"phase", "from_revision", "to_revision", "step_index", "weight", "user_paused",
                 "pause_reason", "pause_until", "promote_full", "promote_requested", "aborted",
                 "analysis", "preview_ready_at", "scale_down_revision", "scale_down_at",
                 "started_at", "last_progress_at", "progress_mark", "replicas", "message"});
  PALM_RETURN_IF_ERROR(r.Check());
  RolloutState s;
  PALM_RETURN_IF_ERROR(r.String("phase", &s.phase));
  PALM_RETURN_IF_ERROR(r.Int("from_revision", 0, INT64_MAX, &s.from_revision));
  PALM_RETURN_IF_ERROR(r.Int("to_revision", 0, INT64_MAX, &s.to_revision));
  PALM_RETURN_IF_ERROR(r.Int("step_index", 0, INT64_MAX, &s.step_index));
  PALM_RETURN_IF_ERROR(r.Int("weight", 0, 100, &s.weight));
  PALM_RETURN_IF_ERROR(r.Bool("user_paused", &s.user_paused));
  PALM_RETURN_IF_ERROR(r.String("pause_reason", &s.pause_reason));
  PALM_RETURN_IF_ERROR(r.OptTime("pause_until", &s.pause_until));
  PALM_RETURN_IF_ERROR(r.Bool("promote_full", &s.promote_full));
  PALM_RETURN_IF_ERROR(r.Bool("promote_requested", &s.promote_requested));
  PALM_RETURN_IF_ERROR(r.Bool("aborted", &s.aborted));
  if (const Json* a = r.Get("analysis")) {
    PALM_ASSIGN_OR_RETURN(s.analysis, AnalysisRunFromStored(*a, r.Path("analysis")));
  }
  PALM_RETURN_IF_ERROR(r.OptTime("preview_ready_at", &s.preview_ready_at));
  PALM_RETURN_IF_ERROR(r.Int("scale_down_revision", 0, INT64_MAX, &s.scale_down_revision));
  PALM_RETURN_IF_ERROR(r.OptTime("scale_down_at", &s.scale_down_at));
  PALM_RETURN_IF_ERROR(r.OptTime("started_at", &s.started_at));
  PALM_RETURN_IF_ERROR(r.OptTime("last_progress_at", &s.last_progress_at));
  PALM_RETURN_IF_ERROR(r.String("progress_mark", &s.progress_mark));
  PALM_RETURN_IF_ERROR(r.Int("replicas", 0, INT64_MAX, &s.replicas));
  PALM_RETURN_IF_ERROR(r.String("message", &s.message));
  return s;
}

}  // namespace palm::model
