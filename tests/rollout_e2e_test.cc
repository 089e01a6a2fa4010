// Rollouts end to end (docs/api.md "Rollouts"): a real daemon, real agents on the Python SDK
// (tests/agents/task_agent.py), real traffic, a real kill -9 of the daemon. Each test rolls a
// new revision out by changing the deployment's config and checks what an operator would:
// the rolling bounds at every observed moment, where routed tasks land, the revision history,
// the events, and that a rollout resumes where it stood after a crash of the daemon.
#include <atomic>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/harness.h"

namespace palm::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::IsSupersetOf;

// tests/agents/task_agent.py answers {"echo", "instance", "revision", "attempt"}; config
// {"fail_rate": r} makes exactly that share of its tasks answer ok: false.
Json TaskAgentSpec() {
  return {{"kind", "AgentSpec"},
          {"name", "worker"},
          {"version", "1.0.0"},
          {"command", {"python3", SourceDir() + "/tests/agents/task_agent.py"}},
          {"env", {{"PYTHONPATH", SourceDir() + "/sdk/python"}}},
          {"stop", {{"signal", "SIGTERM"}, {"grace_s", 5}}}};
}

// worker@1.1.0: the same agent, ready only once its first heartbeat arrived (the SDK sends
// one as it starts), so an instance is Running a while before it is ready, as a real agent
// is while it loads; a rollout then takes long enough to be watched.
Json ReadinessAgentSpec() {
  Json spec = TaskAgentSpec();
  spec["version"] = "1.1.0";
  spec["health_check"] = {{"readiness", {{"heartbeat", {{"max_age_s", 15}}}, {"period_s", 0.1}}}};
  return spec;
}

// The whole deployment document, as `palm deployment apply` would send it.
Json Doc(const std::string& name, int replicas, const Json& config, const Json& strategy,
         const std::string& spec = "worker@1.0.0") {
  return {{"name", name},
          {"spec", spec},
          {"replicas", replicas},
          {"config", config},
          {"strategy", strategy},
          {"restart_policy", {{"policy", "always"}, {"backoff_initial_s", 0.05},
                              {"backoff_max_s", 1}}}};
}

std::string Str(const Json& j) { return j.is_string() ? j.get<std::string>() : j.dump(); }

class RolloutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_.Start();
    daemon_.RegisterSpec(TaskAgentSpec());
  }
  void TearDown() override {
    daemon_.StopWithAgents();
  }

  Json Get(const std::string& name) { return daemon_.Call("GET", "/v1/deployments/" + name).body; }

  Daemon::Reply Put(const Json& doc) {
    return daemon_.Call("PUT", "/v1/deployments/" + doc["name"].get<std::string>(), doc);
  }

  // PUTs a template change and checks it made revision `revision`.
  void Update(const Json& doc, int revision) {
    auto r = Put(doc);
    ASSERT_EQ(r.status, 200u) << r.raw;
    ASSERT_EQ(r.body["revision"], revision) << r.raw;
  }

  Daemon::Reply Action(const std::string& name, const std::string& verb,
                       const Json& body = Json::object()) {
    return daemon_.Call("POST", "/v1/deployments/" + name + "/" + verb, body);
  }

  std::vector<Json> History(const std::string& name) {
    auto r = daemon_.Call("GET", "/v1/deployments/" + name + "/history");
    EXPECT_EQ(r.status, 200u) << r.raw;
    if (r.status != 200) return {};
    return {r.body["items"].begin(), r.body["items"].end()};
  }

  // The history entry of `revision`, or null.
  Json RevisionOf(const std::string& name, int revision) {
    for (Json& rev : History(name)) {
      if (rev["revision"] == revision) return rev;
    }
    return nullptr;
  }

  std::vector<std::string> EventKinds(const std::string& name) {
    auto r = daemon_.Call("GET", "/v1/events?limit=10000&deployment=" + name);
    std::vector<std::string> kinds;
    for (Json& e : r.body["items"]) kinds.push_back(e["kind"]);
    return kinds;
  }

  // instance id -> revision of the deployment's instances.
  std::map<std::string, int> RevisionById(const std::string& name) {
    std::map<std::string, int> out;
    for (Json& in : daemon_.Instances(name)) out[in["id"]] = in["revision"].get<int>();
    return out;
  }

  // instance id -> pid.
  std::map<std::string, int> PidById(const std::string& name) {
    std::map<std::string, int> out;
    for (Json& in : daemon_.Instances(name)) {
      out[in["id"]] = in["pid"].is_number() ? in["pid"].get<int>() : -1;
    }
    return out;
  }

  // Waits until the rollout to `revision` is done: phase Complete, current and stable
  // revision `revision`, every replica updated and ready, and exactly `replicas` instances,
  // all Running at `revision` with a live process.
  ::testing::AssertionResult WaitComplete(const std::string& name, int revision, int replicas,
                                          absl::Duration timeout = absl::Seconds(40)) {
    Json dep;
    std::vector<Json> instances;
    bool done = WaitFor(
        [&] {
          dep = Get(name);
          Json& st = dep["status"];
          if (st["phase"] != "Complete" || st["current_revision"] != revision ||
              st["stable_revision"] != revision || st["replicas"]["updated"] != replicas ||
              st["replicas"]["ready"] != replicas) {
            return false;
          }
          instances = daemon_.Instances(name);
          if (instances.size() != static_cast<size_t>(replicas)) return false;
          for (Json& in : instances) {
            if (in["state"] != "Running" || in["revision"] != revision ||
                !in["pid"].is_number() || !ProcessAlive(in["pid"].get<int>())) {
              return false;
            }
          }
          return true;
        },
        timeout);
    if (done) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << name << " did not complete at revision " << revision << " with " << replicas
           << " replicas within " << timeout << "; status: " << dep["status"].dump()
           << "\ninstances: " << Json(daemon_.Instances(name)).dump();
  }

  std::string Submit(const Json& body) {
    auto r = daemon_.Call("POST", "/v1/tasks", body);
    EXPECT_EQ(r.status, 201u) << r.raw;
    return r.body["id"].is_string() ? r.body["id"].get<std::string>() : "";
  }

  Json AwaitTask(const std::string& id, absl::Duration timeout = absl::Seconds(30)) {
    absl::Time deadline = absl::Now() + timeout;
    Json t;
    while (absl::Now() < deadline) {
      t = daemon_.Call("GET", "/v1/tasks/" + id + "?wait_s=10").body;
      std::string state = t["state"].is_string() ? t["state"].get<std::string>() : "";
      if (state != "Queued" && state != "Assigned") return t;
    }
    return t;
  }

  // Submits `n` routed tasks at once (so least-in-flight routing would spread them over
  // every eligible instance), then waits for each; returns the finished tasks.
  std::vector<Json> RunTasks(const std::string& name, int n, const Json& extra = Json::object()) {
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) {
      Json body = {{"deployment", name}, {"input", {{"n", i}}}};
      body.update(extra);
      ids.push_back(Submit(body));
    }
    std::vector<Json> out;
    for (const std::string& id : ids) out.push_back(AwaitTask(id));
    return out;
  }

  // Checks that every task succeeded and was answered by a process of `revision`, both by
  // the daemon's record and by the agent's own PALM_REVISION / instance id; `revisions` maps
  // the deployment's instance ids to their revisions.
  void ExpectAnsweredBy(std::vector<Json> tasks, int revision,
                        const std::map<std::string, int>& revisions, const std::string& when) {
    int wrong = 0;
    for (Json& t : tasks) {
      ASSERT_EQ(t["state"], "Succeeded") << when << ": " << t;
      const std::string instance = t["instance"];
      auto it = revisions.find(instance);
      bool ok = it != revisions.end() && it->second == revision && t["revision"] == revision &&
                t["output"]["instance"] == instance && t["output"]["revision"] == revision;
      if (!ok && ++wrong <= 3) {
        ADD_FAILURE() << when << ": task not answered by revision " << revision << ": " << t;
      }
    }
    EXPECT_EQ(wrong, 0) << when << ": " << wrong << " of " << tasks.size()
                        << " tasks went elsewhere";
  }

  TempDir dir_;
  Daemon daemon_{dir_.path()};
};

