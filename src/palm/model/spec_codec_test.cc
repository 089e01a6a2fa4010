#include <functional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palm/base/error.h"
#include "palm/model/codec.h"

namespace palm::model {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr std::string_view kDesignSpec = R"(
kind: AgentSpec
name: buyer
version: 1.2.0                      # semver
command: ["python3", "examples/agents/trader.py", "--role", "buyer"]
workdir: .
env: {MODEL: small, THREADS: 4, DEBUG: false}
config: {funding: 100000, budget: 50000, strategy: momentum}
params: {role: buyer}
resources: {memory_mb: 256, cpu: 0.5, max_procs: 64, max_open_files: 1024}
ports: [http]
health_check:
  liveness:  {http: {port: http, path: /healthz}, initial_delay_s: 0, period_s: 10,
              timeout_s: 2, success_threshold: 1, failure_threshold: 3}
  readiness: {heartbeat: {max_age_s: 15}}
capabilities: [payment.initiate, escrow.release]
stop: {signal: SIGTERM, grace_s: 30}
labels: {role: buyer}
)";

Json Base() {
  absl::StatusOr<Json> doc = ParseDocument(kDesignSpec, "spec.yaml");
  EXPECT_TRUE(doc.ok()) << doc.status();
  return *doc;
}

TEST(SpecCodecTest, ParsesTheDesignExample) {
  absl::StatusOr<AgentSpec> s = SpecFromJson(Base());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->name, "buyer");
  EXPECT_EQ(s->version, "1.2.0");
  EXPECT_EQ(s->command.size(), 4u);
  EXPECT_EQ(s->workdir, ".");
  EXPECT_EQ(s->env, (StringMap{{"MODEL", "small"}, {"THREADS", "4"}, {"DEBUG", "false"}}));
  EXPECT_EQ(s->config["funding"], 100000);
  EXPECT_EQ(s->params.at("role"), "buyer");
  EXPECT_EQ(s->resources.memory_mb, 256);
  EXPECT_EQ(s->resources.cpu, 0.5);
  EXPECT_EQ(s->resources.max_procs, 64);
  EXPECT_EQ(s->resources.max_open_files, 1024);
  EXPECT_EQ(s->ports, std::vector<std::string>{"http"});
  EXPECT_EQ(s->health_check["readiness"]["heartbeat"]["max_age_s"], 15);
  EXPECT_EQ(s->capabilities.size(), 2u);
  EXPECT_EQ(s->stop.signal, 15);
  EXPECT_EQ(s->stop.grace_s, 30);
  EXPECT_EQ(s->labels.at("role"), "buyer");
  EXPECT_EQ(s->tenant, "default");
}

TEST(SpecCodecTest, MinimalSpecGetsDefaults) {
  absl::StatusOr<AgentSpec> s =
      SpecFromJson({{"name", "a"}, {"version", "0.1.0"}, {"command", {"./a"}}});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->stop.signal, 15);
  EXPECT_EQ(s->stop.grace_s, 30);
  EXPECT_FALSE(s->resources.memory_mb.has_value());
  EXPECT_EQ(s->config, Json::object());
  EXPECT_EQ(s->health_check, Json::object());
}

struct BadCase {
  std::string name;
  std::function<void(Json&)> mutate;
  std::string want;  // substring of the message
};

