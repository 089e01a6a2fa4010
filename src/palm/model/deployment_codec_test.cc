#include <functional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palm/base/error.h"
#include "palm/model/codec.h"

namespace palm::model {
namespace {

using ::testing::HasSubstr;

constexpr std::string_view kDesignDeployment = R"(
kind: Deployment
name: trading-fleet
spec: buyer@1.2.0
replicas: 20
config: {strategy: aggressive}
env: {}
strategy:
  type: rolling
  max_surge: 3
  max_unavailable: 2
  min_ready_s: 30
  progress_deadline_s: 600
  auto_rollback: true
restart_policy: {policy: always, backoff_initial_s: 1, backoff_max_s: 300, reset_after_s: 600}
autoscaling: null
budget: null
revision_history_limit: 10
)";

Json Base() {
  absl::StatusOr<Json> doc = ParseDocument(kDesignDeployment, "deploy.yaml");
  EXPECT_TRUE(doc.ok()) << doc.status();
  return *doc;
}

TEST(DeploymentCodecTest, ParsesTheDesignExample) {
  absl::StatusOr<Deployment> d = DeploymentFromJson(Base());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->name, "trading-fleet");
  EXPECT_EQ(d->spec, "buyer@1.2.0");
  EXPECT_EQ(d->replicas, 20);
  EXPECT_EQ(d->config, Json({{"strategy", "aggressive"}}));
  EXPECT_EQ(d->strategy["max_surge"], 3);
  EXPECT_EQ(d->restart_policy.policy, RestartMode::kAlways);
  EXPECT_EQ(d->revision_history_limit, 10);
}

TEST(DeploymentCodecTest, Defaults) {
  absl::StatusOr<Deployment> d = DeploymentFromJson({{"name", "f"}, {"spec", "a@1.0.0"}});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->replicas, 1);
  EXPECT_EQ(d->restart_policy.policy, RestartMode::kAlways);
  EXPECT_EQ(d->restart_policy.backoff_initial_s, 1);
  EXPECT_EQ(d->restart_policy.backoff_max_s, 300);
  EXPECT_EQ(d->restart_policy.reset_after_s, 600);
  EXPECT_EQ(d->revision_history_limit, 10);
  EXPECT_EQ(d->strategy, Json::object());
  EXPECT_EQ(d->revision, 1);
  EXPECT_EQ(d->next_instance_seq, 1);
}

TEST(DeploymentCodecTest, AgentRefIsAnotherWayToNameTheSpec) {
  absl::StatusOr<Deployment> d =
      DeploymentFromJson({{"name", "f"}, {"agent_ref", "myorg/agents/support:1.0.0"}});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->spec, "support@1.0.0");
  EXPECT_FALSE(ToJson(*d).contains("agent_ref"));
  d = DeploymentFromJson({{"name", "f"}, {"spec", "myorg/agents/support:1.0.0"}});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->spec, "support@1.0.0");
}

struct BadCase {
  std::string name;
  std::function<void(Json&)> mutate;
  std::string want;
};