TEST_F(RolloutTest, RollingUpdateKeepsBoundsAtEveryTransition) {
  const Json strategy = {{"type", "rolling"}, {"max_surge", 2}, {"max_unavailable", 1}};
  const int replicas = 6, max_surge = 2, max_unavailable = 1;
  daemon_.RegisterSpec(ReadinessAgentSpec());
  daemon_.CreateDeployment(Doc("roll", replicas, {{"v", 1}}, strategy, "worker@1.1.0"));
  ASSERT_TRUE(WaitComplete("roll", 1, replicas));
  std::map<std::string, int> old_pids = PidById("roll");

  // The sampler reads the instance list as fast as it can for the whole rollout. Every
  // answer is one consistent snapshot of the daemon's state.
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<std::string> violations;  // guarded by mu
  int samples = 0, mixed_samples = 0, max_total = 0, min_ready = replicas;
  std::thread sampler([&] {
    while (!stop.load()) {
      auto r = daemon_.Call("GET", "/v1/instances?deployment=roll");
      if (r.status == 200) {
        int total = 0, ready = 0;
        std::set<int> revisions;
        for (Json& in : r.body["items"]) {
          ++total;  // every state counts against the surge: Draining and Stopping too
          if (in["ready"] == true && in["state"] == "Running") ++ready;
          revisions.insert(in["revision"].is_number() ? in["revision"].get<int>() : -1);
        }
        std::lock_guard<std::mutex> lock(mu);
        ++samples;
        if (revisions.size() > 1) ++mixed_samples;
        max_total = std::max(max_total, total);
        min_ready = std::min(min_ready, ready);
        if ((ready < replicas - max_unavailable || total > replicas + max_surge) &&
            violations.size() < 5) {
          violations.push_back(absl::StrCat(ready, " ready, ", total, " instances: ", r.raw));
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });

  auto r = Put(Doc("roll", replicas, {{"v", 2}}, strategy, "worker@1.1.0"));
  bool complete = r.status == 200 && WaitComplete("roll", 2, replicas);
  stop = true;
  sampler.join();
  ASSERT_EQ(r.status, 200u) << r.raw;
  ASSERT_EQ(r.body["revision"], 2) << r.raw;
  ASSERT_TRUE(complete) << WaitComplete("roll", 2, replicas, absl::ZeroDuration());

  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_TRUE(violations.empty())
        << "bounds: ready >= " << replicas - max_unavailable << ", instances <= "
        << replicas + max_surge << "; violated:\n"
        << absl::StrJoin(violations, "\n");
    // The sampler saw the rollout itself, not only its ends.
    EXPECT_GT(mixed_samples, 0) << samples << " samples";
    EXPECT_GE(samples, 10);
    std::cout << "[ sampler  ] " << samples << " samples (" << mixed_samples
              << " with both revisions), at most " << max_total << " instances, at least "
              << min_ready << " ready\n";
  }

  // Every instance was replaced: new ids, the old processes are gone.
  auto now = PidById("roll");
  for (const auto& [id, pid] : old_pids) {
    EXPECT_FALSE(now.contains(id)) << id;
    EXPECT_TRUE(WaitFor([&, pid = pid] { return !ProcessAlive(pid); })) << id << " pid " << pid;
  }

  Json one = RevisionOf("roll", 1), two = RevisionOf("roll", 2);
  // Revision 1 completed its own rollout before 2 replaced it: it stays Complete
  // (Superseded is for a revision replaced before it completed).
  EXPECT_EQ(one["outcome"], "Complete") << one;
  EXPECT_EQ(one["current"], false) << one;
  EXPECT_EQ(two["outcome"], "Complete") << two;
  EXPECT_EQ(two["current"], true) << two;
  EXPECT_EQ(two["stable"], true) << two;
  EXPECT_EQ(two["config"], Json({{"v", 2}})) << two;
  EXPECT_THAT(EventKinds("roll"), IsSupersetOf({"RolloutStarted", "RolloutComplete"}));
  Json st = Get("roll")["status"];
  EXPECT_EQ(st["rollout"]["strategy"], "rolling") << st;
  EXPECT_EQ(st["rollout"]["to_revision"], 2) << st;
  EXPECT_EQ(st["rollout"]["from_revision"], 1) << st;
}

TEST_F(RolloutTest, CanaryWithSixtyPercentFailuresIsRolledBackUnderRealTraffic) {
  const Json strategy = {
      {"type", "canary"},
      {"auto_rollback", true},
      {"steps", {{{"set_weight", 50}}, {{"analysis", Json::object()}}, {{"set_weight", 100}}}},
      {"analysis",
       {{"interval_s", 2}, {"count", 2}, {"failure_limit", 0}, {"min_samples", 10},
        {"max_error_rate", 0.2}}}};
  daemon_.CreateDeployment(Doc("canary", 4, {{"fail_rate", 0}}, strategy));
  ASSERT_TRUE(WaitComplete("canary", 1, 4));

  // Real traffic for the rest of the test: ~50 routed tasks a second.
  std::atomic<bool> stop{false};
  std::atomic<int> accepted{0}, refused{0};
  std::mutex mu;
  std::string first_refusal;  // guarded by mu
  std::thread traffic([&] {
    auto next = std::chrono::steady_clock::now();
    for (int i = 0; !stop.load(); ++i) {
      auto r = daemon_.Call("POST", "/v1/tasks", {{"deployment", "canary"}, {"input", {{"n", i}}}});
      if (r.status == 201) {
        ++accepted;
      } else if (refused++ == 0) {
        std::lock_guard<std::mutex> lock(mu);
        first_refusal = absl::StrCat(r.status, " ", r.raw);
      }
      next += std::chrono::milliseconds(20);
      std::this_thread::sleep_until(next);
    }
  });
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread& t;
    ~Joiner() {
      stop = true;
      if (t.joinable()) t.join();
    }
  } joiner{stop, traffic};

  // A bad revision: 3 of every 5 tasks fail on it.
  Update(Doc("canary", 4, {{"fail_rate", 0.6}}, strategy), 2);
  Json dep;
  bool rolled_back = WaitFor(
      [&] {
        dep = Get("canary");
        Json& st = dep["status"];
        return st["phase"] == "Complete" && st["current_revision"] == 1 &&
               st["stable_revision"] == 1 && RevisionOf("canary", 2)["outcome"] == "RolledBack";
      },
      absl::Seconds(40));
  ASSERT_TRUE(rolled_back) << "status: " << dep["status"].dump()
                           << "\nhistory: " << Json(History("canary")).dump()
                           << "\nevents: " << absl::StrJoin(EventKinds("canary"), ",");
  EXPECT_THAT(EventKinds("canary"), IsSupersetOf({"RolloutStarted", "AnalysisFailed",
                                                  "RolledBack"}));
  Json two = RevisionOf("canary", 2);
  EXPECT_EQ(two["outcome"], "RolledBack") << two;
  EXPECT_EQ(two["current"], false) << two;
  EXPECT_THAT(Str(two["outcome_message"]), HasSubstr("analysis")) << two;
  EXPECT_EQ(dep["config"], Json({{"fail_rate", 0}})) << "the template is back on revision 1";
  Json& analysis = dep["status"]["rollout"]["analysis"];
  EXPECT_EQ(analysis["phase"], "Failed") << analysis;
  ASSERT_TRUE(analysis["last"]["candidate"]["error_rate"].is_number()) << analysis;
  EXPECT_GT(analysis["last"]["candidate"]["error_rate"].get<double>(), 0.2) << analysis;
  EXPECT_GE(analysis["last"]["candidate"]["count"].get<int>(), 10) << analysis;
  // No instance of the bad revision is left; the fleet is whole on revision 1.
  EXPECT_TRUE(WaitComplete("canary", 1, 4));

  // A good revision goes all the way under the same traffic.
  Update(Doc("canary", 4, {{"fail_rate", 0}, {"v", 3}}, strategy), 3);
  ASSERT_TRUE(WaitComplete("canary", 3, 4));
  dep = Get("canary");
  EXPECT_EQ(dep["status"]["rollout"]["analysis"]["phase"], "Successful") << dep["status"];
  EXPECT_EQ(dep["status"]["rollout"]["weight"], 100) << dep["status"];
  EXPECT_EQ(RevisionOf("canary", 3)["outcome"], "Complete") << Json(History("canary"));
  EXPECT_THAT(EventKinds("canary"),
              IsSupersetOf({"AnalysisSuccessful", "RolloutComplete", "RolloutStep"}));

  stop = true;
  traffic.join();
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(refused.load(), 0) << first_refusal;
  EXPECT_GT(accepted.load(), 100);
}

TEST_F(RolloutTest, BlueGreenPreviewGetsNoRoutedTasksBeforePromote) {
  const Json strategy = {{"type", "blue_green"}, {"scale_down_delay_s", 30}};
  daemon_.CreateDeployment(Doc("bg", 2, {{"v", 1}}, strategy));
  ASSERT_TRUE(WaitComplete("bg", 1, 2));
  std::map<std::string, int> blue = PidById("bg");

  Update(Doc("bg", 2, {{"v", 2}}, strategy), 2);
  Json dep;
  ASSERT_TRUE(WaitFor(
      [&] {
        dep = Get("bg");
        Json& ro = dep["status"]["rollout"];
        if (ro["pause_reason"] != "preview" || ro["preview_revision"] != 2) return false;
        int green = 0;
        for (Json& in : daemon_.Instances("bg")) {
          if (in["revision"] == 2 && in["state"] == "Running" && in["ready"] == true) ++green;
        }
        return green == 2;
      },
      absl::Seconds(30)))
      << dep["status"].dump() << "\n" << Json(daemon_.Instances("bg")).dump();
  EXPECT_EQ(dep["status"]["phase"], "Paused") << dep["status"];
  std::map<std::string, int> revisions = RevisionById("bg");
  ASSERT_EQ(revisions.size(), 4u) << Json(daemon_.Instances("bg"));

  // Before the promotion the preview gets no routed task...
  ExpectAnsweredBy(RunTasks("bg", 30), 1, revisions, "before promote");
  // ...but a smoke test can target it.
  ExpectAnsweredBy(RunTasks("bg", 3, {{"target", "preview"}}), 2, revisions, "target preview");

  // Promotion switches all routing at once.
  auto r = Action("bg", "promote");
  ASSERT_EQ(r.status, 200u) << r.raw;
  ExpectAnsweredBy(RunTasks("bg", 20), 2, revisions, "after promote");
  // The blue revision is kept for scale_down_delay_s, for an instant undo.
  dep = Get("bg");
  EXPECT_EQ(dep["status"]["current_revision"], 2) << dep["status"];
  EXPECT_EQ(dep["status"]["rollout"]["scale_down_revision"], 1) << dep["status"];
  EXPECT_TRUE(dep["status"]["rollout"]["scale_down_at"].is_string()) << dep["status"];
  for (const auto& [id, pid] : blue) {
    Json in = daemon_.Call("GET", "/v1/instances/" + id).body;
    EXPECT_EQ(in["state"], "Running") << in;
    EXPECT_EQ(in["pid"], pid) << in;
    EXPECT_TRUE(ProcessAlive(pid)) << id;
  }

  // Undo within the delay: routing goes back to the blue revision at once, same processes.
  r = Action("bg", "undo");
  ASSERT_EQ(r.status, 200u) << r.raw;
  EXPECT_EQ(r.body["status"]["current_revision"], 1) << r.raw;
  ExpectAnsweredBy(RunTasks("bg", 20), 1, revisions, "after undo");
  dep = Get("bg");
  EXPECT_EQ(dep["status"]["current_revision"], 1) << dep["status"];
  EXPECT_EQ(dep["config"], Json({{"v", 1}})) << dep;
  for (const auto& [id, pid] : blue) {
    Json in = daemon_.Call("GET", "/v1/instances/" + id).body;
    EXPECT_EQ(in["pid"], pid) << "the blue instances were not restarted: " << in;
  }
}

TEST_F(RolloutTest, RolloutSurvivesKill9OfTheDaemon) {
  const Json strategy = {
      {"type", "canary"},
      {"steps", {{{"set_weight", 50}}, {{"pause", Json::object()}}, {{"set_weight", 100}}}}};
  daemon_.CreateDeployment(Doc("steady", 2, {{"v", 1}}, strategy));
  ASSERT_TRUE(WaitComplete("steady", 1, 2));

  Update(Doc("steady", 2, {{"v", 2}}, strategy), 2);
  auto paused_at_step_1 = [&](Json st) {
    Json& ro = st["rollout"];
    return st["phase"] == "Paused" && ro["phase"] == "Paused" && ro["step"] == 1 &&
           ro["weight"] == 50 && ro["pause_reason"] == "step" && ro["paused"] == true &&
           st["current_revision"] == 2 && st["stable_revision"] == 1;
  };
  Json st;
  std::map<std::string, int> pids;
  ASSERT_TRUE(WaitFor(
      [&] {
        st = Get("steady")["status"];
        if (!paused_at_step_1(st)) return false;
        pids = PidById("steady");
        int canary = 0;
        for (Json& in : daemon_.Instances("steady")) {
          if (in["state"] != "Running" || !in["pid"].is_number() ||
              !ProcessAlive(in["pid"].get<int>())) {
            return false;
          }
          if (in["revision"] == 2) ++canary;
        }
        return canary >= 1;
      },
      absl::Seconds(30)))
      << st.dump() << "\n" << Json(daemon_.Instances("steady")).dump();

  daemon_.Kill9();
  for (const auto& [id, pid] : pids) EXPECT_TRUE(ProcessAlive(pid)) << id;
  daemon_.Start();

  // The same processes are adopted, and the rollout stands where it stood.
  std::map<std::string, int> after;
  EXPECT_TRUE(WaitFor([&] {
    after = PidById("steady");
    if (after != pids) return false;
    for (Json& in : daemon_.Instances("steady")) {
      if (in["state"] != "Running") return false;
    }
    return true;
  })) << Json(daemon_.Instances("steady")).dump();
  st = Get("steady")["status"];
  EXPECT_TRUE(paused_at_step_1(st)) << st.dump();
  EXPECT_EQ(PidById("steady"), pids);

  auto r = Action("steady", "promote");
  ASSERT_EQ(r.status, 200u) << r.raw;
  ASSERT_TRUE(WaitComplete("steady", 2, 2));
  EXPECT_EQ(RevisionOf("steady", 2)["outcome"], "Complete");
  EXPECT_THAT(EventKinds("steady"),
              IsSupersetOf({"RolloutStarted", "RolloutPaused", "RolloutPromoted",
                            "RolloutComplete"}));
}

TEST_F(RolloutTest, UndoToAnEarlierRevision) {
  const Json strategy = {{"type", "rolling"}, {"max_surge", 1}, {"max_unavailable", 0}};
  daemon_.CreateDeployment(Doc("undo", 2, {{"v", 1}}, strategy));
  ASSERT_TRUE(WaitComplete("undo", 1, 2));
  Update(Doc("undo", 2, {{"v", 2}}, strategy), 2);
  ASSERT_TRUE(WaitComplete("undo", 2, 2));
  Update(Doc("undo", 2, {{"v", 3}}, strategy), 3);
  ASSERT_TRUE(WaitComplete("undo", 3, 2));

  auto r = Action("undo", "undo", {{"to_revision", 1}});
  ASSERT_EQ(r.status, 200u) << r.raw;
  ASSERT_TRUE(WaitComplete("undo", 1, 2));
  Json dep = Get("undo");
  EXPECT_EQ(dep["config"], Json({{"v", 1}})) << dep;
  EXPECT_EQ(dep["revision"], 1) << dep;
  Json one = RevisionOf("undo", 1);
  EXPECT_EQ(one["current"], true) << one;
  EXPECT_EQ(one["outcome"], "Complete") << one;

  r = Action("undo", "undo", {{"to_revision", 99}});
  EXPECT_EQ(r.status, 404u) << r.raw;
  EXPECT_EQ(r.body["error"]["code"], "REVISION_NOT_FOUND") << r.raw;
  r = Action("undo", "undo", {{"to_revision", 1}});
  EXPECT_EQ(r.status, 409u) << r.raw;
  EXPECT_EQ(r.body["error"]["code"], "ALREADY_AT_REVISION") << r.raw;

  // Keep one old revision: after two more, revision 2 is pruned.
  Json doc = Doc("undo", 2, {{"v", 4}}, strategy);
  doc["revision_history_limit"] = 1;
  Update(doc, 4);
  ASSERT_TRUE(WaitComplete("undo", 4, 2));
  doc["config"] = {{"v", 5}};
  Update(doc, 5);
  ASSERT_TRUE(WaitComplete("undo", 5, 2));
  std::vector<Json> history = History("undo");
  EXPECT_LE(history.size(), 2u) << Json(history);
  EXPECT_TRUE(RevisionOf("undo", 2).is_null()) << Json(history);
  EXPECT_FALSE(RevisionOf("undo", 5).is_null()) << Json(history);

  Json before = Get("undo");
  std::map<std::string, int> pids = PidById("undo");
  r = Action("undo", "undo", {{"to_revision", 2}});
  EXPECT_EQ(r.status, 404u) << r.raw;
  EXPECT_EQ(r.body["error"]["code"], "REVISION_NOT_FOUND") << r.raw;
  Json after = Get("undo");
  EXPECT_EQ(after["revision"], 5) << after;
  EXPECT_EQ(after["config"], before["config"]);
  EXPECT_EQ(after["updated_at"], before["updated_at"]);
  EXPECT_EQ(after["status"]["current_revision"], 5);
  EXPECT_EQ(after["status"]["phase"], "Complete") << after["status"];
  EXPECT_EQ(Json(History("undo")), Json(history));
  EXPECT_EQ(PidById("undo"), pids);
}

TEST_F(RolloutTest, BadInput) {
  const Json strategy = {{"type", "rolling"}, {"max_surge", 1}, {"max_unavailable", 0}};
  daemon_.CreateDeployment(Doc("strict", 2, {{"v", 1}}, strategy));
  ASSERT_TRUE(WaitComplete("strict", 1, 2));
  Json before = Get("strict");
  std::map<std::string, int> pids = PidById("strict");

  // Each PUT also changes the config, so an accepted one would make a revision.
  auto refused = [&](const Json& bad, const std::string& says) {
    SCOPED_TRACE(bad.dump());
    auto r = Put(Doc("strict", 2, {{"v", 2}}, bad));
    EXPECT_EQ(r.status, 400u) << r.raw;
    EXPECT_THAT(Str(r.body["error"]["message"]), HasSubstr(says)) << r.raw;
  };
  refused({{"type", "rolling"}, {"max_surge", 0}, {"max_unavailable", 0}},
          "deployment.strategy.max_unavailable");
  refused({{"type", "canary"}, {"steps", {{{"set_weight", 50}}, {{"set_weight", 20}}}}},
          "deployment.strategy.steps[1]");
  refused({{"type", "canary"}, {"steps", {{{"set_weight", 50}}, {{"analysis", Json::object()}}}}},
          "deployment.strategy.");
  refused({{"type", "rolling"}, {"steps", {{{"set_weight", 50}}}}}, "deployment.strategy.steps");
  refused({{"type", "rolling"}, {"min_ready_s", 10}, {"progress_deadline_s", 5}},
          "deployment.strategy.progress_deadline_s");
  // A new deployment with a bad strategy is not created.
  auto c = daemon_.Call("POST", "/v1/deployments",
                        Doc("nope", 1, Json::object(), {{"type", "sideways"}}));
  EXPECT_EQ(c.status, 400u) << c.raw;
  EXPECT_EQ(daemon_.Call("GET", "/v1/deployments/nope").status, 404u);

  Json after = Get("strict");
  EXPECT_EQ(after["revision"], 1) << after;
  EXPECT_EQ(after["config"], before["config"]);
  EXPECT_EQ(after["strategy"], before["strategy"]);
  EXPECT_EQ(after["updated_at"], before["updated_at"]);
  EXPECT_EQ(History("strict").size(), 1u);
  EXPECT_EQ(PidById("strict"), pids);

  // Verbs that need a rollout under way.
  Json st = after["status"];
  auto r = Action("strict", "promote");
  EXPECT_EQ(r.status, 409u) << r.raw;
  EXPECT_EQ(r.body["error"]["code"], "NOTHING_TO_PROMOTE") << r.raw;
  std::string message = Str(r.body["error"]["message"]);
  std::string rollout_phase = st["rollout"]["phase"].is_string() ? Str(st["rollout"]["phase"]) : "";
  EXPECT_TRUE(absl::StrContains(message, Str(st["phase"])) ||
              (!rollout_phase.empty() && absl::StrContains(message, rollout_phase)))
      << "the message should name the phase (" << st["phase"] << "): " << r.raw;
  r = Action("strict", "abort");
  EXPECT_EQ(r.status, 409u) << r.raw;
  EXPECT_EQ(r.body["error"]["code"], "NO_ROLLOUT") << r.raw;
  r = Action("strict", "pause");
  EXPECT_EQ(r.status, 409u) << r.raw;
  EXPECT_EQ(r.body["error"]["code"], "NO_ROLLOUT") << r.raw;
  EXPECT_EQ(Get("strict")["status"]["phase"], "Complete");
}

}  // namespace
}  // namespace palm::testing
