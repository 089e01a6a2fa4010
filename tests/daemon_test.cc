// End-to-end: a real daemon, real agent processes, real kill -9s.
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/harness.h"

namespace palm::testing {
namespace {

using ::testing::HasSubstr;

Json SleepSpec(const std::string& name = "sleeper", double grace_s = 2) {
  return {{"kind", "AgentSpec"},
          {"name", name},
          {"version", "1.0.0"},
          {"command", {"/bin/sleep", "1000000"}},
          {"stop", {{"signal", "SIGTERM"}, {"grace_s", grace_s}}}};
}

Json FastRestart() {
  return {{"policy", "always"}, {"backoff_initial_s", 0.05}, {"backoff_max_s", 1}};
}

std::set<int> Pids(const std::vector<Json>& instances) {
  std::set<int> pids;
  for (const auto& i : instances) {
    if (i["pid"].is_number()) pids.insert(i["pid"].get<int>());
  }
  return pids;
}

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override { daemon_.Start(); }
  void TearDown() override {
    // Stop agents too, so no test leaves processes behind.
    daemon_.StopWithAgents();
  }
  TempDir dir_;
  Daemon daemon_{dir_.path()};
};

TEST_F(DaemonTest, EveryV1CallNeedsAToken) {
  auto r = daemon_.CallRaw("GET", "/v1/deployments", "", "");
  EXPECT_EQ(r.status, 401u);
  EXPECT_EQ(r.body["error"]["code"], "UNAUTHENTICATED");
  EXPECT_EQ(daemon_.CallRaw("GET", "/v1/deployments", "", "wrong").status, 401u);
  EXPECT_EQ(daemon_.Call("GET", "/v1/deployments").status, 200u);
  auto mode = std::filesystem::status(dir_.path() + "/admin.token").permissions();
  EXPECT_EQ(mode, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

TEST_F(DaemonTest, BadInputIsRefusedAndChangesNothing) {
  struct Case {
    std::string body;
    unsigned status;
    std::string message;
  } cases[] = {
      {"{not json", 400, "not valid JSON"},
      {R"({"name":"x","version":"1.0.0","command":["a"],"comand":["b"]})", 400, "comand"},
      {R"({"name":"Bad!","version":"1.0.0","command":["a"]})", 400, "name"},
      {R"({"name":"x","version":"1.0.0","command":[]})", 400, "command"},
      {R"({"name":"x","version":"1.0","command":["a"]})", 400, "version"},
      {R"({"name":"x","version":"1.0.0","command":"a b"})", 400, "command"},
      {R"({"name":"x","version":"1.0.0","command":["a"],"resources":{"memory_mb":-5}})", 400,
       "memory_mb"},
      {R"([1,2])", 400, ""},
  };
  for (const auto& c : cases) {
    auto r = daemon_.CallRaw("POST", "/v1/specs", c.body, daemon_.token());
    EXPECT_EQ(r.status, c.status) << c.body << " -> " << r.raw;
    EXPECT_THAT(r.body["error"]["message"].get<std::string>(), HasSubstr(c.message)) << r.raw;
  }
  // Too big: 413 from the server before any parsing.
  std::string huge = R"({"name":"x","version":"1.0.0","command":["a"],"config":{"blob":")" +
                     std::string(2 << 20, 'a') + "\"}}";
  EXPECT_EQ(daemon_.CallRaw("POST", "/v1/specs", huge, daemon_.token()).status, 413u);
  // Deployments: bad names, absurd replicas, unknown spec.
  daemon_.RegisterSpec(SleepSpec());
  for (const Json& d : {Json{{"name", "UPPER"}, {"spec", "sleeper@1.0.0"}},
                        Json{{"name", "ok"}, {"spec", "sleeper@1.0.0"}, {"replicas", -1}},
                        Json{{"name", "ok"}, {"spec", "sleeper@1.0.0"}, {"replicas", 1000000}},
                        Json{{"name", "ok"}, {"spec", "sleeper@1.0.0"}, {"replicas", "three"}}}) {
    EXPECT_EQ(daemon_.Call("POST", "/v1/deployments", d).status, 400u) << d;
  }
  EXPECT_EQ(daemon_.Call("POST", "/v1/deployments", {{"name", "ok"}, {"spec", "nope@1.0.0"}})
                .status,
            404u);
  // Nothing of the above left a trace.
  EXPECT_EQ(daemon_.Call("GET", "/v1/specs").body["items"].size(), 1u);
  EXPECT_TRUE(daemon_.Call("GET", "/v1/deployments").body["items"].empty());
  EXPECT_TRUE(daemon_.Call("GET", "/v1/instances").body["items"].empty());
  // Re-registering the same version with another body is a conflict; same body a no-op.
  EXPECT_EQ(daemon_.Call("POST", "/v1/specs", SleepSpec()).status, 200u);
  Json other = SleepSpec();
  other["command"] = {"/bin/true"};
  EXPECT_EQ(daemon_.Call("POST", "/v1/specs", other).status, 409u);
  EXPECT_EQ(daemon_.CallRaw("POST", "/v1/specs", "name: x", daemon_.token()).status, 400u);
}

TEST_F(DaemonTest, FiftyReplicasRunAndACrashedOneIsReplaced) {
  daemon_.RegisterSpec(SleepSpec());
  daemon_.CreateDeployment(
      {{"name", "fleet"}, {"spec", "sleeper@1.0.0"}, {"replicas", 50},
       {"restart_policy", FastRestart()}});
  ASSERT_TRUE(daemon_.WaitRunning("fleet", 50));
  auto before = daemon_.Instances("fleet");
  ASSERT_EQ(Pids(before).size(), 50u);
  // Every agent is its own process group and session leader.
  int victim = before[7]["pid"].get<int>();
  EXPECT_EQ(getpgid(victim), victim);
  std::string id = before[7]["id"];
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  ASSERT_TRUE(WaitFor([&] {
    auto r = daemon_.Call("GET", "/v1/instances/" + id);
    return r.body["state"] == "Running" && r.body["restarts"] == 1 &&
           r.body["pid"] != victim;
  })) << daemon_.Call("GET", "/v1/instances/" + id).raw;
  auto inst = daemon_.Call("GET", "/v1/instances/" + id).body;
  EXPECT_EQ(inst["last_exit"]["signal"], "SIGKILL") << inst;
  EXPECT_TRUE(ProcessAlive(inst["pid"].get<int>()));
  EXPECT_FALSE(ProcessAlive(victim));
  auto dep = daemon_.Call("GET", "/v1/deployments/fleet").body;
  EXPECT_EQ(dep["status"]["replicas"]["ready"], 50) << dep;
  EXPECT_EQ(dep["status"]["restarts"], 1);
}

TEST_F(DaemonTest, AgentsOutliveADaemonKilledWithSigkillAndAreAdoptedBack) {
  daemon_.RegisterSpec(SleepSpec());
  daemon_.CreateDeployment({{"name", "fleet"}, {"spec", "sleeper@1.0.0"}, {"replicas", 5},
                            {"restart_policy", FastRestart()}});
  ASSERT_TRUE(daemon_.WaitRunning("fleet", 5));
  // An acknowledged write just before the crash must survive it.
  ASSERT_EQ(daemon_.Call("POST", "/v1/deployments/fleet/scale", {{"replicas", 6}}).status, 200u);
  ASSERT_TRUE(daemon_.WaitRunning("fleet", 6));
  std::set<int> pids = Pids(daemon_.Instances("fleet"));
  daemon_.Kill9();
  for (int pid : pids) EXPECT_TRUE(ProcessAlive(pid)) << pid;

  daemon_.Start();
  ASSERT_TRUE(daemon_.WaitRunning("fleet", 6));
  EXPECT_EQ(Pids(daemon_.Instances("fleet")), pids);  // the same processes, adopted
  EXPECT_EQ(daemon_.Call("GET", "/v1/deployments/fleet").body["replicas"], 6);
  // Adopted agents are supervised again: a crash is seen and healed.
  auto victim = daemon_.Instances("fleet")[0];
  ::kill(victim["pid"].get<int>(), SIGKILL);
  ASSERT_TRUE(WaitFor([&] {
    auto r = daemon_.Call("GET", "/v1/instances/" + victim["id"].get<std::string>()).body;
    return r["restarts"] == 1 && r["state"] == "Running";
  }));
}

TEST_F(DaemonTest, AgentsThatDieWhileTheDaemonIsDownAreReplaced) {
  daemon_.RegisterSpec(SleepSpec());
  daemon_.CreateDeployment({{"name", "fleet"}, {"spec", "sleeper@1.0.0"}, {"replicas", 3},
                            {"restart_policy", FastRestart()}});
  ASSERT_TRUE(daemon_.WaitRunning("fleet", 3));
  auto items = daemon_.Instances("fleet");
  daemon_.Kill9();
  int dead = items[1]["pid"].get<int>();
  ::kill(dead, SIGKILL);
  ASSERT_TRUE(WaitFor([&] { return !ProcessAlive(dead); }));
  daemon_.Start();
  ASSERT_TRUE(daemon_.WaitRunning("fleet", 3));
  auto after = daemon_.Call("GET", "/v1/instances/" + items[1]["id"].get<std::string>()).body;
  EXPECT_NE(after["pid"], dead);
  EXPECT_EQ(after["restarts"], 1);
  EXPECT_EQ(daemon_.Call("GET", "/v1/instances/" + items[0]["id"].get<std::string>())
                .body["pid"],
            items[0]["pid"]);
}

TEST_F(DaemonTest, ScaleDownAndUpAndDeleteLeaveNoStrayProcess) {
  daemon_.RegisterSpec(SleepSpec("sleeper", 0.5));
  daemon_.CreateDeployment({{"name", "fleet"}, {"spec", "sleeper@1.0.0"}, {"replicas", 6}});
  ASSERT_TRUE(daemon_.WaitRunning("fleet", 6));
  auto six = daemon_.Instances("fleet");
  ASSERT_EQ(daemon_.Call("POST", "/v1/deployments/fleet/scale", {{"replicas", 2}}).status, 200u);
  ASSERT_TRUE(daemon_.WaitRunning("fleet", 2));
  auto two = daemon_.Instances("fleet");
  // The oldest two stay; the newest went, and their processes are gone.
  EXPECT_EQ(two[0]["id"], six[0]["id"]);
  EXPECT_EQ(two[1]["id"], six[1]["id"]);
  for (size_t i = 2; i < 6; ++i) {
    int pid = six[i]["pid"].get<int>();
    EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(pid); })) << pid;
  }
  ASSERT_EQ(daemon_.Call("POST", "/v1/deployments/fleet/scale", {{"replicas", 4}}).status, 200u);
  ASSERT_TRUE(daemon_.WaitRunning("fleet", 4));
  EXPECT_EQ(daemon_.Instances("fleet")[3]["id"], "fleet-008");  // ids are never reused

  std::set<int> pids = Pids(daemon_.Instances("fleet"));
  ASSERT_EQ(daemon_.Call("DELETE", "/v1/deployments/fleet").status, 200u);
  EXPECT_EQ(daemon_.Call("GET", "/v1/deployments/fleet").status, 404u);
  ASSERT_TRUE(WaitFor([&] { return daemon_.Instances("fleet").empty(); }));
  for (int pid : pids) EXPECT_FALSE(ProcessAlive(pid)) << pid;
}