TEST(DeploymentCodecTest, RefusesBadInputWithFieldPaths) {
  const BadCase cases[] = {
      {"missing name", [](Json& j) { j.erase("name"); }, "deployment.name: required"},
      {"bad name", [](Json& j) { j["name"] = "Trading_Fleet"; }, "deployment.name: \"Trading_Fleet\""},
      {"missing spec", [](Json& j) { j.erase("spec"); },
       "deployment.spec: required (the spec to run as name@version, e.g. \"buyer@1.2.0\")"},
      {"bare spec", [](Json& j) { j["spec"] = "buyer"; },
       "deployment.spec: \"buyer\": needs a version"},
      {"bad version", [](Json& j) { j["spec"] = "buyer@latest"; },
       "deployment.spec: \"buyer@latest\": version \"latest\" is not a semantic version"},
      {"spec type", [](Json& j) { j["spec"] = {{"name", "buyer"}}; },
       "deployment.spec: must be a string, got an object"},
      {"both refs", [](Json& j) { j["agent_ref"] = "o/agents/buyer:1.2.0"; },
       "deployment.agent_ref: give either spec or agent_ref, not both"},
      {"bad agent_ref",
       [](Json& j) {
         j.erase("spec");
         j["agent_ref"] = "o/agents/buyer";
       },
       "deployment.agent_ref: \"o/agents/buyer\": needs a version"},
      {"replicas string", [](Json& j) { j["replicas"] = "three"; },
       "deployment.replicas: must be an integer, got string \"three\""},
      {"replicas negative", [](Json& j) { j["replicas"] = -3; },
       "deployment.replicas: must not be negative, got -3"},
      {"replicas absurd", [](Json& j) { j["replicas"] = 1000000; },
       "deployment.replicas: must be at most 10000, got 1000000"},
      {"replicas fraction", [](Json& j) { j["replicas"] = 2.5; },
       "deployment.replicas: must be an integer, got 2.5"},
      {"replica typo", [](Json& j) { j["replica"] = 2; },
       "deployment.replica: unknown field; did you mean \"replicas\"?"},
      {"config", [](Json& j) { j["config"] = "x"; }, "deployment.config: must be an object"},
      {"env", [](Json& j) { j["env"] = {{"A", {1}}}; }, "deployment.env.A: must be a string"},
      {"strategy type", [](Json& j) { j["strategy"]["type"] = "rollin"; },
       "deployment.strategy.type: must be rolling, recreate, blue_green or canary, got string "
       "\"rollin\"; did you mean \"rolling\"?"},
      {"strategy type number", [](Json& j) { j["strategy"]["type"] = 1; },
       "deployment.strategy.type: must be rolling"},
      {"strategy list", [](Json& j) { j["strategy"] = {"rolling"}; },
       "deployment.strategy: must be an object, got a list"},
      {"restart policy", [](Json& j) { j["restart_policy"]["policy"] = "sometimes"; },
       "deployment.restart_policy.policy: must be always, on_failure or never, got string "
       "\"sometimes\""},
      {"restart policy typo", [](Json& j) { j["restart_policy"]["policy"] = "on-failure"; },
       "did you mean \"on_failure\"?"},
      {"backoff order",
       [](Json& j) {
         j["restart_policy"]["backoff_initial_s"] = 60;
         j["restart_policy"]["backoff_max_s"] = 10;
       },
       "deployment.restart_policy.backoff_max_s: must be at least backoff_initial_s (60), got 10"},
      {"backoff default max",
       [](Json& j) {
         j["restart_policy"] = {{"backoff_initial_s", 500}};
       },
       "deployment.restart_policy.backoff_max_s: must be at least backoff_initial_s (500), got 300"},
      {"backoff negative", [](Json& j) { j["restart_policy"]["backoff_initial_s"] = -1; },
       "deployment.restart_policy.backoff_initial_s: must not be negative"},
      {"reset negative", [](Json& j) { j["restart_policy"]["reset_after_s"] = -1; },
       "deployment.restart_policy.reset_after_s: must not be negative"},
      {"restart unknown", [](Json& j) { j["restart_policy"]["max_restarts"] = 3; },
       "deployment.restart_policy.max_restarts: unknown field"},
      {"restart compose", [](Json& j) { j["restart"] = "always"; },
       "deployment.restart: unknown field; did you mean \"restart_policy\"?"},
      {"history", [](Json& j) { j["revision_history_limit"] = 5000; },
       "deployment.revision_history_limit: must be at most 1000, got 5000"},
      {"labels", [](Json& j) { j["labels"] = {{"bad key!", "x"}}; }, "deployment.labels: key"},
      {"kind", [](Json& j) { j["kind"] = "AgentSpec"; },
       "deployment.kind: must be \"Deployment\", got string \"AgentSpec\""},
      {"autoscaling", [](Json& j) { j["autoscaling"] = {{"min_replicas", 1}}; },
       "deployment.autoscaling: is not supported by this palm yet (got an object); only null"},
      {"budget", [](Json& j) { j["budget"] = {{"limit_usd", 5}}; },
       "deployment.budget: is not supported"},
  };
  for (const BadCase& c : cases) {
    Json doc = Base();
    c.mutate(doc);
    absl::StatusOr<Deployment> d = DeploymentFromJson(doc);
    ASSERT_FALSE(d.ok()) << c.name;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(std::string(d.status().message()), HasSubstr(c.want)) << c.name;
  }
}

TEST(DeploymentCodecTest, ReplicaErrorsHaveAHint) {
  Json doc = Base();
  doc["replicas"] = -1;
  EXPECT_THAT(ErrorHint(DeploymentFromJson(doc).status()), HasSubstr("between 0 and 10000"));
}

