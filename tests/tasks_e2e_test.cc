// Tasks end to end: a real daemon, real agents on the Python SDK, real kill -9s.
#include <signal.h>

#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/harness.h"

namespace palm::testing {
namespace {

using ::testing::HasSubstr;

// tests/agents/task_agent.py: answers {"echo": input, "instance": id, "attempt": n}; input
// {"sleep_s": x} makes it take that long, {"fail": true} makes it answer ok: false.
Json TaskAgentSpec(double grace_s = 5) {
  return {{"kind", "AgentSpec"},
          {"name", "worker"},
          {"version", "1.0.0"},
          {"command", {"python3", SourceDir() + "/tests/agents/task_agent.py"}},
          {"env", {{"PYTHONPATH", SourceDir() + "/sdk/python"}}},
          {"stop", {{"signal", "SIGTERM"}, {"grace_s", grace_s}}}};
}

Json FastRestart() {
  return {{"policy", "always"}, {"backoff_initial_s", 0.05}, {"backoff_max_s", 1}};
}

class TasksTest : public ::testing::Test {
 protected:
  void SetUp() override { daemon_.Start(); }
  void TearDown() override {
    daemon_.StopWithAgents();
  }

  void Deploy(const std::string& name, int replicas) {
    daemon_.RegisterSpec(TaskAgentSpec());
    daemon_.CreateDeployment({{"name", name},
                              {"spec", "worker@1.0.0"},
                              {"replicas", replicas},
                              {"restart_policy", FastRestart()}});
    ASSERT_TRUE(daemon_.WaitRunning(name, replicas));
  }

  // Waits (long polls) until the task is finished; returns the task.
  Json AwaitTask(const std::string& id, absl::Duration timeout = absl::Seconds(60)) {
    absl::Time deadline = absl::Now() + timeout;
    Json t;
    while (absl::Now() < deadline) {
      t = daemon_.Call("GET", "/v1/tasks/" + id + "?wait_s=10").body;
      std::string state = t.value("state", "");
      if (state != "Queued" && state != "Assigned") return t;
    }
    return t;
  }

  Json Submit(const Json& body, unsigned want = 201) {
    auto r = daemon_.Call("POST", "/v1/tasks", body);
    EXPECT_EQ(r.status, want) << r.raw;
    return r.body;
  }