TEST_F(DaemonTest, StopEscalatesToSigkillAfterTheGracePeriod) {
  // An agent that ignores SIGTERM.
  daemon_.RegisterSpec({{"name", "stubborn"},
                        {"version", "1.0.0"},
                        {"command", {"/bin/sh", "-c", "trap '' TERM; while :; do sleep 1; done"}},
                        {"stop", {{"signal", "SIGTERM"}, {"grace_s", 0.5}}}});
  daemon_.CreateDeployment({{"name", "stub"}, {"spec", "stubborn@1.0.0"}, {"replicas", 1}});
  ASSERT_TRUE(daemon_.WaitRunning("stub", 1));
  int pid = daemon_.Instances("stub")[0]["pid"].get<int>();
  ASSERT_EQ(daemon_.Call("DELETE", "/v1/deployments/stub").status, 200u);
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(pid); }, absl::Seconds(10)));
  EXPECT_TRUE(WaitFor([&] { return daemon_.Instances("stub").empty(); }));
}

TEST_F(DaemonTest, AMissingCommandIsReportedOnTheInstanceNotACrash) {
  daemon_.RegisterSpec({{"name", "typo"}, {"version", "1.0.0"},
                        {"command", {"no-such-agent-binary"}}});
  daemon_.CreateDeployment({{"name", "typo"}, {"spec", "typo@1.0.0"}, {"replicas", 1}});
  ASSERT_TRUE(WaitFor([&] {
    auto items = daemon_.Instances("typo");
    return items.size() == 1 && items[0]["state"] == "BackOff" &&
           items[0]["last_error"].is_string();
  }));
  auto inst = daemon_.Instances("typo")[0];
  EXPECT_THAT(inst["last_error"].get<std::string>(), HasSubstr("no-such-agent-binary"));
  auto dep = daemon_.Call("GET", "/v1/deployments/typo").body;
  EXPECT_EQ(dep["status"]["phase"], "Degraded");
  EXPECT_EQ(daemon_.Call("GET", "/healthz").status, 200u);
}