TEST(SpecCodecTest, RefusesBadInputWithFieldPaths) {
  const BadCase cases[] = {
      {"typo", [](Json& j) { j["comand"] = j["command"]; },
       "spec.comand: unknown field; did you mean \"command\"?"},
      {"compose name", [](Json& j) { j["environment"] = Json::object(); },
       "spec.environment: unknown field; did you mean \"env\"?"},
      {"case", [](Json& j) { j["Name"] = "x"; }, "spec.Name: unknown field; did you mean \"name\"?"},
      {"far off", [](Json& j) { j["zzzzzz"] = 1; }, "spec.zzzzzz: unknown field"},
      {"missing command", [](Json& j) { j.erase("command"); },
       "spec.command: required (the program and its arguments, e.g. [\"python3\", \"agent.py\"])"},
      {"null command", [](Json& j) { j["command"] = nullptr; }, "spec.command: required"},
      {"empty command", [](Json& j) { j["command"] = Json::array(); },
       "spec.command: must not be empty"},
      {"string command", [](Json& j) { j["command"] = "python3 a.py"; },
       "spec.command: must be a list, got string \"python3 a.py\""},
      {"empty element", [](Json& j) { j["command"] = {"python3", ""}; },
       "spec.command[1]: must not be empty"},
      {"number element", [](Json& j) { j["command"] = {"sleep", 5}; },
       "spec.command[1]: must be a string, got 5"},
      {"nul element", [](Json& j) { j["command"] = {std::string("a\0b", 3)}; },
       "spec.command[0]: contains a NUL byte"},
      {"missing name", [](Json& j) { j.erase("name"); }, "spec.name: required"},
      {"bad name", [](Json& j) { j["name"] = "Buyer"; }, "spec.name: \"Buyer\""},
      {"name type", [](Json& j) { j["name"] = 7; }, "spec.name: must be a string, got 7"},
      {"missing version", [](Json& j) { j.erase("version"); }, "spec.version: required"},
      {"short version", [](Json& j) { j["version"] = "1.2"; },
       "spec.version: \"1.2\" is not a semantic version"},
      {"leading zero", [](Json& j) { j["version"] = "01.2.3"; }, "not a semantic version"},
      {"numeric version", [](Json& j) { j["version"] = 1.2; },
       "spec.version: must be a string, got 1.2"},
      {"kind", [](Json& j) { j["kind"] = "Deployment"; },
       "spec.kind: must be \"AgentSpec\", got string \"Deployment\""},
      {"env object", [](Json& j) { j["env"]["MODEL"] = {{"a", 1}}; },
       "spec.env.MODEL: must be a string, got an object"},
      {"env null", [](Json& j) { j["env"]["MODEL"] = nullptr; },
       "spec.env.MODEL: must be a string, got null"},
      {"env list", [](Json& j) { j["env"] = {"A=1"}; }, "spec.env: must be a map"},
      {"env key", [](Json& j) { j["env"]["A=B"] = "1"; }, "spec.env: key \"A=B\" contains '='"},
      {"config list", [](Json& j) { j["config"] = {1, 2}; },
       "spec.config: must be an object, got a list"},
      {"params key", [](Json& j) { j["params"]["a b"] = "x"; }, "spec.params: key \"a b\""},
      {"port name", [](Json& j) { j["ports"] = {"HTTP"}; }, "spec.ports[0]: \"HTTP\""},
      {"port dup", [](Json& j) { j["ports"] = {"http", "grpc", "http"}; },
       "spec.ports[2]: port \"http\" is declared twice"},
      {"port type", [](Json& j) { j["ports"] = {8080}; }, "spec.ports[0]: must be a string"},
      {"too many ports",
       [](Json& j) {
         j["ports"] = Json::array();
         for (int i = 0; i < 33; ++i) j["ports"].push_back("p" + std::to_string(i));
       },
       "spec.ports: declares 33 ports (max 32)"},
      {"memory negative", [](Json& j) { j["resources"]["memory_mb"] = -5; },
       "spec.resources.memory_mb: must be a positive integer, got -5"},
      {"memory string", [](Json& j) { j["resources"]["memory_mb"] = "256"; },
       "spec.resources.memory_mb: must be an integer, got string \"256\""},
      {"memory float", [](Json& j) { j["resources"]["memory_mb"] = 2.5; },
       "spec.resources.memory_mb: must be an integer, got 2.5"},
      {"memory huge", [](Json& j) { j["resources"]["memory_mb"] = 2000000; },
       "spec.resources.memory_mb: must be at most 1048576, got 2000000"},
      {"memory u64", [](Json& j) { j["resources"]["memory_mb"] = UINT64_MAX; },
       "spec.resources.memory_mb: must be at most 1048576"},
      {"cpu zero", [](Json& j) { j["resources"]["cpu"] = 0; },
       "spec.resources.cpu: must be a positive number of cores, got 0"},
      {"cpu huge", [](Json& j) { j["resources"]["cpu"] = 2000; },
       "spec.resources.cpu: must be at most 1024"},
      {"procs", [](Json& j) { j["resources"]["max_procs"] = 0; },
       "spec.resources.max_procs: must be a positive integer, got 0"},
      {"files", [](Json& j) { j["resources"]["max_open_files"] = true; },
       "spec.resources.max_open_files: must be an integer, got true"},
      {"resources unknown", [](Json& j) { j["resources"]["memory"] = 1; },
       "spec.resources.memory: unknown field; did you mean \"memory_mb\"?"},
      {"resources type", [](Json& j) { j["resources"] = "big"; },
       "spec.resources: must be an object, got string \"big\""},
      {"signal name", [](Json& j) { j["stop"]["signal"] = "SIGFOO"; },
       "spec.stop.signal: must be a stop signal, got string \"SIGFOO\""},
      {"signal segv", [](Json& j) { j["stop"]["signal"] = "SIGSEGV"; },
       "spec.stop.signal: must be a stop signal"},
      {"signal number", [](Json& j) { j["stop"]["signal"] = 99; },
       "spec.stop.signal: must be a stop signal, got 99"},
      {"grace big", [](Json& j) { j["stop"]["grace_s"] = 4000; },
       "spec.stop.grace_s: must be at most 3600, got 4000"},
      {"grace negative", [](Json& j) { j["stop"]["grace_s"] = -1; },
       "spec.stop.grace_s: must not be negative, got -1"},
      {"stop unknown", [](Json& j) { j["stop"]["grace"] = 1; },
       "spec.stop.grace: unknown field; did you mean \"grace_s\"?"},
      {"label key", [](Json& j) { j["labels"]["a b"] = "x"; },
       "spec.labels: key \"a b\" contains ' '"},
      {"label key long", [](Json& j) { j["labels"][std::string(64, 'k')] = "x"; },
       "(max 63)"},
      {"label value", [](Json& j) { j["labels"]["role"] = Json::array(); },
       "spec.labels.role: must be a string, got a list"},
      {"health list", [](Json& j) { j["health_check"] = Json::array(); },
       "spec.health_check: must be an object, got a list"},
      {"capability type", [](Json& j) { j["capabilities"] = {1}; },
       "spec.capabilities[0]: must be a string, got 1"},
      {"capability space", [](Json& j) { j["capabilities"] = {"a b"}; },
       "spec.capabilities[0]: \"a b\" contains whitespace"},
      {"capability dup", [](Json& j) { j["capabilities"] = {"a", "a"}; },
       "spec.capabilities[1]: \"a\" is listed twice"},
      {"not an object", [](Json& j) { j = Json::array(); }, "spec: must be an object, got a list"},
  };
  for (const BadCase& c : cases) {
    Json doc = Base();
    c.mutate(doc);
    absl::StatusOr<AgentSpec> s = SpecFromJson(doc);
    ASSERT_FALSE(s.ok()) << c.name;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(std::string(s.status().message()), HasSubstr(c.want)) << c.name;
  }
}