  TempDir dir_;
  Daemon daemon_{dir_.path()};
};

TEST_F(TasksTest, FiveHundredTasksThroughFiveAgentsSurviveAKill9dAgent) {
  Deploy("workers", 5);
  std::vector<std::string> ids;
  for (int i = 0; i < 500; ++i) {
    // A little work each, so tasks are in flight when the agent dies.
    Json t = Submit({{"deployment", "workers"}, {"input", {{"n", i}, {"sleep_s", 0.002}}}});
    ids.push_back(t["id"]);
    if (i == 150) {
      auto victims = daemon_.Instances("workers");
      ASSERT_FALSE(victims.empty());
      ASSERT_EQ(::kill(victims[2]["pid"].get<int>(), SIGKILL), 0);
    }
  }
  std::map<std::string, int> per_instance;
  int retried = 0;
  for (int i = 0; i < 500; ++i) {
    Json t = AwaitTask(ids[i]);
    ASSERT_EQ(t["state"], "Succeeded") << t;
    EXPECT_EQ(t["output"]["echo"]["n"], i) << t;
    EXPECT_EQ(t["output"]["instance"], t["instance"]) << t;
    EXPECT_EQ(t["output"]["attempt"], t["attempts"]) << t;
    ++per_instance[t["instance"].get<std::string>()];
    if (t["attempts"].get<int>() > 1) ++retried;
  }
  // Work was spread over the agents (5 of them, one restarted under the same id).
  EXPECT_GE(per_instance.size(), 4u);
  // The per-revision metrics saw every result.
  Json m = daemon_.Call("GET", "/v1/deployments/workers/task-metrics?window_s=600").body;
  EXPECT_EQ(m["revisions"]["1"]["succeeded"], 500) << m;
  EXPECT_GT(m["revisions"]["1"]["p99_ms"].get<double>(), 0) << m;
  Json dep = daemon_.Call("GET", "/v1/deployments/workers").body;
  EXPECT_EQ(dep["status"]["tasks"]["queued"], 0) << dep;
  (void)retried;  // the kill may or may not have caught a task in flight
}

TEST_F(TasksTest, BroadcastReachesEveryReadyMemberWithItsOwnResult) {
  Deploy("crew", 3);
  Json t = Submit({{"deployment", "crew"}, {"mode", "broadcast"}, {"input", {{"ping", 1}}}});
  ASSERT_EQ(t["deliveries"].size(), 3u) << t;
  t = AwaitTask(t["id"]);
  ASSERT_EQ(t["state"], "Succeeded") << t;
  std::set<std::string> members;
  for (const Json& d : t["deliveries"]) {
    EXPECT_EQ(d["state"], "Succeeded") << d;
    EXPECT_EQ(d["output"]["instance"], d["instance"]) << d;
    members.insert(d["instance"]);
  }
  std::set<std::string> expected;
  for (const Json& in : daemon_.Instances("crew")) expected.insert(in["id"]);
  EXPECT_EQ(members, expected);
}

TEST_F(TasksTest, TargetsIdempotencyAndFailures) {
  Deploy("team", 2);
  std::string second = daemon_.Instances("team")[1]["id"];
  for (int i = 0; i < 5; ++i) {
    Json t = AwaitTask(Submit({{"deployment", "team"}, {"target", second}, {"input", i}})["id"]);
    EXPECT_EQ(t["instance"], second) << t;
  }
  Json a = Submit({{"deployment", "team"}, {"input", 1}, {"idempotency_key", "order-7"}});
  Json b = Submit({{"deployment", "team"}, {"input", 2}, {"idempotency_key", "order-7"}}, 200);
  EXPECT_EQ(a["id"], b["id"]);
  EXPECT_EQ(b["input"], 1);
  Json failed = AwaitTask(Submit({{"deployment", "team"}, {"input", {{"fail", true}}}})["id"]);
  EXPECT_EQ(failed["state"], "Failed") << failed;
  EXPECT_THAT(failed["error"].get<std::string>(), HasSubstr("asked to fail"));
  EXPECT_EQ(failed["attempts"], 1);  // an answer is not retried
}

TEST_F(TasksTest, BadInputIsRefusedAndChangesNothing) {
  Deploy("team", 1);
  auto post = [&](const std::string& body) {
    return daemon_.CallRaw("POST", "/v1/tasks", body, daemon_.token());
  };
  EXPECT_EQ(post(R"({"deployment":"nope","input":{}})").status, 404u);
  EXPECT_EQ(post(R"({"deployment":"team","input":{},"mode":"multicast"})").status, 400u);
  EXPECT_EQ(post(R"({"deployment":"team","input":{},"target":"Bad Target"})").status, 400u);
  EXPECT_EQ(post(R"({"deployment":"team","input":{},"target":"team-999"})").status, 400u);
  EXPECT_EQ(post(R"({"deployment":"team","input":{},"timeout_s":0})").status, 400u);
  EXPECT_EQ(post(R"({"deployment":"team","input":{},"colour":"red"})").status, 400u);
  EXPECT_EQ(post(R"({"deployment":"team",)").status, 400u);
  std::string big = R"({"deployment":"team","input":")" + std::string(300 * 1024, 'x') + "\"}";
  EXPECT_EQ(post(big).status, 413u);
  EXPECT_TRUE(daemon_.Call("GET", "/v1/tasks").body["items"].empty());
  // Agent endpoints want an instance token; the admin token is refused.
  EXPECT_EQ(daemon_.Call("GET", "/v1/agent/tasks/next?wait_s=0").status, 403u);
  EXPECT_EQ(daemon_.Call("POST", "/v1/agent/tasks/task-00000001/result", {{"ok", true}}).status,
            403u);
  EXPECT_EQ(daemon_.Call("GET", "/v1/tasks/task-00000042").status, 404u);
  EXPECT_EQ(daemon_.Call("GET", "/v1/tasks?state=Sleeping").status, 400u);
}

TEST_F(TasksTest, QueuedTasksSurviveAKill9dDaemonAndAreDeliveredAfterRestart) {
  daemon_.RegisterSpec(TaskAgentSpec());
  daemon_.CreateDeployment({{"name", "later"}, {"spec", "worker@1.0.0"}, {"replicas", 0}});
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    ids.push_back(Submit({{"deployment", "later"}, {"input", {{"n", i}}}})["id"]);
  }
  daemon_.Kill9();
  daemon_.Start();
  Json q = daemon_.Call("GET", "/v1/tasks?deployment=later&state=Queued").body;
  EXPECT_EQ(q["items"].size(), 20u) << q;
  ASSERT_EQ(daemon_.Call("POST", "/v1/deployments/later/scale", {{"replicas", 2}}).status, 200u);
  for (int i = 0; i < 20; ++i) {
    Json t = AwaitTask(ids[i]);
    EXPECT_EQ(t["state"], "Succeeded") << t;
    EXPECT_EQ(t["output"]["echo"]["n"], i) << t;
  }
}