TEST_F(DaemonTest, RealAgentGetsItsContractHeartbeatsAndLogs) {
  Json spec = {{"name", "echo"},
               {"version", "1.0.0"},
               {"command", {"python3", SourceDir() + "/examples/agents/echo_agent.py"}},
               {"config", {{"greeting", "hi"}, {"heartbeat_s", 0.2}}},
               {"ports", {"http"}},
               {"stop", {{"signal", "SIGTERM"}, {"grace_s", 5}}}};
  daemon_.RegisterSpec(spec);
  daemon_.CreateDeployment({{"name", "echo"}, {"spec", "echo@1.0.0"}, {"replicas", 2},
                            {"config", {{"greeting", "hello from palm"}}}});
  ASSERT_TRUE(daemon_.WaitRunning("echo", 2));
  std::string id = daemon_.Instances("echo")[0]["id"];
  ASSERT_TRUE(WaitFor([&] {
    return daemon_.Call("GET", "/v1/instances/" + id).body["last_heartbeat"].is_string();
  })) << daemon_.Call("GET", "/v1/instances/" + id + "/logs").raw;
  auto inst = daemon_.Call("GET", "/v1/instances/" + id).body;
  EXPECT_EQ(inst["health"]["status"], "Healthy");
  EXPECT_TRUE(inst["metrics"].contains("beats")) << inst;
  auto logs = daemon_.Call("GET", "/v1/instances/" + id + "/logs?tail=50");
  EXPECT_EQ(logs.status, 200u);
  EXPECT_THAT(logs.raw, HasSubstr("hello from palm"));  // the merged PALM_CONFIG
  EXPECT_THAT(logs.raw, HasSubstr(id));
  // The instance token works for the agent API only, and only as itself.
  EXPECT_TRUE(std::filesystem::exists(inst["log_path"].get<std::string>()));
}