TEST(SpecCodecTest, ErrorsCarryHints) {
  Json doc = Base();
  doc["comand"] = doc["command"];
  absl::Status st = SpecFromJson(doc).status();
  EXPECT_THAT(ErrorHint(st), HasSubstr("known fields: kind, name, version, command"));
  doc = Base();
  doc["version"] = "1";
  EXPECT_THAT(ErrorHint(SpecFromJson(doc).status()), HasSubstr("MAJOR.MINOR.PATCH"));
}

TEST(SpecCodecTest, AcceptedVariants) {
  const std::pair<std::function<void(Json&)>, std::function<void(const AgentSpec&)>> cases[] = {
      {[](Json& j) { j["stop"]["signal"] = "TERM"; },
       [](const AgentSpec& s) { EXPECT_EQ(s.stop.signal, 15); }},
      {[](Json& j) { j["stop"]["signal"] = 9; },
       [](const AgentSpec& s) { EXPECT_EQ(s.stop.signal, 9); }},
      {[](Json& j) { j["stop"]["signal"] = "sigint"; },
       [](const AgentSpec& s) { EXPECT_EQ(s.stop.signal, 2); }},
      {[](Json& j) { j["stop"]["signal"] = "SIGWINCH"; },
       [](const AgentSpec& s) { EXPECT_EQ(s.stop.signal, 28); }},
      {[](Json& j) { j["stop"]["grace_s"] = 0.5; },
       [](const AgentSpec& s) { EXPECT_EQ(s.stop.grace_s, 0.5); }},
      {[](Json& j) { j["resources"]["memory_mb"] = 512.0; },
       [](const AgentSpec& s) { EXPECT_EQ(s.resources.memory_mb, 512); }},
      {[](Json& j) { j["env"]["RATIO"] = 0.25; },
       [](const AgentSpec& s) { EXPECT_EQ(s.env.at("RATIO"), "0.25"); }},
      {[](Json& j) { j["labels"]["tier"] = 2; },
       [](const AgentSpec& s) { EXPECT_EQ(s.labels.at("tier"), "2"); }},
      {[](Json& j) { j["labels"]["app.kubernetes.io/name"] = "x"; },
       [](const AgentSpec& s) { EXPECT_EQ(s.labels.at("app.kubernetes.io/name"), "x"); }},
      {[](Json& j) { j["workdir"] = nullptr; },
       [](const AgentSpec& s) { EXPECT_EQ(s.workdir, ""); }},
      {[](Json& j) { j["kind"] = nullptr; }, [](const AgentSpec&) {}},
      {[](Json& j) { j["version"] = "1.0.0-rc.1+build.5"; },
       [](const AgentSpec& s) { EXPECT_EQ(s.version, "1.0.0-rc.1+build.5"); }},
      // Server-owned fields from `palm spec get -o yaml` are accepted and ignored.
      {[](Json& j) {
         j["tenant"] = "other";
         j["deprecated"] = true;
         j["created_at"] = "garbage";
       },
       [](const AgentSpec& s) {
         EXPECT_EQ(s.tenant, "default");
         EXPECT_FALSE(s.deprecated);
       }},
  };
  for (const auto& [mutate, check] : cases) {
    Json doc = Base();
    mutate(doc);
    absl::StatusOr<AgentSpec> s = SpecFromJson(doc);
    ASSERT_TRUE(s.ok()) << doc.dump() << ": " << s.status();
    check(*s);
  }
}

