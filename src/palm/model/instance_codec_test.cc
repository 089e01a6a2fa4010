#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palm/model/codec.h"

namespace palm::model {
namespace {

using ::testing::HasSubstr;

absl::Time T(int64_t ms) { return absl::FromUnixMillis(1'800'000'000'000 + ms); }

Instance Full() {
  Instance i;
  i.tenant = "acme";
  i.id = "buyer-007";
  i.deployment = "buyer";
  i.spec = "buyer@1.2.0";
  i.revision = 3;
  i.seq = 7;
  i.state = InstanceState::kRunning;
  i.pid = 4242;
  i.proc_start_time = 18'446'744'073'709'551'000ull;
  i.proc_boot_id = "6324b2f0-11b1-41e4-a8d5-e45c8afd5cd4";
  i.limits = InstanceLimits{"cgroup v1", 256, 64, std::nullopt, 0.5};
  i.restarts = 2;
  i.consecutive_failures = 1;
  i.last_exit = ExitInfo{std::nullopt, 9, T(1)};
  i.last_error = "spawn failed: ENOENT";
  i.started_at = T(2);
  i.next_start_at = T(3);
  i.ports = {{"http", 41000}, {"grpc", 41001}};
  i.health = HealthStatus::kDegraded;
  i.health_reason = "slow";
  i.health_since = T(4);
  i.ready = true;
  i.ready_since = T(8);
  i.last_heartbeat = T(5);
  i.metrics = {{"orders_per_second", 12.5}};
  i.log_path = "/data/logs/buyer-007.log";
  i.token_hash = "ab12";
  i.created_at = T(6);
  i.updated_at = T(7);
  return i;
}

TEST(InstanceCodecTest, ApiForm) {
  Json j = ToJson(Full());
  const Json want = Json::parse(R"({
    "id": "buyer-007", "tenant": "acme", "deployment": "buyer", "spec": "buyer@1.2.0",
    "revision": 3, "state": "Running", "pid": 4242, "restarts": 2,
    "last_exit": {"code": null, "signal": "SIGKILL", "signal_number": 9,
                  "at": "2027-01-15T08:00:00.001Z"},
    "last_error": "spawn failed: ENOENT", "started_at": "2027-01-15T08:00:00.002Z",
    "ports": {"grpc": 41001, "http": 41000},
    "health": {"status": "Degraded", "reason": "slow", "since": "2027-01-15T08:00:00.004Z"},
    "ready": true, "ready_since": "2027-01-15T08:00:00.008Z",
    "last_heartbeat": "2027-01-15T08:00:00.005Z",
    "metrics": {"orders_per_second": 12.5}, "log_path": "/data/logs/buyer-007.log",
    "limits": {"enforced_by": "cgroup v1", "memory_mb": 256, "max_procs": 64,
               "max_open_files": null, "cpu": 0.5},
    "created_at": "2027-01-15T08:00:00.006Z", "updated_at": "2027-01-15T08:00:00.007Z"})");
  EXPECT_EQ(j, want) << j.dump(2);
}

TEST(InstanceCodecTest, ApiFormOfAFreshInstanceUsesNulls) {
  Instance i;
  i.id = "a-001";
  i.deployment = "a";
  Json j = ToJson(i);
  EXPECT_TRUE(j["pid"].is_null());
  EXPECT_TRUE(j["last_exit"].is_null());
  EXPECT_TRUE(j["last_error"].is_null());
  EXPECT_TRUE(j["started_at"].is_null());
  EXPECT_TRUE(j["last_heartbeat"].is_null());
  EXPECT_TRUE(j["ready_since"].is_null());
  EXPECT_TRUE(j["health"]["reason"].is_null());
  EXPECT_EQ(j["health"]["status"], "Unknown");
  EXPECT_EQ(j["state"], "Pending");
  EXPECT_EQ(j["ports"], Json::object());
  EXPECT_EQ(j["ready"], false);
  EXPECT_TRUE(j["limits"].is_null());  // never started
  EXPECT_FALSE(j.contains("token_hash"));
  EXPECT_FALSE(j.contains("proc_boot_id"));
  EXPECT_FALSE(j.contains("seq"));
}

TEST(InstanceCodecTest, LastExitShapes) {
  Instance i = Full();
  i.last_exit = ExitInfo{3, std::nullopt, T(1)};
  EXPECT_EQ(ToJson(i)["last_exit"],
            Json::parse(R"({"code": 3, "signal": null, "signal_number": null,
                            "at": "2027-01-15T08:00:00.001Z"})"));
  i.last_exit = ExitInfo{std::nullopt, std::nullopt, T(1)};  // vanished while the daemon was down
  EXPECT_EQ(ToJson(i)["last_exit"],
            Json::parse(R"({"code": null, "signal": null, "signal_number": null,
                            "at": "2027-01-15T08:00:00.001Z"})"));
}

TEST(InstanceCodecTest, InternalFormRoundTripsExactly) {
  for (InstanceState state :
       {InstanceState::kPending, InstanceState::kStarting, InstanceState::kRunning,
        InstanceState::kDraining, InstanceState::kStopping, InstanceState::kStopped,
        InstanceState::kFailed, InstanceState::kBackOff, InstanceState::kKilled}) {
    Instance i = Full();
    i.state = state;
    Json j = ToJson(i, /*internal=*/true);
    EXPECT_EQ(j["token_hash"], "ab12");
    EXPECT_EQ(j["seq"], 7);
    EXPECT_EQ(j["proc_start_time"], 18'446'744'073'709'551'000ull);
    EXPECT_EQ(j["consecutive_failures"], 1);
    EXPECT_EQ(j["next_start_at"], "2027-01-15T08:00:00.003Z");
    // Through text, as the store keeps it.
    absl::StatusOr<Json> text = ParseDocument(j.dump(), "row.json");
    ASSERT_TRUE(text.ok());
    absl::StatusOr<Instance> back = InstanceFromStored(*text);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(ToJson(*back, true), j);
    EXPECT_EQ(back->state, state);
    EXPECT_EQ(back->proc_start_time, i.proc_start_time);
    EXPECT_EQ(back->proc_boot_id, i.proc_boot_id);
    ASSERT_TRUE(back->limits.has_value());
    EXPECT_EQ(back->limits->enforced_by, "cgroup v1");
    EXPECT_EQ(back->limits->cpu, 0.5);
    EXPECT_EQ(back->limits->max_open_files, std::nullopt);
    EXPECT_EQ(back->last_exit->signal, 9);
    EXPECT_FALSE(back->last_exit->code.has_value());
    EXPECT_EQ(back->next_start_at, i.next_start_at);
    EXPECT_EQ(back->health_since, i.health_since);
    EXPECT_EQ(back->ready_since, i.ready_since);
    EXPECT_EQ(back->ports, i.ports);
  }
  Instance fresh;
  fresh.id = "a-001";
  fresh.deployment = "a";
  Json j = ToJson(fresh, true);
  absl::StatusOr<Instance> back = InstanceFromStored(j);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(ToJson(*back, true), j);
  EXPECT_FALSE(back->last_exit.has_value());
  EXPECT_FALSE(back->started_at.has_value());
  EXPECT_EQ(back->pid, 0);
}

TEST(InstanceCodecTest, StoredFormRefusesCorruptRows) {
  const std::pair<std::function<void(Json&)>, std::string> cases[] = {
      {[](Json& j) { j["state"] = "Sleeping"; }, "instance.state: is not an instance state"},
      {[](Json& j) { j.erase("state"); }, "instance.state: required"},
      {[](Json& j) { j.erase("id"); }, "instance.id: required"},
      {[](Json& j) { j["pid"] = -1; }, "instance.pid: must not be negative"},
      {[](Json& j) { j["ports"]["http"] = 70000; }, "instance.ports.http: must be at most 65535"},
      {[](Json& j) { j["health"]["status"] = "OK"; }, "instance.health.status"},
      {[](Json& j) { j["started_at"] = 5; }, "instance.started_at: must be an RFC 3339 time"},
      {[](Json& j) { j["last_exit"]["signal_number"] = nullptr; j["last_exit"]["signal"] = 3; },
       "instance.last_exit.signal: must be a signal name"},
      {[](Json& j) { j["bogus"] = 1; }, "instance.bogus: unknown field"},
      {[](Json& j) { j["limits"]["memory_mb"] = 0; }, "instance.limits.memory_mb"},
      {[](Json& j) { j["limits"]["extra"] = 0; }, "instance.limits.extra: unknown field"},
  };
  for (const auto& [mutate, want] : cases) {
    Json j = ToJson(Full(), true);
    mutate(j);
    absl::StatusOr<Instance> i = InstanceFromStored(j);
    ASSERT_FALSE(i.ok()) << want;
    EXPECT_THAT(std::string(i.status().message()), HasSubstr("stored instance: " + want));
  }
  // The signal name alone is enough (signal_number wins when both are present).
  Json j = ToJson(Full(), true);
  j["last_exit"].erase("signal_number");
  j["last_exit"]["signal"] = "SIGTERM";
  EXPECT_EQ(InstanceFromStored(j)->last_exit->signal, 15);
}

}  // namespace
}  // namespace palm::model