TEST_F(DaemonTest, InstanceTokensAreScopedToAgentEndpoints) {
  daemon_.RegisterSpec({{"name", "envdump"},
                        {"version", "1.0.0"},
                        {"command", {"/bin/sh", "-c", "echo TOKEN=$PALM_TOKEN; exec sleep 1000"}}});
  daemon_.CreateDeployment({{"name", "envdump"}, {"spec", "envdump@1.0.0"}, {"replicas", 1}});
  ASSERT_TRUE(daemon_.WaitRunning("envdump", 1));
  std::string log_path = daemon_.Instances("envdump")[0]["log_path"];
  std::string token;
  ASSERT_TRUE(WaitFor([&] {
    std::ifstream f(log_path);
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("TOKEN=", 0) == 0) token = line.substr(6);
    }
    return !token.empty();
  }));
  EXPECT_EQ(daemon_.CallRaw("GET", "/v1/deployments", "", token).status, 403u);
  auto hb = daemon_.CallRaw("POST", "/v1/agent/heartbeat",
                            R"({"status":"degraded","reason":"slow","metrics":{"q":3}})", token);
  ASSERT_EQ(hb.status, 200u) << hb.raw;
  EXPECT_EQ(hb.body, (Json{{"drain", false}, {"killed", false}, {"policy_version", 0}}));
  auto inst = daemon_.Instances("envdump")[0];
  EXPECT_EQ(inst["health"]["status"], "Degraded");
  EXPECT_EQ(inst["health"]["reason"], "slow");
  // The agent's metrics and health roll up to its deployment and the fleet's health views.
  auto dep = daemon_.Call("GET", "/v1/deployments/envdump").body;
  EXPECT_EQ(dep["status"]["metrics"]["q"]["sum"], 3.0) << dep;
  EXPECT_EQ(dep["status"]["metrics"]["q"]["mean"], 3.0);
  EXPECT_EQ(dep["status"]["health"]["degraded"], 1);
  auto summary = daemon_.Call("GET", "/v1/health/summary").body;
  ASSERT_EQ(summary["deployments"].size(), 1u) << summary;
  EXPECT_EQ(summary["deployments"][0]["degraded"], 1);
  EXPECT_EQ(summary["deployments"][0]["degraded_pct"], 100.0);
  auto unhealthy = daemon_.Call("GET", "/v1/health/unhealthy").body;
  ASSERT_EQ(unhealthy["items"].size(), 1u);
  EXPECT_EQ(unhealthy["items"][0]["id"], inst["id"]);
  // The admin token is not an agent.
  EXPECT_EQ(daemon_.Call("POST", "/v1/agent/heartbeat", {{"status", "ok"}}).status, 403u);
}