TEST(SpecCodecTest, RoundTripsThroughTheStoredForm) {
  absl::StatusOr<AgentSpec> s = SpecFromJson(Base());
  ASSERT_TRUE(s.ok());
  s->tenant = "acme";
  s->deprecated = true;
  s->workdir = "/srv/agents";
  s->created_at = absl::FromUnixMillis(1'800'000'000'123);
  s->updated_at = absl::FromUnixMillis(1'800'000'100'456);
  Json j = ToJson(*s);
  EXPECT_EQ(j["kind"], "AgentSpec");
  EXPECT_EQ(j["created_at"], "2027-01-15T08:00:00.123Z");
  EXPECT_EQ(j["stop"], Json({{"signal", "SIGTERM"}, {"grace_s", 30}}));
  EXPECT_TRUE(j["stop"]["grace_s"].is_number_integer());
  EXPECT_EQ(j["resources"]["cpu"], 0.5);
  absl::StatusOr<AgentSpec> back = SpecFromStored(j);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(ToJson(*back), j);
  EXPECT_EQ(back->tenant, "acme");
  EXPECT_TRUE(back->deprecated);
  EXPECT_EQ(back->created_at, s->created_at);
  // Survives text too (the store keeps dump()).
  absl::StatusOr<Json> reparsed = ParseDocument(j.dump(), "row.json");
  ASSERT_TRUE(reparsed.ok());
  EXPECT_EQ(ToJson(*SpecFromStored(*reparsed)), j);

  // Absent resources are explicit nulls and read back as absent.
  AgentSpec minimal = *SpecFromJson({{"name", "a"}, {"version", "0.1.0"}, {"command", {"a"}}});
  Json mj = ToJson(minimal);
  EXPECT_TRUE(mj["resources"]["memory_mb"].is_null());
  EXPECT_EQ(ToJson(*SpecFromStored(mj)), mj);
}

