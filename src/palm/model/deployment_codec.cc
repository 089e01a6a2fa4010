// Deployment <-> JSON.
#include "absl/strings/str_cat.h"
#include "palm/base/clock.h"
#include "palm/base/error.h"
#include "palm/base/names.h"
#include "palm/model/codec.h"
#include "palm/model/field_reader.h"

namespace palm::model {
namespace {

using codec_internal::Bad;
using codec_internal::Describe;
using codec_internal::FieldReader;
using codec_internal::MapKind;
using codec_internal::NumberJson;
using codec_internal::Required;

constexpr int64_t kMaxReplicas = 10'000;
constexpr double kMaxBackoffInitialS = 3600;
constexpr double kMaxBackoffS = 86'400;
constexpr double kMaxResetAfterS = 7 * 86'400;

// The document stays verbatim in `doc` (what the API echoes); `out` is what it means.
absl::Status ReadStrategy(const FieldReader& r, Json* doc, Strategy* out) {
  PALM_RETURN_IF_ERROR(r.Object("strategy", doc));
  PALM_ASSIGN_OR_RETURN(*out, ParseStrategy(*doc, r.Path("strategy")));
  return absl::OkStatus();
}

// The stored rollout state; its paths become "deployment.rollout.<field>".
absl::Status ReadRollout(const FieldReader& r, RolloutState* out) {
  const Json* v = r.Get("rollout");
  if (v == nullptr) return absl::OkStatus();
  absl::StatusOr<RolloutState> s = RolloutStateFromStored(*v);
  if (!s.ok()) {
    return InvalidArgument(absl::StrCat("deployment.", std::string(s.status().message())),
                           ErrorHint(s.status()));
  }
  *out = std::move(*s);
  return absl::OkStatus();
}

absl::Status ReadRestartPolicy(const FieldReader& parent, RestartPolicy* out) {
  *out = RestartPolicy();
  const Json* v = parent.Get("restart_policy");
  if (v == nullptr) return absl::OkStatus();
  FieldReader r(*v, parent.Path("restart_policy"),
                {"policy", "backoff_initial_s", "backoff_max_s", "reset_after_s"});
  PALM_RETURN_IF_ERROR(r.Check());
  if (const Json* p = r.Get("policy")) {
    if (!p->is_string() || !ParseRestartMode(p->get<std::string>(), &out->policy)) {
      std::string problem =
          absl::StrCat("must be always, on_failure or never, got ", Describe(*p));
      if (p->is_string()) {
        std::string s = codec_internal::Suggest(p->get<std::string>(),
                                                {"always", "on_failure", "never"});
        if (!s.empty()) absl::StrAppend(&problem, "; did you mean \"", s, "\"?");
      }
      return Bad(r.Path("policy"), problem,
                 "always restarts every exit, on_failure only non-zero exits and crashes");
    }
  }
  PALM_RETURN_IF_ERROR(r.Number("backoff_initial_s", 0, kMaxBackoffInitialS,
                                &out->backoff_initial_s));
  PALM_RETURN_IF_ERROR(r.Number("backoff_max_s", 0, kMaxBackoffS, &out->backoff_max_s));
  if (out->backoff_max_s < out->backoff_initial_s) {
    return Bad(r.Path("backoff_max_s"),
               absl::StrCat("must be at least backoff_initial_s (", out->backoff_initial_s,
                            "), got ", out->backoff_max_s),
               "the backoff doubles from backoff_initial_s up to backoff_max_s");
  }
  return r.Number("reset_after_s", 0, kMaxResetAfterS, &out->reset_after_s);
}

// Accepted only as null until their features land: silently ignoring an autoscaler or a
// budget the user asked for would be worse than refusing it.
absl::Status RefuseUnimplemented(const FieldReader& r, std::string_view key,
                                 std::string_view instead) {
  if (const Json* v = r.Get(key)) {
    return Bad(r.Path(key),
               absl::StrCat("is not supported by this palm yet (got ", Describe(*v),
                            "); only null is accepted"),
               instead);
  }
  return absl::OkStatus();
}

const std::vector<std::string_view> kDeploymentFields = {
    "kind",   "name",     "spec",           "agent_ref",    "replicas",
    "config", "env",      "strategy",       "restart_policy", "revision_history_limit",
    "labels", "autoscaling", "budget"};
const std::vector<std::string_view> kDeploymentServerFields = {
    "tenant",  "created_at", "updated_at", "revision", "latest_revision", "stable_revision",
    "rollout", "next_instance_seq", "status", "drained", "last_deployed_task",
    "last_deployed_at"};

absl::StatusOr<Deployment> ParseDeployment(const Json& doc, bool stored) {
  FieldReader r(doc, "deployment", kDeploymentFields, kDeploymentServerFields);
  PALM_RETURN_IF_ERROR(r.Check());
  Deployment d;
  if (const Json* kind = r.Get("kind"); kind != nullptr && *kind != "Deployment") {
    return Bad(r.Path("kind"), absl::StrCat("must be \"Deployment\", got ", Describe(*kind)),
               "agent specs are registered with `palm spec register`");
  }
  PALM_RETURN_IF_ERROR(
      r.String("name", &d.name, Required{"the deployment's name, e.g. \"trading-fleet\""}));
  PALM_RETURN_IF_ERROR(ValidateName(r.Path("name"), d.name));

  const Json* spec = r.Get("spec");
  const Json* agent_ref = r.Get("agent_ref");
  if (spec != nullptr && agent_ref != nullptr) {
    return Bad(r.Path("agent_ref"), "give either spec or agent_ref, not both",
               "spec: buyer@1.2.0 is the same as agent_ref: org/agents/buyer:1.2.0");
  }
  if (spec == nullptr && agent_ref == nullptr) {
    return r.Missing("spec", Required{"the spec to run as name@version, e.g. \"buyer@1.2.0\""});
  }
  std::string_view key = spec != nullptr ? "spec" : "agent_ref";
  std::string ref;
  PALM_RETURN_IF_ERROR(r.String(key, &ref));
  std::string spec_name, spec_version;
  PALM_RETURN_IF_ERROR(
      Annotate(ParseSpecRef(ref, /*allow_bare=*/false, &spec_name, &spec_version), r.Path(key)));
  d.spec = absl::StrCat(spec_name, "@", spec_version);

  if (const Json* replicas = r.Get("replicas")) {
    absl::Status st = codec_internal::ReadInt(*replicas, r.Path("replicas"), 0, kMaxReplicas,
                                              &d.replicas);
    if (!st.ok()) {
      return InvalidArgument(std::string(st.message()),
                             "replicas is a count of instances between 0 and 10000");
    }
  }
  PALM_RETURN_IF_ERROR(r.Object("config", &d.config));
  PALM_RETURN_IF_ERROR(r.Map("env", MapKind::kEnv, &d.env));
  PALM_RETURN_IF_ERROR(ReadStrategy(r, &d.strategy, &d.strategy_spec));
  PALM_RETURN_IF_ERROR(ReadRestartPolicy(r, &d.restart_policy));
  PALM_RETURN_IF_ERROR(r.Int("revision_history_limit", 0, 1000, &d.revision_history_limit));
  PALM_RETURN_IF_ERROR(r.Map("labels", MapKind::kLabels, &d.labels));
  PALM_RETURN_IF_ERROR(RefuseUnimplemented(r, "autoscaling",
                                           "remove it, or set replicas (palm deployment scale)"));
  PALM_RETURN_IF_ERROR(RefuseUnimplemented(r, "budget", "remove it"));
  if (stored) {
    PALM_RETURN_IF_ERROR(r.String("tenant", &d.tenant));
    PALM_RETURN_IF_ERROR(r.Time("created_at", &d.created_at));
    PALM_RETURN_IF_ERROR(r.Time("updated_at", &d.updated_at));
    PALM_RETURN_IF_ERROR(r.Int("revision", 1, INT64_MAX, &d.revision));
    // Stores written before rollouts have neither: the current revision is both.
    d.latest_revision = d.stable_revision = d.revision;
    PALM_RETURN_IF_ERROR(r.Int("latest_revision", 1, INT64_MAX, &d.latest_revision));
    PALM_RETURN_IF_ERROR(r.Int("stable_revision", 0, INT64_MAX, &d.stable_revision));
    PALM_RETURN_IF_ERROR(ReadRollout(r, &d.rollout));
    PALM_RETURN_IF_ERROR(r.Int("next_instance_seq", 1, INT64_MAX, &d.next_instance_seq));
    PALM_RETURN_IF_ERROR(r.Bool("drained", &d.drained));
    if (const Json* task = r.Get("last_deployed_task"); task && !task->is_null()) {
      std::string text;
      PALM_RETURN_IF_ERROR(r.String("last_deployed_task", &text));
      d.last_deployed_task = std::move(text);
    }
    PALM_RETURN_IF_ERROR(r.OptTime("last_deployed_at", &d.last_deployed_at));
  }
  return d;
}

}  // namespace

absl::StatusOr<Deployment> DeploymentFromJson(const Json& doc) {
  return ParseDeployment(doc, false);
}

absl::StatusOr<Deployment> DeploymentFromStored(const Json& doc) {
  absl::StatusOr<Deployment> d = ParseDeployment(doc, true);
  if (!d.ok()) return Annotate(d.status(), "stored deployment");
  return d;
}

Json ToJson(const Deployment& d) {
  const RestartPolicy& rp = d.restart_policy;
  return {{"kind", "Deployment"},
          {"tenant", d.tenant},
          {"name", d.name},
          {"spec", d.spec},
          {"replicas", d.replicas},
          {"config", d.config},
          {"env", d.env},
          {"strategy", d.strategy},
          {"restart_policy",
           {{"policy", ToString(rp.policy)},
            {"backoff_initial_s", NumberJson(rp.backoff_initial_s)},
            {"backoff_max_s", NumberJson(rp.backoff_max_s)},
            {"reset_after_s", NumberJson(rp.reset_after_s)}}},
          {"revision_history_limit", d.revision_history_limit},
          {"labels", d.labels},
          {"revision", d.revision},
          {"latest_revision", d.latest_revision},
          {"stable_revision", d.stable_revision},
          {"rollout", ToJson(d.rollout)},
          {"next_instance_seq", d.next_instance_seq},
          {"drained", d.drained},
          {"last_deployed_task", d.last_deployed_task ? Json(*d.last_deployed_task) : Json()},
          {"last_deployed_at",
           d.last_deployed_at ? Json(palm::FormatTime(*d.last_deployed_at)) : Json()},
          {"created_at", palm::FormatTime(d.created_at)},
          {"updated_at", palm::FormatTime(d.updated_at)}};
}

}  // namespace palm::model