TEST(DeploymentCodecTest, StrategyIsKeptVerbatimAndParsed) {
  absl::StatusOr<Deployment> d = DeploymentFromJson(Base());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->strategy_spec.type, StrategyType::kRolling);
  EXPECT_EQ(d->strategy_spec.max_surge, (IntOrPercent{3, false}));
  EXPECT_EQ(d->strategy_spec.max_unavailable, (IntOrPercent{2, false}));
  EXPECT_EQ(d->strategy_spec.min_ready_s, 30);
  EXPECT_TRUE(d->strategy_spec.auto_rollback);

  Json doc = Base();
  doc["strategy"] = {{"type", "canary"},
                     {"steps", {{{"set_weight", 10}}, {{"pause", Json::object()}}}},
                     {"canary_replicas", nullptr}};
  d = DeploymentFromJson(doc);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->strategy, doc["strategy"]) << "nulls and all";
  EXPECT_EQ(d->strategy_spec.type, StrategyType::kCanary);
  ASSERT_EQ(d->strategy_spec.steps.size(), 2u);
  EXPECT_EQ(d->strategy_spec.steps[1].kind, CanaryStep::Kind::kPause);
  doc["strategy"] = {{"max_surge", "25%"}};  // type absent: rolling
  d = DeploymentFromJson(doc);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->strategy, Json({{"max_surge", "25%"}}));
  EXPECT_EQ(d->strategy_spec.max_surge, (IntOrPercent{25, true}));
  doc["strategy"] = nullptr;
  d = DeploymentFromJson(doc);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->strategy, Json::object());
  EXPECT_EQ(d->strategy_spec.type, StrategyType::kRolling);
}

TEST(DeploymentCodecTest, StrategyErrorsNameTheFieldInTheDeployment) {
  const BadCase cases[] = {
      {"future field", [](Json& j) { j["strategy"]["future_field"] = 1; },
       "deployment.strategy.future_field: unknown field"},
      {"canary field on rolling", [](Json& j) { j["strategy"]["steps"] = Json::array(); },
       "deployment.strategy.steps: is a canary field; strategy.type is rolling"},
      {"both zero",
       [](Json& j) {
         j["strategy"]["max_surge"] = 0;
         j["strategy"]["max_unavailable"] = "0%";
       },
       "deployment.strategy.max_unavailable: max_surge and max_unavailable cannot both be 0"},
      {"weights down",
       [](Json& j) {
         j["strategy"] = Json::parse(
             R"({"type": "canary", "steps": [{"set_weight": 50}, {"set_weight": 20}]})");
       },
       "deployment.strategy.steps[1].set_weight: weights going down need an abort: step 1 "
       "sets 20 after 50"},
      {"deadline", [](Json& j) { j["strategy"]["progress_deadline_s"] = 10; },
       "deployment.strategy.progress_deadline_s: must be greater than min_ready_s (30), got 10"},
  };
  for (const BadCase& c : cases) {
    Json doc = Base();
    c.mutate(doc);
    absl::StatusOr<Deployment> d = DeploymentFromJson(doc);
    ASSERT_FALSE(d.ok()) << c.name;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(std::string(d.status().message()), HasSubstr(c.want)) << c.name;
    // The stored form is read as strictly.
    Json stored = ToJson(*DeploymentFromJson(Base()));
    stored["strategy"] = doc["strategy"];
    EXPECT_THAT(std::string(DeploymentFromStored(stored).status().message()),
                HasSubstr("stored deployment: " + c.want))
        << c.name;
  }
}

