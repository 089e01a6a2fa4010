#include "palm/model/rollout.h"

#include <functional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palm/base/error.h"
#include "palm/model/codec.h"

namespace palm::model {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

absl::Time T(int64_t ms) { return absl::FromUnixMillis(1'800'000'000'000 + ms); }

IntOrPercent Count(int64_t n) { return {n, false}; }
IntOrPercent Pct(int64_t n) { return {n, true}; }

Strategy Parse(const Json& doc) {
  absl::StatusOr<Strategy> s = ParseStrategy(doc, "deployment.strategy");
  EXPECT_TRUE(s.ok()) << doc.dump() << ": " << s.status();
  return s.ok() ? *s : Strategy();
}

Json Yaml(std::string_view text) {
  absl::StatusOr<Json> doc = ParseDocument(text, "strategy.yaml");
  EXPECT_TRUE(doc.ok()) << doc.status();
  return doc.ok() ? *doc : Json();
}

// Kubernetes' ResolveFenceposts (pkg/controller/deployment/util): surge rounds up,
// unavailable rounds down, and 0/0 becomes 0/1. The first rows are the examples of the
// Deployment documentation (10 replicas, 25% and 30%).
TEST(RolloutTest, FencepostsRoundAsKubernetes) {
  struct Row {
    IntOrPercent surge, unavailable;
    int64_t replicas, want_surge, want_unavailable;
  };
  const Row rows[] = {
      {Pct(25), Pct(25), 10, 3, 2},   // 2.5 up, 2.5 down
      {Pct(30), Pct(30), 10, 3, 3},   // the documentation's 30% example
      {Pct(25), Pct(25), 1, 1, 0},    // one replica: surge first, never below 1 available
      {Pct(25), Pct(25), 4, 1, 1},
      {Pct(25), Pct(25), 20, 5, 5},
      {Pct(50), Pct(50), 3, 2, 1},    // 1.5 up, 1.5 down
      {Pct(30), Pct(30), 5, 2, 1},
      {Pct(100), Pct(0), 4, 4, 0},    // blue-green-like: a full second set
      {Pct(0), Pct(100), 4, 0, 4},    // recreate-like
      {Pct(1), Pct(1), 150, 2, 1},    // 1.5
      {Pct(0), Pct(0), 10, 0, 1},     // fencepost
      {Pct(0), Pct(33), 3, 0, 1},     // 0.99 rounds down to 0: fencepost
      {Pct(25), Pct(25), 0, 0, 1},    // scaled to zero: fencepost
      {Count(3), Count(2), 10, 3, 2},  // counts pass through
      {Count(20), Count(0), 5, 20, 0},  // even above replicas
      {Count(0), Count(0), 10, 0, 1},
      {Count(0), Pct(10), 10, 0, 1},
      {Count(1), Pct(10), 9, 1, 0},
  };
  for (const Row& r : rows) {
    Fenceposts f = ResolveFenceposts(r.surge, r.unavailable, r.replicas);
    EXPECT_EQ(f.max_surge, r.want_surge)
        << r.surge.value << (r.surge.percent ? "%" : "") << " of " << r.replicas;
    EXPECT_EQ(f.max_unavailable, r.want_unavailable)
        << r.unavailable.value << (r.unavailable.percent ? "%" : "") << " of " << r.replicas;
  }
  EXPECT_EQ(Resolve(Pct(25), 10, /*round_up=*/true), 3);
  EXPECT_EQ(Resolve(Pct(25), 10, /*round_up=*/false), 2);
  EXPECT_EQ(Resolve(Pct(0), 10, true), 0);
  EXPECT_EQ(Resolve(Count(7), 10, false), 7);
  EXPECT_EQ(Resolve(Pct(100), 10'000, true), 10'000);
}

TEST(RolloutTest, EmptyStrategyIsRollingWithKubernetesDefaults) {
  for (const Json& doc : {Json::object(), Json()}) {
    Strategy s = Parse(doc);
    EXPECT_EQ(s.type, StrategyType::kRolling);
    EXPECT_EQ(s.max_surge, Pct(25));
    EXPECT_EQ(s.max_unavailable, Pct(25));
    EXPECT_EQ(s.min_ready_s, 0);
    EXPECT_EQ(s.progress_deadline_s, 600);
    EXPECT_FALSE(s.auto_rollback);
    EXPECT_TRUE(s.steps.empty());
    EXPECT_FALSE(s.analysis.has_value());
    EXPECT_EQ(s.scale_down_delay_s, 300);
  }
}

TEST(RolloutTest, ParsesTheDesignRollingExample) {
  Strategy s = Parse(Yaml(R"(
type: rolling
max_surge: 3
max_unavailable: 2
min_ready_s: 30
progress_deadline_s: 600
auto_rollback: true
)"));
  EXPECT_EQ(s.max_surge, Count(3));
  EXPECT_EQ(s.max_unavailable, Count(2));
  EXPECT_EQ(s.min_ready_s, 30);
  EXPECT_TRUE(s.auto_rollback);
  s = Parse({{"max_surge", "0%"}, {"max_unavailable", "100%"}});
  EXPECT_EQ(s.max_surge, Pct(0));
  EXPECT_EQ(s.max_unavailable, Pct(100));
  s = Parse({{"max_surge", 0}, {"max_unavailable", 1}});
  EXPECT_EQ(s.max_surge, Count(0));
}

TEST(RolloutTest, ParsesTheDesignCanaryExample) {
  Strategy s = Parse(Yaml(R"(
type: canary
steps: [{set_weight: 10}, {pause: {duration_s: 300}}, {analysis: {}}, {set_weight: 50},
        {pause: {}}, {set_weight: 100}]
analysis: {interval_s: 30, count: 5, failure_limit: 1, min_samples: 20,
           max_error_rate: 0.05, max_p99_latency_ms: 500, min_success_rate: 0.95,
           relative_to_stable: {error_rate_ratio: 1.5, p99_latency_ratio: 1.2}}
canary_replicas: null
)"));
  EXPECT_EQ(s.type, StrategyType::kCanary);
  ASSERT_EQ(s.steps.size(), 6u);
  EXPECT_EQ(s.steps[0].kind, CanaryStep::Kind::kSetWeight);
  EXPECT_EQ(s.steps[0].weight, 10);
  EXPECT_EQ(s.steps[1].kind, CanaryStep::Kind::kPause);
  EXPECT_EQ(s.steps[1].pause_s, 300);
  EXPECT_EQ(s.steps[2].kind, CanaryStep::Kind::kAnalysis);
  EXPECT_EQ(s.steps[2].analysis.count, 5);
  EXPECT_EQ(s.steps[2].analysis.max_error_rate, 0.05);
  EXPECT_EQ(s.steps[2].analysis.relative_to_stable.p99_latency_ratio, 1.2);
  EXPECT_EQ(s.steps[4].kind, CanaryStep::Kind::kPause);
  EXPECT_FALSE(s.steps[4].pause_s.has_value()) << "waits for promote";
  EXPECT_EQ(s.steps[5].weight, 100);
  ASSERT_TRUE(s.analysis.has_value());
  EXPECT_EQ(s.analysis->failure_limit, 1);
  EXPECT_EQ(s.analysis->min_success_rate, 0.95);
  EXPECT_FALSE(s.canary_replicas.has_value());
  // The strategy-wide defaults of a rollout still apply.
  EXPECT_EQ(s.progress_deadline_s, 600);
}

TEST(RolloutTest, AnalysisStepsOverrideTheStrategyAnalysis) {
  Strategy s = Parse(Yaml(R"(
type: canary
analysis: {interval_s: 10, count: 3, max_error_rate: 0.1,
           relative_to_stable: {error_rate_ratio: 2}}
steps:
  - analysis: {count: 7, max_p99_latency_ms: 250, relative_to_stable: {p99_latency_ratio: 1.5}}
  - analysis:
  - analysis: {max_error_rate: 0.01}
)"));
  ASSERT_EQ(s.steps.size(), 3u);
  const AnalysisSpec& a = s.steps[0].analysis;
  EXPECT_EQ(a.interval_s, 10) << "inherited";
  EXPECT_EQ(a.count, 7) << "overridden";
  EXPECT_EQ(a.max_error_rate, 0.1);
  EXPECT_EQ(a.max_p99_latency_ms, 250);
  EXPECT_EQ(a.relative_to_stable.error_rate_ratio, 2) << "merged field by field";
  EXPECT_EQ(a.relative_to_stable.p99_latency_ratio, 1.5);
  EXPECT_EQ(a.min_samples, 20) << "the default";
  EXPECT_EQ(s.steps[1].kind, CanaryStep::Kind::kAnalysis) << "`analysis:` alone: the defaults";
  EXPECT_EQ(s.steps[1].analysis.count, 3);
  EXPECT_FALSE(s.steps[1].analysis.max_p99_latency_ms.has_value()) << "steps do not leak";
  EXPECT_EQ(s.steps[2].analysis.max_error_rate, 0.01);
}

TEST(RolloutTest, ACanaryWithoutStepsOrWithAnalysisOnlyAtStrategyLevelIsValid) {
  Strategy s = Parse({{"type", "canary"}});
  EXPECT_TRUE(s.steps.empty());
  // An analysis without threshold is only defaults until a step uses it.
  s = Parse(Yaml("{type: canary, analysis: {count: 2}, steps: [{set_weight: 5}]}"));
  EXPECT_EQ(s.analysis->count, 2);
  s = Parse(Yaml("{type: canary, steps: [{pause: }, {set_weight: 0}, {set_weight: 0}]}"));
  EXPECT_EQ(s.steps[0].kind, CanaryStep::Kind::kPause);
  EXPECT_EQ(s.steps[2].weight, 0);
}

TEST(RolloutTest, ParsesBlueGreen) {
  Strategy s = Parse(Yaml(R"(
type: blue_green
preview_replicas: null
auto_promote: false
auto_promote_after_s: null
scale_down_delay_s: 300
pre_promotion_analysis: {min_success_rate: 0.99, count: 2}
)"));
  EXPECT_EQ(s.type, StrategyType::kBlueGreen);
  EXPECT_FALSE(s.preview_replicas.has_value());
  EXPECT_EQ(s.auto_promote_after_s, 0);
  ASSERT_TRUE(s.pre_promotion_analysis.has_value());
  EXPECT_EQ(s.pre_promotion_analysis->min_success_rate, 0.99);
  EXPECT_EQ(s.pre_promotion_analysis->count, 2);
  s = Parse({{"type", "blue_green"}, {"preview_replicas", 2}, {"auto_promote", true},
             {"auto_promote_after_s", 60}, {"scale_down_delay_s", 0}, {"min_ready_s", 5}});
  EXPECT_EQ(s.preview_replicas, 2);
  EXPECT_TRUE(s.auto_promote);
  EXPECT_EQ(s.auto_promote_after_s, 60);
  EXPECT_EQ(s.scale_down_delay_s, 0);
  EXPECT_EQ(s.min_ready_s, 5);
  s = Parse({{"type", "recreate"}, {"progress_deadline_s", 30}, {"steps", nullptr}});
  EXPECT_EQ(s.type, StrategyType::kRecreate);
  EXPECT_EQ(s.progress_deadline_s, 30);
}

struct Refusal {
  std::string yaml;
  std::string want;  // the message starts with this (the path of the bad field first)
};

TEST(RolloutTest, RefusesWhatMakesNoSenseWithThePathOfTheField) {
  const Refusal cases[] = {
      // Fields.
      {"{typ: canary}", "deployment.strategy.typ: unknown field; did you mean \"type\"?"},
      {"{max_surges: 2}",
       "deployment.strategy.max_surges: unknown field; did you mean \"max_surge\"?"},
      {"{type: rollin}",
       "deployment.strategy.type: must be rolling, recreate, blue_green or canary, got string "
       "\"rollin\"; did you mean \"rolling\"?"},
      {"{type: bluegreen}", "deployment.strategy.type: must be rolling, recreate, blue_green or "
                            "canary, got string \"bluegreen\"; did you mean \"blue_green\"?"},
      {"[rolling]", "deployment.strategy: must be an object, got a list"},
      // Fields of another type.
      {"{steps: [{set_weight: 10}]}",
       "deployment.strategy.steps: is a canary field; strategy.type is rolling (the default)"},
      {"{type: canary, max_surge: 1}",
       "deployment.strategy.max_surge: is a rolling field; strategy.type is canary"},
      {"{type: recreate, max_unavailable: 1}",
       "deployment.strategy.max_unavailable: is a rolling field; strategy.type is recreate"},
      {"{type: rolling, preview_replicas: 2}",
       "deployment.strategy.preview_replicas: is a blue_green field; strategy.type is rolling"},
      {"{type: blue_green, canary_replicas: 2}",
       "deployment.strategy.canary_replicas: is a canary field; strategy.type is blue_green"},
      {"{type: canary, pre_promotion_analysis: {max_error_rate: 0.1}}",
       "deployment.strategy.pre_promotion_analysis: is a blue_green field"},
      // Every type.
      {"{min_ready_s: -1}", "deployment.strategy.min_ready_s: must not be negative, got -1"},
      {"{min_ready_s: 86401}", "deployment.strategy.min_ready_s: must be at most 86400"},
      {"{min_ready_s: 30, progress_deadline_s: 30}",
       "deployment.strategy.progress_deadline_s: must be greater than min_ready_s (30), got 30"},
      {"{min_ready_s: 700}",
       "deployment.strategy.progress_deadline_s: must be greater than min_ready_s (700), got "
       "600 (the default)"},
      {"{progress_deadline_s: 0}",
       "deployment.strategy.progress_deadline_s: must be greater than min_ready_s (0), got 0"},
      {"{progress_deadline_s: 604801}",
       "deployment.strategy.progress_deadline_s: must be at most 604800"},
      {"{type: canary, auto_rollback: yes please}",
       "deployment.strategy.auto_rollback: must be true or false"},
      // Rolling.
      {"{max_surge: 0, max_unavailable: 0}",
       "deployment.strategy.max_unavailable: max_surge and max_unavailable cannot both be 0"},
      {"{max_surge: \"0%\", max_unavailable: 0}",
       "deployment.strategy.max_unavailable: max_surge and max_unavailable cannot both be 0"},
      {"{max_surge: -1}", "deployment.strategy.max_surge: must not be negative, got -1"},
      {"{max_surge: 1.5}", "deployment.strategy.max_surge: must be an integer, got 1.5"},
      {"{max_unavailable: \"150%\"}",
       "deployment.strategy.max_unavailable: must be at most 100%, got string \"150%\""},
      {"{max_unavailable: \"25\"}",
       "deployment.strategy.max_unavailable: must be a count or a percentage such as \"25%\", "
       "got string \"25\""},
      {"{max_surge: \"-5%\"}", "deployment.strategy.max_surge: must be a count or a percentage"},
      {"{max_surge: \"2.5%\"}", "deployment.strategy.max_surge: must be a count or a percentage"},
      {"{max_surge: \"%\"}", "deployment.strategy.max_surge: must be a count or a percentage"},
      {"{max_surge: true}", "deployment.strategy.max_surge: must be a count or a percentage "
                            "such as \"25%\", got true"},
      // Canary steps.
      {"{type: canary, steps: {set_weight: 10}}",
       "deployment.strategy.steps: must be a list of steps, got an object"},
      {"{type: canary, steps: [10]}", "deployment.strategy.steps[0]: must be an object, got 10"},
      {"{type: canary, steps: [{set_weight: 10}, {}]}",
       "deployment.strategy.steps[1]: has no step type"},
      {"{type: canary, steps: [{set_weight: }]}", "deployment.strategy.steps[0]: has no step type"},
      {"{type: canary, steps: [{set_weight: 10, pause: {}}]}",
       "deployment.strategy.steps[0]: has 2 step types (set_weight and pause); a step has "
       "exactly one"},
      {"{type: canary, steps: [{setWeight: 10}]}",
       "deployment.strategy.steps[0].setWeight: unknown field; did you mean \"set_weight\"?"},
      {"{type: canary, steps: [{set_weight: 101}]}",
       "deployment.strategy.steps[0].set_weight: must be at most 100, got 101"},
      {"{type: canary, steps: [{set_weight: -1}]}",
       "deployment.strategy.steps[0].set_weight: must not be negative, got -1"},
      {"{type: canary, steps: [{set_weight: \"10%\"}]}",
       "deployment.strategy.steps[0].set_weight: must be an integer, got string \"10%\""},
      {"{type: canary, steps: [{set_weight: 10}, {set_weight: 50}, {pause: {}}, {set_weight: 20}]}",
       "deployment.strategy.steps[3].set_weight: weights going down need an abort: step 3 sets "
       "20 after 50"},
      {"{type: canary, steps: [{pause: {duration_s: 0}}]}",
       "deployment.strategy.steps[0].pause.duration_s: must be greater than 0, got 0"},
      {"{type: canary, steps: [{pause: {duration_s: -3}}]}",
       "deployment.strategy.steps[0].pause.duration_s: must not be negative"},
      {"{type: canary, steps: [{pause: {duration: 5}}]}",
       "deployment.strategy.steps[0].pause.duration: unknown field; did you mean \"duration_s\"?"},
      {"{type: canary, steps: [{pause: 300}]}",
       "deployment.strategy.steps[0].pause: must be an object, got 300"},
      // Analysis.
      {"{type: canary, steps: [{set_weight: 10}, {pause: {}}, {analysis: {}}]}",
       "deployment.strategy.steps[2].analysis: has no threshold, so no measurement could fail; "
       "set max_error_rate, max_p99_latency_ms, min_success_rate or relative_to_stable"},
      {"{type: canary, analysis: {count: 3}, steps: [{analysis: {interval_s: 10}}]}",
       "deployment.strategy.steps[0].analysis: has no threshold"},
      {"{type: canary, steps: [{analysis: {relative_to_stable: {}}}]}",
       "deployment.strategy.steps[0].analysis: has no threshold"},
      {"{type: canary, analysis: {interval_s: 0.5}}",
       "deployment.strategy.analysis.interval_s: must be at least 1, got 0.5"},
      {"{type: canary, analysis: {interval_s: 901}}",
       "deployment.strategy.analysis.interval_s: must be at most 900, got 901"},
      {"{type: canary, analysis: {count: 0}}",
       "deployment.strategy.analysis.count: must be a positive integer, got 0"},
      {"{type: canary, analysis: {count: 101}}",
       "deployment.strategy.analysis.count: must be at most 100"},
      {"{type: canary, analysis: {failure_limit: -1}}",
       "deployment.strategy.analysis.failure_limit: must not be negative"},
      {"{type: canary, analysis: {min_samples: 0}}",
       "deployment.strategy.analysis.min_samples: must be a positive integer"},
      {"{type: canary, analysis: {min_samples: 1000001}}",
       "deployment.strategy.analysis.min_samples: must be at most 1000000"},
      {"{type: canary, analysis: {max_error_rate: 5}}",
       "deployment.strategy.analysis.max_error_rate: must be at most 1, got 5"},
      {"{type: canary, analysis: {min_success_rate: -0.1}}",
       "deployment.strategy.analysis.min_success_rate: must not be negative"},
      {"{type: canary, analysis: {max_p99_latency_ms: 0}}",
       "deployment.strategy.analysis.max_p99_latency_ms: must be greater than 0, got 0"},
      {"{type: canary, analysis: {max_error_rate: \"5%\"}}",
       "deployment.strategy.analysis.max_error_rate: must be a number, got string \"5%\""},
      {"{type: canary, analysis: {relative_to_stable: {error_rate_ratio: 0}}}",
       "deployment.strategy.analysis.relative_to_stable.error_rate_ratio: must be greater than "
       "0, got 0"},
      {"{type: canary, analysis: {relative_to_stable: {p99_latency_ratio: -1}}}",
       "deployment.strategy.analysis.relative_to_stable.p99_latency_ratio: must not be negative"},
      {"{type: canary, analysis: {relative_to_stable: {p99_ratio: 2}}}",
       "deployment.strategy.analysis.relative_to_stable.p99_ratio: unknown field"},
      {"{type: canary, analysis: {max_errors: 0.1}}",
       "deployment.strategy.analysis.max_errors: unknown field"},
      {"{type: canary, analysis: [1]}", "deployment.strategy.analysis: must be an object"},
      {"{type: canary, steps: [{analysis: {max_error_rate: 0.1, cuont: 2}}]}",
       "deployment.strategy.steps[0].analysis.cuont: unknown field; did you mean \"count\"?"},
      {"{type: canary, canary_replicas: 10001}",
       "deployment.strategy.canary_replicas: must be at most 10000"},
      {"{type: canary, canary_replicas: -1}",
       "deployment.strategy.canary_replicas: must not be negative"},
      // Blue-green.
      {"{type: blue_green, preview_replicas: 10001}",
       "deployment.strategy.preview_replicas: must be at most 10000"},
      {"{type: blue_green, auto_promote: 1}",
       "deployment.strategy.auto_promote: must be true or false, got 1"},
      {"{type: blue_green, auto_promote_after_s: -1}",
       "deployment.strategy.auto_promote_after_s: must not be negative"},
      {"{type: blue_green, scale_down_delay_s: 86401}",
       "deployment.strategy.scale_down_delay_s: must be at most 86400"},
      {"{type: blue_green, pre_promotion_analysis: {count: 3}}",
       "deployment.strategy.pre_promotion_analysis: has no threshold"},
      {"{type: blue_green, pre_promotion_analysis: {min_success_rate: 2}}",
       "deployment.strategy.pre_promotion_analysis.min_success_rate: must be at most 1"},
  };
  for (const Refusal& c : cases) {
    absl::StatusOr<Strategy> s = ParseStrategy(Yaml(c.yaml), "deployment.strategy");
    ASSERT_FALSE(s.ok()) << c.yaml;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_THAT(std::string(s.status().message()), StartsWith(c.want)) << c.yaml;
  }
}

TEST(RolloutTest, RefusalsOfRolloutRulesSayWhatToDo) {
  const std::string_view docs[] = {
      "{steps: []}",
      "{max_surge: 0, max_unavailable: 0}",
      "{max_surge: \"x\"}",
      "{min_ready_s: 30, progress_deadline_s: 10}",
      "{type: canary, steps: [{}]}",
      "{type: canary, steps: [{set_weight: 5, analysis: {}}]}",
      "{type: canary, steps: [{set_weight: 50}, {set_weight: 10}]}",
      "{type: canary, steps: [{analysis: {}}]}",
      "{type: blue_green, pre_promotion_analysis: {}}",
  };
  for (std::string_view doc : docs) {
    absl::Status st = ParseStrategy(Yaml(doc), "deployment.strategy").status();
    ASSERT_FALSE(st.ok()) << doc;
    EXPECT_FALSE(ErrorHint(st).empty()) << doc << ": " << st;
  }
  absl::Status st = ParseStrategy(Yaml("{steps: []}"), "deployment.strategy").status();
  EXPECT_EQ(ErrorHint(st), "set type: canary to use it, or remove it");
  st = ParseStrategy(Yaml("{type: canary, steps: [{analysis: {}}]}"), "deployment.strategy")
           .status();
  EXPECT_THAT(ErrorHint(st), HasSubstr("the strategy's `analysis`"));
}

TEST(RolloutTest, ThresholdsAreAnyOfTheFive) {
  AnalysisSpec a;
  EXPECT_FALSE(a.has_threshold());
  a.max_error_rate = 0;
  EXPECT_TRUE(a.has_threshold()) << "0 is a threshold (no errors at all)";
  a = AnalysisSpec();
  a.max_p99_latency_ms = 100;
  EXPECT_TRUE(a.has_threshold());
  a = AnalysisSpec();
  a.min_success_rate = 0.9;
  EXPECT_TRUE(a.has_threshold());
  a = AnalysisSpec();
  a.relative_to_stable.error_rate_ratio = 1.5;
  EXPECT_TRUE(a.has_threshold());
  a = AnalysisSpec();
  a.relative_to_stable.p99_latency_ratio = 1.2;
  EXPECT_TRUE(a.has_threshold());
}

TEST(RolloutTest, CanaryReplicasRoundUp) {
  Strategy s;
  EXPECT_EQ(CanaryReplicas(s, 10, 10), 1);
  EXPECT_EQ(CanaryReplicas(s, 10, 15), 2);  // 1.5
  EXPECT_EQ(CanaryReplicas(s, 3, 10), 1);   // 0.3: one canary at any positive weight
  EXPECT_EQ(CanaryReplicas(s, 3, 50), 2);
  EXPECT_EQ(CanaryReplicas(s, 20, 50), 10);
  EXPECT_EQ(CanaryReplicas(s, 10, 100), 10);
  EXPECT_EQ(CanaryReplicas(s, 10, 0), 0);
  EXPECT_EQ(CanaryReplicas(s, 0, 50), 0);
  s.canary_replicas = 2;
  EXPECT_EQ(CanaryReplicas(s, 10, 10), 2);
  EXPECT_EQ(CanaryReplicas(s, 10, 90), 2);
  EXPECT_EQ(CanaryReplicas(s, 1, 10), 1) << "capped at replicas";
  EXPECT_EQ(CanaryReplicas(s, 10, 0), 0) << "weight 0 has no canary";
}

TEST(RolloutTest, StrategyTypeNames) {
  EXPECT_EQ(ToString(StrategyType::kRolling), "rolling");
  EXPECT_EQ(ToString(StrategyType::kRecreate), "recreate");
  EXPECT_EQ(ToString(StrategyType::kBlueGreen), "blue_green");
  EXPECT_EQ(ToString(StrategyType::kCanary), "canary");
}

Revision FullRevision() {
  Revision r;
  r.tenant = "acme";
  r.deployment = "buyer";
  r.number = 3;
  r.spec = "buyer@1.3.0";
  r.config = {{"funding", 100000}, {"ratio", 0.25}, {"nested", {{"a", {1, 2}}}}};
  r.env = {{"MODEL", "small"}};
  r.change_cause = "spec buyer@1.2.0 -> buyer@1.3.0";
  r.created_at = T(1);
  r.deployed_at = T(2);
  r.outcome = "RolledBack";
  r.outcome_message = "analysis failed: error rate 0.61 > 0.05";
  r.outcome_at = T(3);
  return r;
}

// Through text, as the store keeps it.
Json ThroughText(const Json& j) {
  absl::StatusOr<Json> back = ParseDocument(j.dump(), "row.json");
  EXPECT_TRUE(back.ok()) << back.status();
  return back.ok() ? *back : Json();
}

TEST(RolloutTest, RevisionStoredFormRoundTripsExactly) {
  Json j = ToJson(FullRevision());
  const Json want = Json::parse(R"({
    "tenant": "acme", "deployment": "buyer", "revision": 3, "spec": "buyer@1.3.0",
    "config": {"funding": 100000, "ratio": 0.25, "nested": {"a": [1, 2]}},
    "env": {"MODEL": "small"}, "change_cause": "spec buyer@1.2.0 -> buyer@1.3.0",
    "created_at": "2027-01-15T08:00:00.001Z", "deployed_at": "2027-01-15T08:00:00.002Z",
    "outcome": "RolledBack", "outcome_message": "analysis failed: error rate 0.61 > 0.05",
    "outcome_at": "2027-01-15T08:00:00.003Z"})");
  EXPECT_EQ(j, want) << j.dump(2);
  absl::StatusOr<Revision> back = RevisionFromStored(ThroughText(j));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(ToJson(*back), j);
  EXPECT_EQ(back->number, 3);
  EXPECT_EQ(back->deployed_at, T(2));
  EXPECT_EQ(back->outcome_at, T(3));

  Revision fresh;
  fresh.deployment = "buyer";
  fresh.spec = "buyer@1.0.0";
  fresh.created_at = T(0);
  j = ToJson(fresh);
  EXPECT_TRUE(j["deployed_at"].is_null());
  EXPECT_TRUE(j["outcome_at"].is_null());
  EXPECT_EQ(j["outcome"], "");
  back = RevisionFromStored(ThroughText(j));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(ToJson(*back), j);
  EXPECT_FALSE(back->deployed_at.has_value());
}

TEST(RolloutTest, RevisionStoredFormRefusesCorruptDocuments) {
  const std::pair<std::function<void(Json&)>, std::string> cases[] = {
      {[](Json& j) { j["revision"] = 0; },
       "stored revision: revision.revision: must be a positive integer, got 0"},
      {[](Json& j) { j.erase("revision"); }, "stored revision: revision.revision: required"},
      {[](Json& j) { j.erase("spec"); }, "stored revision: revision.spec: required"},
      {[](Json& j) { j["created_at"] = "yesterday"; },
       "stored revision: revision.created_at: must be an RFC 3339 time"},
      {[](Json& j) { j["env"] = {{"A", {1}}}; },
       "stored revision: revision.env.A: must be a string"},
      {[](Json& j) { j["current"] = true; }, "stored revision: revision.current: unknown field"},
  };
  for (const auto& [mutate, want] : cases) {
    Json j = ToJson(FullRevision());
    mutate(j);
    absl::StatusOr<Revision> r = RevisionFromStored(j);
    ASSERT_FALSE(r.ok()) << want;
    EXPECT_THAT(std::string(r.status().message()), StartsWith(want));
  }
}

TEST(RolloutTest, SameTemplateComparesSpecConfigAndEnv) {
  const Revision r = FullRevision();
  EXPECT_TRUE(SameTemplate(r, r.spec, r.config, r.env));
  EXPECT_FALSE(SameTemplate(r, "buyer@1.4.0", r.config, r.env));
  Json config = r.config;
  config["ratio"] = 0.5;
  EXPECT_FALSE(SameTemplate(r, r.spec, config, r.env));
  EXPECT_FALSE(SameTemplate(r, r.spec, r.config, {{"MODEL", "large"}}));
  EXPECT_FALSE(SameTemplate(r, r.spec, r.config, {}));
}

RolloutState FullState() {
  RolloutState s;
  s.phase = "Paused";
  s.from_revision = 2;
  s.to_revision = 3;
  s.step_index = 4;
  s.weight = 50;
  s.user_paused = true;
  s.pause_reason = "inconclusive";
  s.pause_until = T(10);
  s.promote_full = true;
  s.promote_requested = true;
  s.aborted = true;
  AnalysisRun a;
  a.kind = "canary";
  a.step = 2;
  a.measurements = 5;
  a.successful = 3;
  a.failed = 1;
  a.inconclusive = 1;
  a.next_at = T(11);
  a.phase = "Inconclusive";
  a.last = {{"at", "2027-01-15T08:00:00.009Z"}, {"outcome", "Inconclusive"},
            {"reasons", {"41 tasks < min_samples 50"}}, {"window_s", 30},
            {"candidate", {{"count", 41}, {"error_rate", 0.0243902439}}},
            {"stable", nullptr}};
  s.analysis = a;
  s.preview_ready_at = T(12);
  s.scale_down_revision = 2;
  s.scale_down_at = T(13);
  s.started_at = T(14);
  s.last_progress_at = T(15);
  s.progress_mark = "3:2/2/2";
  s.replicas = 10;
  s.message = "analysis inconclusive: paused for `palm deployment promote`";
  return s;
}

TEST(RolloutTest, RolloutStateStoredFormRoundTripsExactly) {
  const RolloutState s = FullState();
  Json j = ToJson(s);
  EXPECT_EQ(j["pause_until"], "2027-01-15T08:00:00.010Z");
  EXPECT_EQ(j["analysis"]["step"], 2);
  EXPECT_EQ(j["analysis"]["next_at"], "2027-01-15T08:00:00.011Z");
  EXPECT_EQ(j["analysis"]["last"], s.analysis->last);
  EXPECT_EQ(j.size(), 20u) << j.dump(2);
  absl::StatusOr<RolloutState> back = RolloutStateFromStored(ThroughText(j));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(ToJson(*back), j);
  EXPECT_EQ(back->scale_down_at, T(13));
  EXPECT_EQ(back->analysis->phase, "Inconclusive");
  EXPECT_EQ(back->analysis->last, s.analysis->last);

  // A pre-promotion analysis (step -1) with nothing measured yet.
  RolloutState pre;
  pre.phase = "Progressing";
  pre.analysis = AnalysisRun{"pre_promotion"};
  j = ToJson(pre);
  EXPECT_EQ(j["analysis"]["step"], -1);
  EXPECT_TRUE(j["analysis"]["last"].is_null());
  back = RolloutStateFromStored(ThroughText(j));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(ToJson(*back), j);
  EXPECT_EQ(back->analysis->phase, "Running");
}

TEST(RolloutTest, NoRolloutYetIsTheDefaultState) {
  Json j = ToJson(RolloutState());
  EXPECT_EQ(j["phase"], "");
  EXPECT_TRUE(j["analysis"].is_null());
  EXPECT_TRUE(j["started_at"].is_null());
  absl::StatusOr<RolloutState> back = RolloutStateFromStored(Json::object());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(ToJson(*back), j);
  back = RolloutStateFromStored(j);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_FALSE(back->analysis.has_value());
}

TEST(RolloutTest, RolloutStateStoredFormRefusesCorruptDocuments) {
  const std::pair<std::function<void(Json&)>, std::string> cases[] = {
      {[](Json& j) { j["weight"] = 101; }, "rollout.weight: must be at most 100"},
      {[](Json& j) { j["to_revision"] = "3"; }, "rollout.to_revision: must be an integer"},
      {[](Json& j) { j["pause_until"] = 5; }, "rollout.pause_until: must be an RFC 3339 time"},
      {[](Json& j) { j["aborted"] = "no"; }, "rollout.aborted: must be true or false"},
      {[](Json& j) { j["analysis"]["step"] = -2; }, "rollout.analysis.step: must be at least -1"},
      {[](Json& j) { j["analysis"]["extra"] = 1; }, "rollout.analysis.extra: unknown field"},
      {[](Json& j) { j["analysis"] = "x"; }, "rollout.analysis: must be an object"},
      {[](Json& j) { j["stage"] = 1; }, "rollout.stage: unknown field"},
  };
  for (const auto& [mutate, want] : cases) {
    Json j = ToJson(FullState());
    mutate(j);
    absl::StatusOr<RolloutState> s = RolloutStateFromStored(j);
    ASSERT_FALSE(s.ok()) << want;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.status().message()), StartsWith(want));
  }
}

}  // namespace
}  // namespace palm::model