TEST_F(DaemonTest, DaemonStopLeavesAgentsRunningAndStopAllStopsThem) {
  daemon_.RegisterSpec(SleepSpec("sleeper", 0.5));
  daemon_.CreateDeployment({{"name", "fleet"}, {"spec", "sleeper@1.0.0"}, {"replicas", 3}});
  ASSERT_TRUE(daemon_.WaitRunning("fleet", 3));
  std::set<int> pids = Pids(daemon_.Instances("fleet"));
  daemon_.Terminate();  // SIGTERM: the daemon goes, agents stay
  for (int pid : pids) EXPECT_TRUE(ProcessAlive(pid));
  daemon_.Start();
  ASSERT_TRUE(daemon_.WaitRunning("fleet", 3));
  EXPECT_EQ(Pids(daemon_.Instances("fleet")), pids);
  ASSERT_EQ(daemon_.Call("POST", "/v1/daemon/stop", {{"all", true}}).status, 202u);
  EXPECT_EQ(daemon_.Wait(), 0);
  for (int pid : pids) EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(pid); })) << pid;
  // Desired state persists: the next start brings the fleet back.
  daemon_.Start();
  EXPECT_TRUE(daemon_.WaitRunning("fleet", 3));
}

}  // namespace
}  // namespace palm::testing