TEST(DeploymentCodecTest, RoundTripsThroughTheStoredForm) {
  absl::StatusOr<Deployment> d = DeploymentFromJson(Base());
  ASSERT_TRUE(d.ok());
  d->tenant = "acme";
  d->revision = 7;
  d->next_instance_seq = 42;
  d->labels = {{"team", "trading"}};
  d->env = {{"A", "1"}};
  d->restart_policy = {RestartMode::kOnFailure, 0.5, 60, 120};
  d->created_at = absl::FromUnixMillis(1'800'000'000'000);
  d->updated_at = absl::FromUnixMillis(1'800'000'000'999);
  d->latest_revision = 9;
  d->stable_revision = 6;
  d->rollout.phase = "Progressing";
  d->rollout.from_revision = 6;
  d->rollout.to_revision = 7;
  d->rollout.started_at = absl::FromUnixMillis(1'800'000'000'500);
  d->rollout.analysis = AnalysisRun{"canary", 2};
  Json j = ToJson(*d);
  EXPECT_EQ(j["kind"], "Deployment");
  EXPECT_EQ(j["restart_policy"], Json({{"policy", "on_failure"},
                                       {"backoff_initial_s", 0.5},
                                       {"backoff_max_s", 60},
                                       {"reset_after_s", 120}}));
  EXPECT_EQ(j["revision"], 7);
  EXPECT_EQ(j["next_instance_seq"], 42);
  EXPECT_EQ(j["latest_revision"], 9);
  EXPECT_EQ(j["stable_revision"], 6);
  EXPECT_EQ(j["rollout"], ToJson(d->rollout));
  absl::StatusOr<Deployment> back = DeploymentFromStored(j);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(ToJson(*back), j);
  EXPECT_EQ(back->tenant, "acme");
  EXPECT_EQ(back->revision, 7);
  EXPECT_EQ(back->next_instance_seq, 42);
  EXPECT_EQ(back->updated_at, d->updated_at);
  EXPECT_EQ(back->latest_revision, 9);
  EXPECT_EQ(back->stable_revision, 6);
  EXPECT_EQ(back->rollout.to_revision, 7);
  EXPECT_EQ(back->rollout.started_at, d->rollout.started_at);
  EXPECT_EQ(back->rollout.analysis->step, 2);
  EXPECT_EQ(back->strategy_spec.max_surge, (IntOrPercent{3, false}));
  // Re-applying what the API returned is accepted; the server-owned fields are ignored.
  absl::StatusOr<Deployment> reapplied = DeploymentFromJson(j);
  ASSERT_TRUE(reapplied.ok()) << reapplied.status();
  EXPECT_EQ(reapplied->revision, 1);
  EXPECT_EQ(reapplied->latest_revision, 1);
  EXPECT_EQ(reapplied->stable_revision, 1);
  EXPECT_EQ(reapplied->rollout.phase, "");
  EXPECT_EQ(reapplied->tenant, "default");
  EXPECT_EQ(reapplied->replicas, 20);
}

TEST(DeploymentCodecTest, StoredFormRefusesCorruptBookkeeping) {
  const std::pair<std::function<void(Json&)>, std::string> cases[] = {
      {[](Json& j) { j["revision"] = "seven"; },
       "stored deployment: deployment.revision: must be an integer"},
      {[](Json& j) { j["latest_revision"] = 0; },
       "stored deployment: deployment.latest_revision: must be a positive integer"},
      {[](Json& j) { j["stable_revision"] = -1; },
       "stored deployment: deployment.stable_revision: must not be negative"},
      {[](Json& j) { j["rollout"]["weight"] = 150; },
       "stored deployment: deployment.rollout.weight: must be at most 100, got 150"},
      {[](Json& j) { j["rollout"]["analysis"] = {{"phase", 3}}; },
       "stored deployment: deployment.rollout.analysis.phase: must be a string"},
      {[](Json& j) { j["rollout"] = "Complete"; },
       "stored deployment: deployment.rollout: must be an object"},
  };
  for (const auto& [mutate, want] : cases) {
    Json j = ToJson(*DeploymentFromJson(Base()));
    mutate(j);
    absl::StatusOr<Deployment> d = DeploymentFromStored(j);
    ASSERT_FALSE(d.ok()) << want;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(d.status().message()), HasSubstr(want));
  }
}

// Stores written before rollouts: the current revision is the latest and the stable one.
TEST(DeploymentCodecTest, StoredFormWithoutRolloutBookkeeping) {
  Json j = ToJson(*DeploymentFromJson(Base()));
  j["revision"] = 4;
  j.erase("latest_revision");
  j.erase("stable_revision");
  j.erase("rollout");
  absl::StatusOr<Deployment> d = DeploymentFromStored(j);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->revision, 4);
  EXPECT_EQ(d->latest_revision, 4);
  EXPECT_EQ(d->stable_revision, 4);
  EXPECT_EQ(ToJson(d->rollout), ToJson(RolloutState()));
  j["rollout"] = nullptr;
  EXPECT_TRUE(DeploymentFromStored(j).ok());
}

}  // namespace
}  // namespace palm::model