TEST_F(TasksTest, DrainLetsTheTaskInFlightFinishThenReplacesTheInstance) {
  Deploy("slow", 1);
  std::string id = daemon_.Instances("slow")[0]["id"];
  Json t = Submit({{"deployment", "slow"}, {"input", {{"sleep_s", 1.5}}}});
  ASSERT_TRUE(WaitFor([&] {
    return daemon_.Call("GET", "/v1/tasks/" + t["id"].get<std::string>()).body["state"] ==
           "Assigned";
  }));
  auto r = daemon_.Call("POST", "/v1/instances/" + id + "/drain");
  ASSERT_EQ(r.status, 202u) << r.raw;
  EXPECT_EQ(r.body["state"], "Draining") << r.raw;
  // The task in flight finishes on the draining instance...
  Json done = AwaitTask(t["id"]);
  EXPECT_EQ(done["state"], "Succeeded") << done;
  EXPECT_EQ(done["instance"], id);
  // ...then it is stopped and removed, and a replacement took its place.
  ASSERT_TRUE(WaitFor([&] {
    auto in = daemon_.Instances("slow");
    return in.size() == 1 && in[0]["id"] != id && in[0]["state"] == "Running";
  })) << daemon_.Call("GET", "/v1/instances").raw;
  // A drained deployment stops its instances; resume brings them back.
  ASSERT_EQ(daemon_.Call("POST", "/v1/deployments/slow/drain").status, 202u);
  ASSERT_TRUE(WaitFor([&] { return daemon_.Instances("slow").empty(); }));
  Json queued = Submit({{"deployment", "slow"}, {"input", {{"n", 1}}}});
  EXPECT_EQ(daemon_.Call("GET", "/v1/tasks/" + queued["id"].get<std::string>()).body["state"],
            "Queued");
  ASSERT_EQ(daemon_.Call("POST", "/v1/deployments/slow/resume").status, 200u);
  EXPECT_EQ(AwaitTask(queued["id"])["state"], "Succeeded");
}

TEST_F(TasksTest, FleetDeployRecordsTheTaskAndRunBroadcastsIt) {
  Deploy("dal", 2);
  auto r = daemon_.Call("POST", "/v1/deployments/dal/fleet-task", {{"task", "count the stars"}});
  ASSERT_EQ(r.status, 200u) << r.raw;
  EXPECT_EQ(r.body["last_deployed_task"], "count the stars");
  EXPECT_TRUE(r.body["last_deployed_at"].is_string());
  EXPECT_EQ(daemon_.Call("POST", "/v1/deployments/dal/fleet-task", {{"task", 7}}).status, 400u);
}

}  // namespace
}  // namespace palm::testing