namespace palm::testing {
namespace {

std::vector<std::string> Kinds(const std::vector<Json>& events) {
  std::vector<std::string> kinds;
  for (const auto& e : events) kinds.push_back(e["kind"]);
  return kinds;
}

TEST_F(DaemonTest, EventsRecordLifecycleAndTheStreamResumesWithoutLossOrDuplicates) {
  daemon_.RegisterSpec(SleepSpec());
  daemon_.CreateDeployment({{"name", "fleet"}, {"spec", "sleeper@1.0.0"}, {"replicas", 2},
                            {"restart_policy", FastRestart()}});
  ASSERT_TRUE(daemon_.WaitRunning("fleet", 2));
  auto list = daemon_.Call("GET", "/v1/events?deployment=fleet");
  ASSERT_EQ(list.status, 200u);
  std::vector<Json> items(list.body["items"].begin(), list.body["items"].end());
  EXPECT_THAT(Kinds(items), ::testing::IsSupersetOf({"DeploymentCreated", "InstanceStarted"}));
  for (const auto& e : items) {
    for (const char* k : {"seq", "time", "severity", "kind", "object", "message", "tenant"}) {
      EXPECT_TRUE(e.contains(k)) << k << " missing in " << e;
    }
  }
  // A first client reads everything so far from the start, then goes away.
  int64_t last = items.back()["seq"];
  auto first = daemon_.ReadSse("/v1/events?since=0&follow=1", "", [&](const auto& ev) {
    return !ev.empty() && ev.back()["seq"] == last;
  });
  ASSERT_FALSE(first.empty());
  ASSERT_EQ(first.back()["seq"], last);
  // Things happen while it is away: a crash, a restart, a scale-up.
  int pid = daemon_.Instances("fleet")[0]["pid"];
  ::kill(pid, SIGKILL);
  ASSERT_EQ(daemon_.Call("POST", "/v1/deployments/fleet/scale", {{"replicas", 3}}).status, 200u);
  ASSERT_TRUE(daemon_.WaitRunning("fleet", 3));
  ASSERT_TRUE(WaitFor([&] {
    return daemon_.Call("GET", "/v1/instances/fleet-001").body["restarts"] == 1;
  }));
  auto all = daemon_.Call("GET", "/v1/events?since=0&limit=10000").body["items"];
  int64_t newest = all.back()["seq"];
  // It reconnects with Last-Event-ID and gets exactly what it missed, in order.
  auto second = daemon_.ReadSse("/v1/events?follow=1", std::to_string(last),
                                [&](const auto& ev) {
                                  return !ev.empty() && ev.back()["seq"] == newest;
                                });
  ASSERT_FALSE(second.empty());
  EXPECT_EQ(second.front()["seq"], last + 1);
  for (size_t i = 1; i < second.size(); ++i) {
    EXPECT_EQ(second[i]["seq"], second[i - 1]["seq"].get<int64_t>() + 1) << "no gap, no dup";
  }
  EXPECT_THAT(Kinds(second),
              ::testing::IsSupersetOf({"InstanceExited", "BackOff", "ScaledUp", "InstanceStarted"}));
  // A live follower sees a new event as it happens.
  std::thread later([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    daemon_.Call("POST", "/v1/deployments/fleet/scale", {{"replicas", 2}});
  });
  auto live = daemon_.ReadSse("/v1/events?follow=1&deployment=fleet", "", [](const auto& ev) {
    for (const auto& e : ev) {
      if (e["kind"] == "ScaledDown") return true;
    }
    return false;
  });
  later.join();
  EXPECT_THAT(Kinds(live), ::testing::Contains("ScaledDown"));
  // Events survive a restart of the daemon.
  daemon_.Kill9();
  daemon_.Start();
  auto after = daemon_.Call("GET", "/v1/events?since=0&limit=10000").body["items"];
  EXPECT_GE(after.size(), all.size());
}

// Reads pages of `limit` events from `path` + "&since=" + cursor, following `next`, until
// `done` says so or `next` is null. Checks every full page has exactly `limit` items.
std::vector<Json> EventPages(Daemon& d, const std::string& path, int64_t since, size_t limit,
                             const std::function<bool(const std::vector<Json>&)>& done) {
  std::vector<Json> out;
  Json cursor = since;
  for (int pages = 0; !cursor.is_null() && pages < 1000 && !done(out); ++pages) {
    auto r = d.Call("GET", absl::StrCat(path, "&limit=", limit, "&since=", cursor.dump()));
    EXPECT_EQ(r.status, 200u) << r.body;
    if (r.status != 200u) break;
    EXPECT_LE(r.body["items"].size(), limit);
    if (!r.body["next"].is_null()) {
      EXPECT_EQ(r.body["items"].size(), limit);
      EXPECT_EQ(r.body["next"], r.body["items"].back()["seq"]) << "next is the last item's seq";
    }
    out.insert(out.end(), r.body["items"].begin(), r.body["items"].end());
    cursor = r.body["next"];
  }
  return out;
}

std::vector<int64_t> Seqs(const std::vector<Json>& events) {
  std::vector<int64_t> seqs;
  for (const auto& e : events) seqs.push_back(e["seq"]);
  return seqs;
}

TEST_F(DaemonTest, EventsListNewestFirstWithOrderDescAndPageBothWays) {
  daemon_.RegisterSpec(SleepSpec());
  daemon_.CreateDeployment({{"name", "fleet"}, {"spec", "sleeper@1.0.0"}, {"replicas", 3}});
  ASSERT_TRUE(daemon_.WaitRunning("fleet", 3));
  ASSERT_EQ(daemon_.Call("POST", "/v1/deployments/fleet/scale", {{"replicas", 4}}).status, 200u);
  ASSERT_TRUE(daemon_.WaitRunning("fleet", 4));
  auto listed = daemon_.Call("GET", "/v1/events?since=0&limit=10000").body["items"];
  std::vector<Json> all(listed.begin(), listed.end());
  ASSERT_GE(all.size(), 8u);
  const int64_t newest = all.back()["seq"];
  // The newest events come first (events may still be arriving: never older than `newest`).
  auto desc = daemon_.Call("GET", "/v1/events?order=desc&limit=3");
  ASSERT_EQ(desc.status, 200u);
  std::vector<int64_t> top = Seqs({desc.body["items"].begin(), desc.body["items"].end()});
  ASSERT_EQ(top.size(), 3u);
  EXPECT_GE(top[0], newest) << "the newest, not the oldest reversed";
  EXPECT_GT(top[0], top[1]);
  EXPECT_GT(top[1], top[2]);
  EXPECT_EQ(desc.body["next"], top[2]);
  // Paging newest-first from just above `newest` (`since` = older than) walks back to seq 1.
  std::vector<Json> back = EventPages(daemon_, "/v1/events?order=desc", newest + 1, 3,
                                      [](const auto&) { return false; });
  std::vector<int64_t> expected = Seqs(all);
  std::reverse(expected.begin(), expected.end());
  EXPECT_EQ(Seqs(back), expected);
  // The same pages oldest-first.
  std::vector<Json> forth = EventPages(daemon_, "/v1/events?order=asc", 0, 3, [&](const auto& got) {
    return !got.empty() && got.back()["seq"] >= newest;
  });
  ASSERT_GE(forth.size(), all.size());
  forth.resize(all.size());
  EXPECT_EQ(Seqs(forth), Seqs(all));
  // A deployment filter pages newest-first too.
  auto fleet = daemon_.Call("GET", "/v1/events?deployment=fleet&limit=10000").body["items"];
  std::vector<int64_t> fleet_seqs = Seqs({fleet.begin(), fleet.end()});
  ASSERT_GE(fleet_seqs.size(), 2u);
  auto fleet_desc = daemon_.Call(
      "GET",
      absl::StrCat("/v1/events?deployment=fleet&order=desc&limit=2&since=", fleet_seqs.back() + 1));
  EXPECT_EQ(Seqs({fleet_desc.body["items"].begin(), fleet_desc.body["items"].end()}),
            (std::vector<int64_t>{fleet_seqs.back(), fleet_seqs[fleet_seqs.size() - 2]}));
}

}  // namespace
}  // namespace palm::testing