TEST(SpecCodecTest, SpecBodyIgnoresServerOwnedFields) {
  AgentSpec a = *SpecFromJson(Base());
  AgentSpec b = a;
  b.tenant = "other";
  b.deprecated = true;
  b.created_at = absl::Now();
  EXPECT_EQ(SpecBody(a), SpecBody(b));
  EXPECT_FALSE(SpecBody(a).contains("tenant"));
  EXPECT_FALSE(SpecBody(a).contains("created_at"));
  b.command.push_back("--verbose");
  EXPECT_NE(SpecBody(a), SpecBody(b));
  // The same spec written in JSON or YAML has the same body.
  Json as_json = *ParseDocument(Base().dump(), "s.json");
  EXPECT_EQ(SpecBody(*SpecFromJson(as_json)), SpecBody(a));
}

TEST(SpecCodecTest, StoredFormRefusesCorruptServerFields) {
  Json j = ToJson(*SpecFromJson(Base()));
  j["created_at"] = "yesterday";
  absl::Status st = SpecFromStored(j).status();
  EXPECT_THAT(std::string(st.message()),
              StartsWith("stored spec: spec.created_at: must be an RFC 3339 time"));
}

TEST(SemverTest, Strict200) {
  for (std::string_view v : {"0.0.0", "1.2.3", "10.20.30", "1.0.0-alpha", "1.0.0-alpha.1",
                             "1.0.0-0.3.7", "1.0.0-x.7.z.92", "1.0.0+20130313144700",
                             "1.0.0-beta+exp.sha.5114f85", "1.0.0+001", "1.0.0-x-y-z.--"}) {
    EXPECT_TRUE(IsSemver(v)) << v;
  }
  for (std::string_view v : {"", "1", "1.2", "1.2.3.4", "01.2.3", "1.02.3", "1.2.03", "v1.2.3",
                             "1.2.3-", "1.2.3+", "1.2.3-01", "1.2.3-a..b", "1.2.3-a_b",
                             " 1.2.3", "1.2.3 ", "1..3", "a.b.c", "-1.2.3", "1.2.3-+"}) {
    EXPECT_FALSE(IsSemver(v)) << v;
  }
}

TEST(SpecRefTest, Forms) {
  struct Case {
    std::string ref;
    bool allow_bare;
    std::string name, version, error;
  };
  const Case cases[] = {
      {"buyer@1.2.0", false, "buyer", "1.2.0", ""},
      {"org/agents/buyer:1.2.0", false, "buyer", "1.2.0", ""},
      {"myorg/agents/support-eval:0.4.0-rc.1", false, "support-eval", "0.4.0-rc.1", ""},
      {"buyer", true, "buyer", "", ""},
      {"org/agents/buyer", true, "buyer", "", ""},
      {"buyer", false, "", "", "\"buyer\": needs a version"},
      {"org/agents/buyer", false, "", "", "needs a version"},
      {"buyer@", false, "", "", "version \"\" is not a semantic version"},
      {"buyer@1.2", false, "", "", "\"buyer@1.2\": version \"1.2\" is not a semantic version"},
      {"Buyer@1.2.0", false, "", "", "\"Buyer@1.2.0\": name: \"Buyer\""},
      {"@1.2.0", false, "", "", "is empty"},
      {"buyer:1.2.0", false, "", "", "use '@' between name and version"},
      {"org/buyer:1.2.0", false, "", "", "not a spec reference"},
      {"/agents/buyer:1.2.0", false, "", "", "not a spec reference"},
      {"Org/agents/buyer:1.2.0", false, "", "", "org: \"Org\""},
      {"org/agents/buyer@1.2.0", false, "", "", "name: \"buyer@1.2.0\""},
      {"", true, "", "", "is empty"},
  };
  for (const Case& c : cases) {
    std::string name = "unset", version = "unset";
    absl::Status st = ParseSpecRef(c.ref, c.allow_bare, &name, &version);
    if (c.error.empty()) {
      ASSERT_TRUE(st.ok()) << c.ref << ": " << st;
      EXPECT_EQ(name, c.name) << c.ref;
      EXPECT_EQ(version, c.version) << c.ref;
    } else {
      ASSERT_FALSE(st.ok()) << c.ref;
      EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(std::string(st.message()), HasSubstr(c.error)) << c.ref;
      EXPECT_EQ(name, "unset") << "outputs untouched on failure";
    }
  }
}

}  // namespace
}  // namespace palm::model
