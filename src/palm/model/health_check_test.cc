#include "palm/model/health_check.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palm/base/error.h"
#include "palm/model/codec.h"

namespace palm::model {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::vector<std::string> kPorts = {"http", "metrics"};

Json Yaml(std::string_view text) {
  absl::StatusOr<Json> j = ParseDocument(text, "hc.yaml");
  EXPECT_TRUE(j.ok()) << j.status();
  return j.ok() ? *j : Json();
}

absl::StatusOr<HealthCheckSpec> Parse(std::string_view yaml) {
  return ParseHealthCheck(Yaml(yaml), kPorts, "spec.health_check");
}

TEST(HealthCheckTest, DesignExampleWithDefaults) {
  absl::StatusOr<HealthCheckSpec> hc = Parse(R"(
liveness:  {http: {port: http, path: /healthz}, initial_delay_s: 0, period_s: 10,
            timeout_s: 2, success_threshold: 1, failure_threshold: 3}
readiness: {heartbeat: {max_age_s: 15}}
startup: {tcp: {port: metrics}, period_s: 2, failure_threshold: 30}
)");
  ASSERT_TRUE(hc.ok()) << hc.status();
  ASSERT_TRUE(hc->liveness && hc->readiness && hc->startup);
  EXPECT_EQ(hc->liveness->type, ProbeType::kHttp);
  EXPECT_EQ(hc->liveness->port, "http");
  EXPECT_EQ(hc->liveness->path, "/healthz");
  EXPECT_EQ(hc->liveness->timeout_s, 2);
  EXPECT_EQ(hc->readiness->type, ProbeType::kHeartbeat);
  EXPECT_EQ(hc->readiness->max_age_s, 15);
  EXPECT_EQ(hc->readiness->period_s, 10);
  EXPECT_EQ(hc->readiness->timeout_s, 1);
  EXPECT_EQ(hc->readiness->success_threshold, 1);
  EXPECT_EQ(hc->readiness->failure_threshold, 3);
  EXPECT_EQ(hc->readiness->initial_delay_s, 0);
  EXPECT_EQ(hc->startup->type, ProbeType::kTcp);
  EXPECT_EQ(hc->startup->port, "metrics");
  EXPECT_EQ(hc->startup->failure_threshold, 30);
  EXPECT_FALSE(hc->empty());
}

TEST(HealthCheckTest, EmptyAndNullMeanNoProbes) {
  for (const Json& j : {Json(), Json::object()}) {
    absl::StatusOr<HealthCheckSpec> hc = ParseHealthCheck(j, {}, "spec.health_check");
    ASSERT_TRUE(hc.ok()) << hc.status();
    EXPECT_TRUE(hc->empty());
  }
}

TEST(HealthCheckTest, ExecFormsAndHeartbeatDefaults) {
  absl::StatusOr<HealthCheckSpec> hc = Parse(R"(
liveness: {exec: [pg_isready, -q]}
readiness: {exec: {command: [sh, -c, "test -f /tmp/ready"]}, success_threshold: 2}
startup: {heartbeat: , period_s: 4}
)");
  ASSERT_TRUE(hc.ok()) << hc.status();
  EXPECT_EQ(hc->liveness->command, (std::vector<std::string>{"pg_isready", "-q"}));
  EXPECT_EQ(hc->readiness->command.size(), 3u);
  EXPECT_EQ(hc->readiness->success_threshold, 2);
  EXPECT_EQ(hc->startup->type, ProbeType::kHeartbeat);
  EXPECT_EQ(hc->startup->max_age_s, 12);  // 3 x period_s
}

TEST(HealthCheckTest, HttpPathDefaultsToRoot) {
  absl::StatusOr<HealthCheckSpec> hc = Parse("liveness: {http: {port: http}}");
  ASSERT_TRUE(hc.ok()) << hc.status();
  EXPECT_EQ(hc->liveness->path, "/");
  EXPECT_EQ(ToString(hc->liveness->type), "http");
}

struct BadCase {
  std::string name;
  std::string yaml;
  std::string message;  // prefix of the status message
};

TEST(HealthCheckTest, RefusesBadInputWithFieldPath) {
  const BadCase cases[] = {
      {"not an object", "[1]", "spec.health_check: must be an object"},
      {"unknown kind", "liveliness: {tcp: {port: http}}", "spec.health_check.liveliness: unknown field; did you mean \"liveness\"?"},
      {"probe not object", "liveness: http", "spec.health_check.liveness: must be an object"},
      {"unknown type", "liveness: {grpc: {port: http}}", "spec.health_check.liveness.grpc: unknown field"},
      {"no type", "liveness: {period_s: 5}", "spec.health_check.liveness: has no probe type"},
      {"two types", "liveness: {tcp: {port: http}, http: {port: http}}",
       "spec.health_check.liveness: has 2 probe types (http and tcp)"},
      {"unknown http field", "liveness: {http: {port: http, host: x}}",
       "spec.health_check.liveness.http.host: unknown field"},
      {"missing port", "liveness: {http: {path: /x}}",
       "spec.health_check.liveness.http.port: required"},
      {"undeclared port", "readiness: {tcp: {port: grpc}}",
       "spec.health_check.readiness.tcp.port: port \"grpc\" is not declared"},
      {"port not string", "readiness: {tcp: {port: 8080}}",
       "spec.health_check.readiness.tcp.port: must be a string"},
      {"path without slash", "liveness: {http: {port: http, path: healthz}}",
       "spec.health_check.liveness.http.path: must start with '/'"},
      {"path with space", "liveness: {http: {port: http, path: \"/a b\"}}",
       "spec.health_check.liveness.http.path: contains whitespace"},
      {"failure threshold 0", "liveness: {tcp: {port: http}, failure_threshold: 0}",
       "spec.health_check.liveness.failure_threshold: must be"},
      {"success threshold 0", "readiness: {tcp: {port: http}, success_threshold: 0}",
       "spec.health_check.readiness.success_threshold: must be"},
      {"liveness success 2", "liveness: {tcp: {port: http}, success_threshold: 2}",
       "spec.health_check.liveness.success_threshold: must be 1 for a liveness probe"},
      {"startup success 2", "startup: {tcp: {port: http}, success_threshold: 2}",
       "spec.health_check.startup.success_threshold: must be 1 for a startup probe"},
      {"fractional threshold", "readiness: {tcp: {port: http}, failure_threshold: 1.5}",
       "spec.health_check.readiness.failure_threshold: must be"},
      {"period 0", "liveness: {tcp: {port: http}, period_s: 0}",
       "spec.health_check.liveness.period_s: must be at least 0.1"},
      {"period negative", "liveness: {tcp: {port: http}, period_s: -1}",
       "spec.health_check.liveness.period_s: must not be negative"},
      {"period absurd", "liveness: {tcp: {port: http}, period_s: 86400}",
       "spec.health_check.liveness.period_s: must be at most 3600"},
      {"timeout 0", "liveness: {tcp: {port: http}, timeout_s: 0}",
       "spec.health_check.liveness.timeout_s: must be greater than 0"},
      {"timeout string", "liveness: {tcp: {port: http}, timeout_s: 1s}",
       "spec.health_check.liveness.timeout_s: must be a number"},
      {"delay negative", "liveness: {tcp: {port: http}, initial_delay_s: -1}",
       "spec.health_check.liveness.initial_delay_s: must not be negative"},
      {"threshold absurd", "liveness: {tcp: {port: http}, failure_threshold: 1000000}",
       "spec.health_check.liveness.failure_threshold: must be"},
      {"exec empty", "liveness: {exec: []}", "spec.health_check.liveness.exec: must not be empty"},
      {"exec string", "liveness: {exec: \"curl localhost\"}",
       "spec.health_check.liveness.exec: must be a list"},
      {"exec empty arg", "liveness: {exec: [\"\"]}",
       "spec.health_check.liveness.exec[0]: must not be empty"},
      {"exec object empty", "liveness: {exec: {command: []}}",
       "spec.health_check.liveness.exec.command: must not be empty"},
      {"exec object unknown", "liveness: {exec: {cmd: [a]}}",
       "spec.health_check.liveness.exec.cmd: unknown field; did you mean \"command\"?"},
      {"heartbeat max_age 0", "readiness: {heartbeat: {max_age_s: 0}}",
       "spec.health_check.readiness.heartbeat.max_age_s: must be greater than 0"},
      {"heartbeat unknown", "readiness: {heartbeat: {max_age: 3}}",
       "spec.health_check.readiness.heartbeat.max_age: unknown field; did you mean \"max_age_s\"?"},
  };
  for (const BadCase& c : cases) {
    absl::StatusOr<HealthCheckSpec> hc = Parse(c.yaml);
    ASSERT_FALSE(hc.ok()) << c.name;
    EXPECT_EQ(hc.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(std::string(hc.status().message()), StartsWith(c.message)) << c.name;
  }
}

TEST(HealthCheckTest, HintsSayWhatToWrite) {
  absl::StatusOr<HealthCheckSpec> hc = Parse("readiness: {tcp: {port: grpc}}");
  ASSERT_FALSE(hc.ok());
  EXPECT_THAT(ErrorHint(hc.status()), HasSubstr("http, metrics"));
  hc = Parse("liveness: {period_s: 5}");
  ASSERT_FALSE(hc.ok());
  EXPECT_THAT(ErrorHint(hc.status()), HasSubstr("heartbeat"));
  hc = ParseHealthCheck(Yaml("liveness: {tcp: {port: http}}"), {}, "spec.health_check");
  ASSERT_FALSE(hc.ok());
  EXPECT_THAT(ErrorHint(hc.status()), HasSubstr("ports: [http]"));
}

TEST(HealthCheckTest, SpecRegistrationValidatesAndKeepsVerbatimEcho) {
  Json doc = {{"name", "a"},
              {"version", "1.0.0"},
              {"command", {"./a"}},
              {"ports", {"http"}},
              {"health_check", {{"liveness", {{"http", {{"port", "http"}}}}}}}};
  absl::StatusOr<AgentSpec> s = SpecFromJson(doc);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(s->health.liveness.has_value());
  EXPECT_EQ(s->health.liveness->period_s, 10);
  EXPECT_EQ(SpecBody(*s)["health_check"], doc["health_check"]);  // no defaults added

  doc["health_check"]["liveness"]["http"]["port"] = "grpc";
  s = SpecFromJson(doc);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()),
              StartsWith("spec.health_check.liveness.http.port: port \"grpc\""));
}

TEST(HealthCheckTest, StoredSpecWithInvalidHealthCheckLoadsWithoutProbes) {
  Json doc = {{"name", "a"},         {"version", "1.0.0"},
              {"command", {"./a"}},  {"health_check", {{"liveness", {{"grpc", 1}}}}},
              {"tenant", "default"}, {"created_at", "2026-01-01T00:00:00Z"},
              {"updated_at", "2026-01-01T00:00:00Z"}};
  absl::StatusOr<AgentSpec> s = SpecFromStored(doc);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->health.empty());
  EXPECT_EQ(s->health_check, doc["health_check"]);
}

}  // namespace
}  // namespace palm::model