namespace palm::testing {
namespace {

Json ProbeSpec(const std::string& name, const Json& health_check, const Json& config) {
  return {{"name", name},
          {"version", "1.0.0"},
          {"command", {"python3", SourceDir() + "/tests/agents/probe_agent.py"}},
          {"ports", {"http"}},
          {"config", config},
          {"health_check", health_check},
          {"stop", {{"signal", "SIGTERM"}, {"grace_s", 2}}}};
}

std::vector<Json> EventsOf(Daemon& d, const std::string& deployment) {
  auto r = d.Call("GET", "/v1/events?limit=10000&deployment=" + deployment);
  return {r.body["items"].begin(), r.body["items"].end()};
}

TEST_F(DaemonTest, FailingLivenessProbeRestartsTheAgentAndAnEventSaysWhy) {
  std::string fail_file = dir_.path() + "/unhealthy";
  daemon_.RegisterSpec(ProbeSpec(
      "flaky",
      {{"startup", {{"tcp", {{"port", "http"}}}, {"period_s", 0.1}, {"failure_threshold", 100}}},
       {"liveness", {{"http", {{"port", "http"}, {"path", "/healthz"}}},
                     {"period_s", 0.2}, {"timeout_s", 1}, {"failure_threshold", 2}}}},
      {{"fail_file", fail_file}}));
  daemon_.CreateDeployment({{"name", "flaky"}, {"spec", "flaky@1.0.0"}, {"replicas", 1},
                            {"restart_policy", FastRestart()}});
  ASSERT_TRUE(daemon_.WaitRunning("flaky", 1));
  ASSERT_TRUE(WaitFor([&] {
    return daemon_.Call("GET", "/v1/instances/flaky-001").body["health"]["status"] == "Healthy";
  })) << daemon_.Call("GET", "/v1/instances/flaky-001").raw;
  int pid = daemon_.Instances("flaky")[0]["pid"];
  std::ofstream(fail_file) << "x";  // /healthz now answers 503
  ASSERT_TRUE(WaitFor([&] {
    auto in = daemon_.Call("GET", "/v1/instances/flaky-001").body;
    return in["restarts"].get<int>() >= 1;
  })) << daemon_.Call("GET", "/v1/instances/flaky-001").raw;
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(pid); })) << "the old process was stopped";
  auto events = EventsOf(daemon_, "flaky");
  bool said_why = false;
  for (const auto& e : events) {
    if (e["kind"] == "LivenessRestart" &&
        e["message"].get<std::string>().find("HTTP 503") != std::string::npos) {
      said_why = true;
    }
  }
  EXPECT_TRUE(said_why) << Json(events).dump(1);
  EXPECT_THAT(Kinds(events), ::testing::IsSupersetOf({"ProbeFailed", "Unhealthy"}));
  // Healed once the endpoint answers again.
  std::filesystem::remove(fail_file);
  ASSERT_TRUE(WaitFor([&] {
    auto in = daemon_.Call("GET", "/v1/instances/flaky-001").body;
    return in["state"] == "Running" && in["health"]["status"] == "Healthy";
  })) << daemon_.Call("GET", "/v1/instances/flaky-001").raw;
  auto probes = daemon_.Call("GET", "/v1/instances/flaky-001").body["probes"];
  EXPECT_TRUE(probes.contains("liveness")) << probes;
}

TEST_F(DaemonTest, ANeverReadyAgentIsNotAvailableAndWaitExitsFive) {
  daemon_.RegisterSpec(ProbeSpec(
      "stuck",
      {{"readiness", {{"http", {{"port", "http"}, {"path", "/ready"}}}, {"period_s", 0.2}}}},
      {{"never_ready", true}}));
  daemon_.CreateDeployment({{"name", "stuck"}, {"spec", "stuck@1.0.0"}, {"replicas", 2}});
  ASSERT_TRUE(daemon_.WaitRunning("stuck", 2));
  ASSERT_TRUE(WaitFor([&] {
    auto st = daemon_.Call("GET", "/v1/deployments/stuck").body["status"];
    return st["last_probe_failure"].is_object() &&
           st["last_probe_failure"]["message"] == "HTTP 503";
  })) << daemon_.Call("GET", "/v1/deployments/stuck").raw;
  auto st = daemon_.Call("GET", "/v1/deployments/stuck").body["status"];
  EXPECT_EQ(st["replicas"]["ready"], 0);
  EXPECT_EQ(st["replicas"]["available"], 0);
  EXPECT_EQ(st["last_probe_failure"]["probe"], "readiness");
  EXPECT_THAT(st["last_probe_failure"]["message"].get<std::string>(), HasSubstr("503"));
  EXPECT_EQ(daemon_.Instances("stuck")[0]["health"]["status"], "Degraded");
  // `palm deployment scale --wait` times out with exit code 5 and the probe's message.
  std::string cmd = absl::StrCat("PALM_ENDPOINT=", daemon_.endpoint(), " PALM_TOKEN=",
                                 daemon_.token(), " ", PalmBin(),
                                 " deployment scale stuck 2 --wait --timeout 1s 2>&1");
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int status = ::pclose(p);
  EXPECT_EQ(WEXITSTATUS(status), 5) << out;
  EXPECT_THAT(out, HasSubstr("HEALTH_CHECK_FAILED"));
  EXPECT_THAT(out, HasSubstr("503"));
  // `palm health check` runs the probe now.
  auto check = daemon_.Call("POST", "/v1/instances/stuck-001/check");
  ASSERT_EQ(check.status, 200u) << check.raw;
  ASSERT_EQ(check.body["probes"].size(), 1u);
  EXPECT_EQ(check.body["probes"][0]["probe"], "readiness");
  EXPECT_EQ(check.body["probes"][0]["ok"], false);
}

TEST_F(DaemonTest, AStartupProbeHoldsLivenessOff) {
  // The agent listens only after 1.5 s; liveness alone (threshold 1, every 0.1 s) would
  // kill it long before. The startup probe gives it up to 5 s.
  daemon_.RegisterSpec(ProbeSpec(
      "slow",
      {{"startup", {{"tcp", {{"port", "http"}}}, {"period_s", 0.1}, {"failure_threshold", 50}}},
       {"liveness", {{"http", {{"port", "http"}, {"path", "/healthz"}}},
                     {"period_s", 0.1}, {"failure_threshold", 1}}}},
      {{"listen_after_s", 1.5}}));
  daemon_.CreateDeployment({{"name", "slow"}, {"spec", "slow@1.0.0"}, {"replicas", 1}});
  ASSERT_TRUE(WaitFor([&] {
    auto in = daemon_.Call("GET", "/v1/instances/slow-001").body;
    return in["ready"] == true && in["health"]["status"] == "Healthy";
  })) << daemon_.Call("GET", "/v1/instances/slow-001").raw;
  EXPECT_EQ(daemon_.Call("GET", "/v1/instances/slow-001").body["restarts"], 0);
}

TEST_F(DaemonTest, BadProbeBlocksAreRefusedAtRegistration) {
  auto bad = [&](const Json& hc) {
    auto r = daemon_.Call("POST", "/v1/specs", ProbeSpec("bad", hc, Json::object()));
    EXPECT_EQ(r.status, 400u) << hc << " -> " << r.raw;
    return r.body["error"]["message"].get<std::string>();
  };
  EXPECT_THAT(bad({{"liveness", {{"grpc", {{"port", "http"}}}}}}), HasSubstr("liveness"));
  EXPECT_THAT(bad({{"liveness", {{"http", {{"port", "admin"}}}}}}), HasSubstr("admin"));
  EXPECT_THAT(bad({{"readiness", {{"tcp", {{"port", "http"}}}, {"failure_threshold", 0}}}}),
              HasSubstr("failure_threshold"));
  EXPECT_THAT(bad({{"liveness", {{"tcp", {{"port", "http"}}}, {"success_threshold", 2}}}}),
              HasSubstr("success_threshold"));
  EXPECT_TRUE(daemon_.Call("GET", "/v1/specs").body["items"].empty());
}

}  // namespace
}  // namespace palm::testing
