// The deployment reconciler against a FakeClock, a FakeRuntime and a real SQLite store in a
// temp dir: scale order, backoff schedule and reset, adoption decisions, spawn failures,
// stop escalation and revision replacement.
#include "palm/controller/supervisor.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palm/base/error.h"
#include "palm/model/codec.h"
#include "palm/testing/fake_clock.h"
#include "palm/testing/fake_runtime.h"
#include "palm/testing/faulty_store.h"

namespace palm::controller {
namespace {

using model::InstanceState;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

// Hands out 5000, 5001, ... without touching the network.
class CountingPorts final : public PortAllocator {
 public:
  absl::StatusOr<int> Allocate() override { return next_++; }
  void Reserve(int) override {}
  void Release(int) override {}

 private:
  int next_ = 5000;
};

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/palm-sup-XXXXXX";
    dir_ = mkdtemp(tmpl);
    Open();
  }
  void TearDown() override {
    sup_.reset();
    tasks_.reset();
    faulty_.reset();
    events_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // (Re)creates the store and supervisor on the same data dir, as a daemon restart does.
  void Open(testing::FakeRuntime* runtime = nullptr) {
    sup_.reset();
    tasks_.reset();
    faulty_.reset();
    events_.reset();
    store_.reset();
    auto st = store::OpenSqliteStore(dir_ + "/palm.db");
    ASSERT_TRUE(st.ok()) << st.status();
    store_ = std::move(*st);
    // Both write through the fault hook: tests make commits fail with faulty_.
    faulty_ = std::make_unique<testing::FaultyStore>(*store_);
    events_ = std::make_unique<events::EventLog>();
    ASSERT_TRUE(events_->Load(*store_).ok());
    SupervisorOptions opts;
    opts.data_dir = dir_;
    opts.endpoint = "http://127.0.0.1:7070";
    opts.base_env = {{"PATH", "/usr/bin:/bin"}};
    sup_ = std::make_unique<Supervisor>(*faulty_, runtime ? *runtime : rt_, clock_, ports_, opts,
                                        events_.get());
    tasks_ = std::make_unique<tasks::TaskEngine>(*faulty_, clock_, tasks::EngineOptions{},
                                                 events_.get());
    tasks_->SetIdleCallback([this](const std::string& tenant, const std::string& id) {
      sup_->OnInstanceIdle(tenant, id);
    });
    sup_->SetTaskEngine(tasks_.get());
    live_rt_ = runtime ? runtime : &rt_;
    (runtime ? *runtime : rt_).SetExitCallback(
        [this](const std::string& key, runtime::ExitStatus s) { sup_->OnExit(key, s); });
    ASSERT_TRUE(sup_->Load().ok());
  }

  void RegisterSpec(const std::string& name = "agent", double grace_s = 5) {
    model::AgentSpec spec;
    spec.name = name;
    spec.version = "1.0.0";
    spec.command = {"/bin/agent"};
    spec.stop.grace_s = grace_s;
    bool created = false;
    ASSERT_TRUE(sup_->RegisterSpec(spec, &created).ok());
  }

  model::Deployment Deploy(int64_t replicas, model::RestartPolicy policy = {}) {
    model::Deployment d;
    d.name = "web";
    d.spec = "agent@1.0.0";
    d.replicas = replicas;
    d.restart_policy = policy;
    auto out = sup_->CreateDeployment(d);
    EXPECT_TRUE(out.ok()) << out.status();
    return *out;
  }

  absl::Time Reconcile() {
    auto next = sup_->Reconcile(key_);
    EXPECT_TRUE(next.ok()) << next.status();
    return next.value_or(absl::InfiniteFuture());
  }

  const model::Instance& Get(const std::string& id) {
    auto in = sup_->GetInstance("default", id);
    EXPECT_TRUE(in.ok()) << in.status();
    return **in;
  }

  std::vector<std::string> Ids() {
    std::vector<std::string> ids;
    for (const auto* in : sup_->ListInstances("default", "web", std::nullopt)) {
      ids.push_back(in->id);
    }
    return ids;
  }

  // Creates "web" with `strategy` (a strategy document) and lets it come up.
  void DeployWith(int64_t replicas, model::Json strategy, int64_t history_limit = 10) {
    model::Deployment d;
    d.name = "web";
    d.spec = "agent@1.0.0";
    d.replicas = replicas;
    d.revision_history_limit = history_limit;
    auto parsed = model::ParseStrategy(strategy, "deployment.strategy");
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    d.strategy = std::move(strategy);
    d.strategy_spec = *parsed;
    ASSERT_TRUE(sup_->CreateDeployment(d).ok());
    Settle();
  }
  // Applies "web" with a new config: a new revision and a rollout to it.
  void ChangeConfig(model::Json config) {
    model::Deployment d = **sup_->GetDeployment(key_);
    d.config = std::move(config);
    bool created = false;
    auto applied = sup_->ApplyDeployment(d, &created);
    ASSERT_TRUE(applied.ok()) << applied.status();
  }

  // Reconciles and lets stopping instances exit until nothing is left to do (a rollout
  // settles); `check` runs after every transition.
  void Settle(const std::function<void()>& check = [] {}) {
    for (int i = 0; i < 300; ++i) {
      absl::Time next = Reconcile();
      check();
      bool exited = false;
      for (const auto* in : sup_->ListInstances("default", "web", std::nullopt)) {
        if (in->state == InstanceState::kStopping) {
          live_rt_->Exit("default/" + in->id, {.signal = SIGTERM});
          check();
          exited = true;
        }
      }
      if (!exited && next > clock_.Now()) return;
    }
    ADD_FAILURE() << "the deployment did not settle";
  }

  std::string dir_;
  testing::FakeClock clock_;
  testing::FakeRuntime rt_;
  testing::FakeRuntime* live_rt_ = &rt_;  // the runtime of the last Open()
  CountingPorts ports_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<testing::FaultyStore> faulty_;
  std::unique_ptr<events::EventLog> events_;
  std::unique_ptr<Supervisor> sup_;
  std::unique_ptr<tasks::TaskEngine> tasks_;
  DeploymentKey key_{"default", "web"};

  // Submits a task to "web" and hands it to instance `id`; returns the task id.
  std::string LeaseTaskTo(const std::string& id) {
    model::TaskRequest req;
    req.deployment = "web";
    req.input = 1;
    std::string task_id;
    tasks_->Submit("default", req, [&](absl::StatusOr<model::Task> t, bool) {
      ASSERT_TRUE(t.ok()) << t.status();
      task_id = t->id;
    });
    tasks_->Next("default", id, absl::ZeroDuration(), [](auto) {});
    tasks_->Flush();
    EXPECT_EQ(tasks_->InFlight("default", id), 1);
    return task_id;
  }
  // The kinds of the events in the store (what GET /v1/events reads), oldest first.
  std::vector<std::string> StoredEventKinds() {
    std::vector<std::string> kinds;
    auto rows = store_->ListEvents(0, 100000, "default", "", /*descending=*/false);
    EXPECT_TRUE(rows.ok()) << rows.status();
    for (const auto& row : rows.value_or(std::vector<store::EventRow>{})) {
      kinds.push_back(row.doc["kind"].get<std::string>());
    }
    return kinds;
  }
  int64_t StoredCount(const std::string& kind) {
    auto kinds = StoredEventKinds();
    return std::count(kinds.begin(), kinds.end(), kind);
  }
  // The instance documents in the store, by id.
  std::map<std::string, model::Json> StoredInstances() {
    std::map<std::string, model::Json> out;
    auto rows = store_->ListInstances();
    EXPECT_TRUE(rows.ok()) << rows.status();
    for (const auto& row : rows.value_or(std::vector<store::InstanceRow>{})) {
      out[row.id] = row.doc;
    }
    return out;
  }

  void Finish(const std::string& instance, const std::string& task_id) {
    model::TaskResult result;
    result.ok = true;
    tasks_->Complete("default", instance, task_id, result,
                     [](absl::StatusOr<model::TaskState> st) {
                       EXPECT_TRUE(st.ok()) << st.status();
                     });
    tasks_->Flush();
  }
};

TEST_F(SupervisorTest, StartsTheDesiredReplicasWithTheAgentEnvironment) {
  RegisterSpec();
  Deploy(3);
  EXPECT_EQ(Reconcile(), absl::InfiniteFuture());
  EXPECT_THAT(Ids(), ElementsAre("web-001", "web-002", "web-003"));
  std::vector<runtime::SpawnRequest> spawned = rt_.spawned();
  ASSERT_EQ(spawned.size(), 3u);
  const auto& env = spawned[0].env;
  EXPECT_EQ(env.at("PALM_INSTANCE_ID"), "web-001");
  EXPECT_EQ(env.at("PALM_DEPLOYMENT"), "web");
  EXPECT_EQ(env.at("PALM_TOKEN").size(), 64u);
  for (const auto& id : Ids()) {
    EXPECT_EQ(Get(id).state, InstanceState::kRunning);
    EXPECT_TRUE(Get(id).ready);
    EXPECT_GT(Get(id).pid, 0);
  }
  // The instance token authenticates as that instance and nothing else.
  auto who = sup_->InstanceForToken(env.at("PALM_TOKEN"));
  ASSERT_TRUE(who.has_value());
  EXPECT_EQ(who->second, "web-001");
  EXPECT_FALSE(sup_->InstanceForToken("not-a-token").has_value());
  // A second pass changes nothing.
  Reconcile();
  EXPECT_EQ(rt_.spawned().size(), 3u);
  auto st = sup_->DeploymentStatus(**sup_->GetDeployment(key_));
  EXPECT_EQ(st["phase"], "Complete");
  EXPECT_EQ(st["replicas"]["ready"], 3);
}

TEST_F(SupervisorTest, ScaleDownRemovesNotRunningThenNewestAndEscalatesToSigkill) {
  RegisterSpec("agent", /*grace_s=*/5);
  Deploy(4);
  Reconcile();
  rt_.Exit("default/web-002", {.code = 1});  // now in BackOff
  ASSERT_EQ(Get("web-002").state, InstanceState::kBackOff);
  ASSERT_TRUE(sup_->ScaleDeployment(key_, 2).ok());
  absl::Time next = Reconcile();
  // web-002 (not running) goes at once; web-004 (newest) is asked to stop.
  EXPECT_THAT(Ids(), ElementsAre("web-001", "web-003", "web-004"));
  EXPECT_EQ(Get("web-004").state, InstanceState::kStopping);
  EXPECT_THAT(rt_.SignalsFor("default/web-004"), ElementsAre(SIGTERM));
  EXPECT_EQ(next, clock_.Now() + absl::Seconds(5));
  // It ignores SIGTERM: after the grace period it gets SIGKILL.
  clock_.Advance(absl::Seconds(4));
  Reconcile();
  EXPECT_THAT(rt_.SignalsFor("default/web-004"), ElementsAre(SIGTERM));
  clock_.Advance(absl::Seconds(1));
  Reconcile();
  EXPECT_THAT(rt_.SignalsFor("default/web-004"), ElementsAre(SIGTERM, SIGKILL));
  rt_.Exit("default/web-004", {.signal = SIGKILL});
  EXPECT_THAT(Ids(), ElementsAre("web-001", "web-003"));
  // Scale up again: ids are never reused.
  ASSERT_TRUE(sup_->ScaleDeployment(key_, 3).ok());
  Reconcile();
  EXPECT_THAT(Ids(), ElementsAre("web-001", "web-003", "web-005"));
}

TEST_F(SupervisorTest, CrashesBackOffExponentiallyAndResetAfterAStableRun) {
  RegisterSpec();
  model::RestartPolicy policy;  // always, 1 s .. 300 s, reset after 600 s
  Deploy(1, policy);
  Reconcile();
  const std::string id = "default/web-001";
  std::vector<absl::Duration> delays;
  for (int i = 0; i < 5; ++i) {
    rt_.Exit(id, {.signal = SIGKILL});
    const auto& in = Get("web-001");
    ASSERT_EQ(in.state, InstanceState::kBackOff);
    ASSERT_TRUE(in.next_start_at.has_value());
    absl::Duration delay = *in.next_start_at - clock_.Now();
    delays.push_back(delay);
    // Not before its time...
    clock_.Advance(delay - absl::Milliseconds(1));
    EXPECT_EQ(Reconcile(), *in.next_start_at);
    EXPECT_EQ(Get("web-001").state, InstanceState::kBackOff);
    // ...and right when it is due.
    clock_.Advance(absl::Milliseconds(1));
    Reconcile();
    ASSERT_EQ(Get("web-001").state, InstanceState::kRunning);
  }
  EXPECT_THAT(delays, ElementsAre(absl::Seconds(1), absl::Seconds(2), absl::Seconds(4),
                                  absl::Seconds(8), absl::Seconds(16)));
  EXPECT_EQ(Get("web-001").restarts, 5);
  EXPECT_EQ(Get("web-001").last_exit->signal, SIGKILL);
  // A run longer than reset_after_s forgets the earlier failures.
  clock_.Advance(absl::Seconds(601));
  rt_.Exit(id, {.code = 2});
  EXPECT_EQ(*Get("web-001").next_start_at - clock_.Now(), absl::Seconds(1));
}

TEST_F(SupervisorTest, ZeroBackoffRestartsOnTheNextPass) {
  RegisterSpec();
  model::RestartPolicy policy;
  policy.backoff_initial_s = 0;
  Deploy(1, policy);
  Reconcile();
  rt_.Exit("default/web-001", {.code = 1});
  Reconcile();
  EXPECT_EQ(Get("web-001").state, InstanceState::kRunning);
  EXPECT_EQ(Get("web-001").restarts, 1);
}

TEST_F(SupervisorTest, RestartPolicyNeverAndOnFailure) {
  RegisterSpec();
  model::RestartPolicy never;
  never.policy = model::RestartMode::kNever;
  Deploy(2, never);
  Reconcile();
  rt_.Exit("default/web-001", {.code = 0});
  rt_.Exit("default/web-002", {.code = 7});
  Reconcile();
  EXPECT_EQ(Get("web-001").state, InstanceState::kStopped);
  EXPECT_EQ(Get("web-002").state, InstanceState::kFailed);
  EXPECT_EQ(rt_.spawned().size(), 2u);  // neither came back, and no replacement either

  model::Deployment d = **sup_->GetDeployment(key_);
  d.restart_policy.policy = model::RestartMode::kOnFailure;
  bool created = false;
  ASSERT_TRUE(sup_->ApplyDeployment(d, &created).ok());
  ASSERT_TRUE(sup_->RestartInstance("default", "web-001").ok());
  ASSERT_TRUE(sup_->RestartInstance("default", "web-002").ok());
  Reconcile();
  rt_.Exit("default/web-001", {.code = 0});
  rt_.Exit("default/web-002", {.code = 1});
  EXPECT_EQ(Get("web-001").state, InstanceState::kStopped);
  EXPECT_EQ(Get("web-002").state, InstanceState::kBackOff);
}

TEST_F(SupervisorTest, SpawnFailureIsReportedOnTheInstanceWithBackOff) {
  RegisterSpec();
  rt_.FailSpawnsFor("/bin/agent", absl::NotFoundError("command \"/bin/agent\" not found"));
  Deploy(1);
  absl::Time next = Reconcile();
  const auto& in = Get("web-001");
  EXPECT_EQ(in.state, InstanceState::kBackOff);
  EXPECT_THAT(in.last_error, ::testing::HasSubstr("not found"));
  EXPECT_EQ(next, clock_.Now() + absl::Seconds(1));
  auto st = sup_->DeploymentStatus(**sup_->GetDeployment(key_));
  EXPECT_EQ(st["phase"], "Degraded");
  // Fixing the cause lets the next attempt succeed; the attempts are counted.
  rt_.ClearSpawnFailures();
  clock_.Advance(absl::Seconds(1));
  Reconcile();
  EXPECT_EQ(Get("web-001").state, InstanceState::kRunning);
  EXPECT_EQ(Get("web-001").restarts, 1);
  EXPECT_EQ(Get("web-001").last_error, "");
}

TEST_F(SupervisorTest, RestartAdoptsLiveAgentsAndReplacesDeadOnes) {
  RegisterSpec();
  Deploy(3);
  Reconcile();
  auto p1 = *rt_.ProcessOf("default/web-001");
  auto p3 = *rt_.ProcessOf("default/web-003");
  // The daemon dies; web-002's process dies while it is down.
  testing::FakeRuntime rt2;
  rt2.AddAlive(p1);
  rt2.AddAlive({p3.pid, p3.start_time + 1});  // pid reused by another process
  Open(&rt2);
  ASSERT_EQ(rt2.adopts().size(), 3u);
  EXPECT_TRUE(rt2.IsRunning("default/web-001"));
  EXPECT_FALSE(rt2.IsRunning("default/web-003"));
  EXPECT_EQ(Get("web-001").state, InstanceState::kRunning);
  EXPECT_EQ(Get("web-001").pid, p1.pid);
  for (const char* id : {"web-002", "web-003"}) {
    const auto& in = Get(id);
    EXPECT_EQ(in.state, InstanceState::kBackOff) << id;
    ASSERT_TRUE(in.last_exit.has_value());
    EXPECT_FALSE(in.last_exit->code.has_value());  // unknowable for a process we did not reap
  }
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(sup_->Reconcile(key_).ok());
  EXPECT_EQ(rt2.spawned().size(), 2u);
  EXPECT_EQ(Get("web-002").restarts, 1);
  EXPECT_EQ(Get("web-001").restarts, 0);
  Open();  // back to rt_ so TearDown order stays simple
}

TEST_F(SupervisorTest, FindsProcessesStartedButNotRecordedBeforeACrash) {
  RegisterSpec();
  Deploy(2);
  Reconcile();
  std::vector<runtime::SpawnRequest> spawned = rt_.spawned();
  auto p1 = *rt_.ProcessOf("default/web-001");
  // Rewind the store to between the two phases of a start: Starting, no pid recorded.
  store::WriteBatch batch;
  for (const char* id : {"web-001", "web-002"}) {
    model::Json doc = model::ToJson(Get(id), /*internal=*/true);
    doc["state"] = "Starting";
    doc["pid"] = nullptr;
    doc["proc_start_time"] = 0;
    batch.put_instances.push_back({"default", id, "web", doc});
  }
  ASSERT_TRUE(store_->Apply(batch).ok());
  // web-001's process exists; a process claiming to be web-002 carries another token.
  testing::FakeRuntime rt2;
  rt2.AddFound({p1, spawned[0].env});
  std::map<std::string, std::string> impostor = spawned[1].env;
  impostor["PALM_TOKEN"] = "forged";
  rt2.AddFound({{4242, 77}, impostor});
  Open(&rt2);
  EXPECT_EQ(Get("web-001").state, InstanceState::kRunning);
  EXPECT_EQ(Get("web-001").pid, p1.pid);
  EXPECT_TRUE(rt2.IsRunning("default/web-001"));
  EXPECT_EQ(Get("web-002").state, InstanceState::kPending);
  ASSERT_TRUE(sup_->Reconcile(key_).ok());
  ASSERT_EQ(rt2.spawned().size(), 1u);  // only the one that never started
  EXPECT_EQ(rt2.spawned()[0].env.at("PALM_INSTANCE_ID"), "web-002");
  Open();
}

TEST_F(SupervisorTest, FailedLivenessRestartsWithBackoffAndReadinessGatesReady) {
  RegisterSpec();
  Deploy(1);
  Reconcile();
  ASSERT_TRUE(Get("web-001").ready);
  const std::string key = "default/web-001";
  // Readiness fails: not ready, Degraded, and the deployment shows why.
  sup_->OnHealthReport({key, /*started=*/true, /*live=*/true, /*ready=*/false, "readiness",
                        "HTTP 503"});
  EXPECT_FALSE(Get("web-001").ready);
  EXPECT_EQ(Get("web-001").health, model::HealthStatus::kDegraded);
  auto st = sup_->DeploymentStatus(**sup_->GetDeployment(key_));
  EXPECT_EQ(st["replicas"]["available"], 0);
  EXPECT_EQ(st["last_probe_failure"]["message"], "HTTP 503");
  sup_->OnHealthReport({key, true, true, true, "", ""});
  EXPECT_TRUE(Get("web-001").ready);
  EXPECT_TRUE(sup_->DeploymentStatus(**sup_->GetDeployment(key_))["last_probe_failure"].is_null());
  // Liveness fails: Unhealthy, stopped, and restarted after the backoff like a crash.
  sup_->OnHealthReport({key, true, /*live=*/false, false, "liveness", "HTTP 500"});
  EXPECT_EQ(Get("web-001").health, model::HealthStatus::kUnhealthy);
  EXPECT_EQ(Get("web-001").state, InstanceState::kStopping);
  EXPECT_THAT(rt_.SignalsFor(key), ElementsAre(SIGTERM));
  rt_.Exit(key, {.signal = SIGTERM});
  const auto& in = Get("web-001");
  EXPECT_EQ(in.state, InstanceState::kBackOff);
  EXPECT_EQ(in.last_error, "liveness probe failed: HTTP 500");
  EXPECT_EQ(*in.next_start_at - clock_.Now(), absl::Seconds(1));
  clock_.Advance(absl::Seconds(1));
  Reconcile();
  EXPECT_EQ(Get("web-001").state, InstanceState::kRunning);
  EXPECT_EQ(Get("web-001").restarts, 1);
}

TEST_F(SupervisorTest, DeleteStopsEverythingAndForgetsTheSlots) {
  RegisterSpec();
  Deploy(2);
  Reconcile();
  ASSERT_TRUE(sup_->DeleteDeployment(key_).ok());
  EXPECT_FALSE(sup_->GetDeployment(key_).ok());
  Reconcile();
  EXPECT_THAT(rt_.signals(), UnorderedElementsAre(
                                 testing::FakeRuntime::SignalCall{"default/web-001", SIGTERM},
                                 testing::FakeRuntime::SignalCall{"default/web-002", SIGTERM}));
  rt_.Exit("default/web-001", {.signal = SIGTERM});
  rt_.Exit("default/web-002", {.code = 0});
  EXPECT_TRUE(Ids().empty());
  EXPECT_EQ(sup_->InstanceCount(), 0u);
  // Nothing comes back after a restart either.
  Open();
  Reconcile();
  EXPECT_TRUE(Ids().empty());
}

// Plans and applies until the deployment settles: every stopping instance exits, every
// reconcile that asks to run again at once does. `check` runs after every transition.
TEST_F(SupervisorTest, NewRevisionReplacesOldInstances) {
  RegisterSpec();
  Deploy(2);
  Reconcile();
  model::Deployment d = **sup_->GetDeployment(key_);
  d.config = {{"mode", "v2"}};
  bool created = true;
  auto applied = sup_->ApplyDeployment(d, &created);
  ASSERT_TRUE(applied.ok());
  EXPECT_FALSE(created);
  EXPECT_EQ(applied->revision, 2);
  Settle();
  EXPECT_THAT(Ids(), ElementsAre("web-003", "web-004"));
  EXPECT_EQ(Get("web-003").revision, 2);
  EXPECT_EQ((*sup_->GetDeployment(key_))->stable_revision, 2);
  // Scaling alone is not a new revision.
  ASSERT_TRUE(sup_->ScaleDeployment(key_, 3).ok());
  EXPECT_EQ((*sup_->GetDeployment(key_))->revision, 2);
  auto history = sup_->History(key_);
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ((*history)[0].change_cause, "created");
  EXPECT_EQ((*history)[1].change_cause, "config changed");
  EXPECT_EQ((*history)[1].outcome, "Complete");
}

TEST_F(SupervisorTest, RollingUpdateKeepsItsBoundsAtEveryTransition) {
  RegisterSpec();
  DeployWith(6, {{"type", "rolling"}, {"max_surge", 2}, {"max_unavailable", 1}});
  ChangeConfig({{"v", 2}});
  int transitions = 0;
  auto check = [&] {
    ++transitions;
    int64_t total = 0, ready = 0;
    for (const auto* in : sup_->ListInstances("default", "web", std::nullopt)) {
      ++total;
      ready += in->state == InstanceState::kRunning && in->ready ? 1 : 0;
    }
    EXPECT_LE(total, 6 + 2) << "transition " << transitions;
    EXPECT_GE(ready, 6 - 1) << "transition " << transitions;
  };
  Settle(check);
  EXPECT_GT(transitions, 6);
  const model::Deployment& after = **sup_->GetDeployment(key_);
  EXPECT_EQ(after.stable_revision, 2);
  EXPECT_EQ(after.rollout.phase, "Complete");
  EXPECT_EQ(Ids().size(), 6u);
  for (const auto* in : sup_->ListInstances("default", "web", std::nullopt)) {
    EXPECT_EQ(in->revision, 2);
    EXPECT_EQ(in->state, InstanceState::kRunning);
  }
}

TEST_F(SupervisorTest, OldInstancesWaitUntilTheNewOnesWereReadyForMinReadyS) {
  RegisterSpec();
  DeployWith(2, {{"type", "rolling"}, {"max_surge", 2}, {"max_unavailable", 0},
                 {"min_ready_s", 10}});
  ChangeConfig({{"v", 2}});
  absl::Time wake = Reconcile();
  EXPECT_EQ(Ids().size(), 4u);  // both new ones run, nothing old stopped yet
  EXPECT_EQ(wake, clock_.Now() + absl::Seconds(10));
  clock_.Advance(absl::Seconds(9));
  Settle();
  EXPECT_EQ(Ids().size(), 4u);
  clock_.Advance(absl::Seconds(1));
  Settle();
  EXPECT_THAT(Ids(), ElementsAre("web-003", "web-004"));
  EXPECT_EQ((*sup_->GetDeployment(key_))->stable_revision, 2);
}

TEST_F(SupervisorTest, ARolloutPastItsDeadlineRollsBackByItself) {
  RegisterSpec();
  model::AgentSpec broken;
  broken.name = "agent";
  broken.version = "2.0.0";
  broken.command = {"/bin/broken"};
  bool created = false;
  ASSERT_TRUE(sup_->RegisterSpec(broken, &created).ok());
  rt_.FailSpawnsFor("/bin/broken", absl::NotFoundError("no such file"));
  DeployWith(2, {{"type", "rolling"}, {"max_surge", 1}, {"max_unavailable", 0},
                 {"progress_deadline_s", 30}, {"auto_rollback", true}});
  model::Deployment d = **sup_->GetDeployment(key_);
  d.spec = "agent@2.0.0";
  ASSERT_TRUE(sup_->ApplyDeployment(d, &created).ok());
  Settle();
  EXPECT_EQ((*sup_->GetDeployment(key_))->revision, 2);
  for (int i = 0; i < 4; ++i) {  // the new instance keeps failing to start
    clock_.Advance(absl::Seconds(10));
    Settle();
  }
  const model::Deployment& after = **sup_->GetDeployment(key_);
  EXPECT_EQ(after.revision, 1);
  EXPECT_EQ(after.spec, "agent@1.0.0");  // the template is back
  EXPECT_EQ(after.stable_revision, 1);
  EXPECT_THAT(Ids(), ElementsAre("web-001", "web-002"));  // never touched
  auto history = sup_->History(key_);
  ASSERT_TRUE(history.ok());
  EXPECT_EQ(history->back().outcome, "RolledBack");
  EXPECT_THAT(history->back().outcome_message, ::testing::HasSubstr("progress_deadline_s"));
}

TEST_F(SupervisorTest, ACanaryPausedAtAStepResumesThereAfterARestart) {
  RegisterSpec();
  DeployWith(4, {{"type", "canary"},
                 {"steps", {{{"set_weight", 25}}, {{"pause", model::Json::object()}}}}});
  ChangeConfig({{"v", 2}});
  Settle();
  std::vector<std::string> before = Ids();
  EXPECT_EQ(before.size(), 5u);  // 4 stable + 1 canary
  EXPECT_EQ((*sup_->GetDeployment(key_))->rollout.pause_reason, "step");

  // The daemon restarts: same store, the agents are still there and are adopted.
  testing::FakeRuntime rt2;
  for (const std::string& id : before) rt2.AddAlive(*rt_.ProcessOf("default/" + id));
  Open(&rt2);
  Settle();
  const model::Deployment& reloaded = **sup_->GetDeployment(key_);
  EXPECT_EQ(reloaded.rollout.phase, "Paused");
  EXPECT_EQ(reloaded.rollout.step_index, 1);
  EXPECT_EQ(reloaded.rollout.weight, 25);
  EXPECT_EQ(Ids(), before);
  auto promote = sup_->PromoteRollout(key_, false);
  ASSERT_TRUE(promote.ok()) << promote.status();
  Settle();
  EXPECT_EQ((*sup_->GetDeployment(key_))->stable_revision, 2);
  EXPECT_EQ(Ids().size(), 4u);
}

TEST_F(SupervisorTest, UndoGoesBackToAnEarlierRevisionAndPrunedOnesAreRefused) {
  RegisterSpec();
  DeployWith(2, model::Json::object(), /*history_limit=*/1);
  for (int v = 2; v <= 4; ++v) {
    ChangeConfig({{"v", v}});
    Settle();
  }
  EXPECT_EQ((*sup_->GetDeployment(key_))->revision, 4);
  auto pruned = sup_->UndoRollout(key_, 1);
  ASSERT_FALSE(pruned.ok());
  EXPECT_EQ(pruned.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*sup_->GetDeployment(key_))->revision, 4);  // nothing changed

  auto undo = sup_->UndoRollout(key_, std::nullopt);  // the previous one: 3
  ASSERT_TRUE(undo.ok()) << undo.status();
  EXPECT_EQ(undo->revision, 3);
  EXPECT_EQ(undo->config, (model::Json{{"v", 3}}));
  Settle();
  EXPECT_EQ((*sup_->GetDeployment(key_))->stable_revision, 3);
  for (const auto* in : sup_->ListInstances("default", "web", std::nullopt)) {
    EXPECT_EQ(in->revision, 3);
  }
  EXPECT_FALSE(sup_->UndoRollout(key_, 3).ok());  // already there
}

TEST_F(SupervisorTest, StopAllKeepsAgentsStoppedUntilTheNextStart) {
  RegisterSpec();
  Deploy(2);
  Reconcile();
  sup_->StopAllAgents();
  EXPECT_EQ(sup_->AgentsRunning(), 2u);
  rt_.Exit("default/web-001", {.signal = SIGTERM});
  rt_.Exit("default/web-002", {.signal = SIGTERM});
  Reconcile();
  EXPECT_EQ(sup_->AgentsRunning(), 0u);
  EXPECT_EQ(rt_.spawned().size(), 2u);  // not restarted while stopping
  Open();
  Reconcile();
  EXPECT_EQ(rt_.spawned().size(), 4u);
  EXPECT_EQ(Get("web-001").state, InstanceState::kRunning);
}

TEST_F(SupervisorTest, SpecVersionsAreImmutable) {
  RegisterSpec();
  model::AgentSpec same;
  same.name = "agent";
  same.version = "1.0.0";
  same.command = {"/bin/agent"};
  same.stop.grace_s = 5;
  bool created = true;
  ASSERT_TRUE(sup_->RegisterSpec(same, &created).ok());
  EXPECT_FALSE(created);
  same.command = {"/bin/other"};
  auto conflict = sup_->RegisterSpec(same, &created);
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kAlreadyExists);
  // A deprecated spec cannot be used by new deployments.
  ASSERT_TRUE(sup_->DeprecateSpec("default", "agent", "1.0.0").ok());
  model::Deployment d;
  d.name = "web";
  d.spec = "agent@1.0.0";
  EXPECT_EQ(sup_->CreateDeployment(d).status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace palm::controller

namespace palm::controller {
namespace {

TEST_F(SupervisorTest, AStopDrainsFirstAndSignalsOnceTheTaskInFlightIsDone) {
  RegisterSpec("agent", /*grace_s=*/5);
  Deploy(1);
  Reconcile();
  std::string task = LeaseTaskTo("web-001");
  ASSERT_TRUE(sup_->ScaleDeployment(key_, 0).ok());
  absl::Time next = Reconcile();
  EXPECT_EQ(Get("web-001").state, InstanceState::kDraining);
  EXPECT_TRUE(rt_.SignalsFor("default/web-001").empty()) << "no signal while a task runs";
  EXPECT_EQ(next, clock_.Now() + absl::Seconds(5));  // drains at most grace_s
  // A draining instance is offered nothing new.
  EXPECT_EQ(tasks_->Queue("default", "web").waiting_agents, 0);
  clock_.Advance(absl::Seconds(1));
  Finish("web-001", task);
  Reconcile();
  EXPECT_EQ(Get("web-001").state, InstanceState::kStopping);
  EXPECT_THAT(rt_.SignalsFor("default/web-001"), ElementsAre(SIGTERM));
}

TEST_F(SupervisorTest, ADrainThatOutlivesTheGracePeriodStopsAnyway) {
  RegisterSpec("agent", /*grace_s=*/5);
  Deploy(1);
  Reconcile();
  LeaseTaskTo("web-001");
  ASSERT_TRUE(sup_->RestartInstance("default", "web-001").ok());
  EXPECT_EQ(Get("web-001").state, InstanceState::kDraining);
  clock_.Advance(absl::Seconds(5));
  Reconcile();
  EXPECT_THAT(rt_.SignalsFor("default/web-001"), ElementsAre(SIGTERM));
  // Its lease went back to the queue when the process exited, and it comes back.
  rt_.Exit("default/web-001", {.signal = SIGTERM});
  EXPECT_EQ(tasks_->InFlight("default", "web-001"), 0);
  EXPECT_EQ(tasks_->Queue("default", "web").queued, 1);
  Reconcile();
  EXPECT_EQ(Get("web-001").state, InstanceState::kRunning);
}

TEST_F(SupervisorTest, InstanceDrainRetiresItAndStartsAReplacementAtOnce) {
  RegisterSpec("agent", /*grace_s=*/5);
  Deploy(1);
  Reconcile();
  std::string task = LeaseTaskTo("web-001");
  ASSERT_TRUE(sup_->DrainInstance("default", "web-001").ok());
  Reconcile();
  EXPECT_THAT(Ids(), ElementsAre("web-001", "web-002"));
  EXPECT_EQ(Get("web-001").state, InstanceState::kDraining);
  EXPECT_EQ(Get("web-002").state, InstanceState::kRunning);
  auto hb = sup_->Heartbeat("default", "web-001", {});
  ASSERT_TRUE(hb.ok());
  EXPECT_TRUE(hb->drain);
  // No deadline but the task's own lease: a minute later it still waits for its task.
  clock_.Advance(absl::Seconds(30));
  Reconcile();
  EXPECT_TRUE(rt_.SignalsFor("default/web-001").empty());
  Finish("web-001", task);
  Reconcile();
  EXPECT_THAT(rt_.SignalsFor("default/web-001"), ElementsAre(SIGTERM));
  rt_.Exit("default/web-001", {.code = 0});
  EXPECT_THAT(Ids(), ElementsAre("web-002"));
}

TEST_F(SupervisorTest, ADrainedDeploymentStaysAtZeroUntilResumed) {
  RegisterSpec("agent", /*grace_s=*/5);
  Deploy(2);
  Reconcile();
  ASSERT_TRUE(sup_->DrainDeployment(key_).ok());
  Reconcile();
  for (const auto& id : Ids()) EXPECT_EQ(Get(id).state, InstanceState::kStopping) << id;
  rt_.Exit("default/web-001", {.code = 0});
  rt_.Exit("default/web-002", {.code = 0});
  Reconcile();
  EXPECT_TRUE(Ids().empty());
  const model::Deployment* d = *sup_->GetDeployment(key_);
  EXPECT_EQ(sup_->DeploymentStatus(*d)["phase"], "Drained");
  EXPECT_EQ(d->replicas, 2);
  ASSERT_TRUE(sup_->ResumeDeployment(key_).ok());
  Reconcile();
  EXPECT_THAT(Ids(), ElementsAre("web-003", "web-004"));
}

// ---- A failed commit (the store's fault hook) --------------------------------------------
// The rule (store/committer.h): the batch is kept and retried; nothing is spawned or signalled
// for a change before it is durable; API mutations say their change is kept and retried.

TEST_F(SupervisorTest, AFailedStartCommitSpawnsNothingAndTheNextReconcileStartsThem) {
  RegisterSpec();
  Deploy(2);
  faulty_->FailNextApplies(1);
  auto failed = sup_->Reconcile(key_);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(rt_.spawns().empty()) << "no process for a start whose record is not durable";
  // The store is back: the kept records are written, then the processes start.
  Reconcile();
  ASSERT_EQ(rt_.spawns().size(), 2u);
  for (const auto& id : Ids()) EXPECT_EQ(Get(id).state, InstanceState::kRunning) << id;
  for (const auto& [id, doc] : StoredInstances()) {
    EXPECT_EQ(doc["state"], "Running") << id;
    EXPECT_GT(doc["pid"].get<int64_t>(), 0) << id;
  }
  EXPECT_EQ(StoredCount("DeploymentCreated"), 1);
  EXPECT_EQ(StoredCount("InstanceStarted"), 2);
}

TEST_F(SupervisorTest, AScaleWhoseCommitFailsSaysItIsRetriedAndStartsNothingUntilDurable) {
  RegisterSpec();
  Deploy(1);
  Reconcile();
  faulty_->SetFailing(true);
  auto scaled = sup_->ScaleDeployment(key_, 3);
  ASSERT_FALSE(scaled.ok());
  EXPECT_EQ(scaled.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorCode(scaled.status()), "STORE_UNAVAILABLE");
  EXPECT_THAT(std::string(scaled.status().message()),
              HasSubstr("deployment web scaled from 1 to 3 is not yet durable"));
  EXPECT_THAT(std::string(scaled.status().message()), HasSubstr("the write is retried"));
  EXPECT_EQ((*sup_->GetDeployment(key_))->replicas, 3) << "kept, as the error says";
  EXPECT_FALSE(sup_->Reconcile(key_).ok());
  EXPECT_EQ(rt_.spawns().size(), 1u) << "nothing starts while the scale is not durable";
  EXPECT_EQ(rt_.signals().size(), 0u);

  faulty_->SetFailing(false);
  Reconcile();
  EXPECT_EQ(rt_.spawns().size(), 3u);
  EXPECT_THAT(Ids(), ElementsAre("web-001", "web-002", "web-003"));
  auto deps = store_->ListDeployments();
  ASSERT_EQ(deps->size(), 1u);
  EXPECT_EQ((*deps)[0].doc["replicas"], 3) << "the kept change became durable, all of it";
  EXPECT_EQ(StoredCount("ScaledUp"), 1);
  EXPECT_EQ(StoredInstances().size(), 3u);
}

TEST_F(SupervisorTest, ADeleteWhoseCommitFailsSignalsNothingUntilDurableAndIsNotLost) {
  RegisterSpec();
  Deploy(2);
  Reconcile();
  faulty_->SetFailing(true);
  auto deleted = sup_->DeleteDeployment(key_);
  ASSERT_FALSE(deleted.ok());
  EXPECT_THAT(std::string(deleted.status().message()),
              HasSubstr("deleting deployment web is not yet durable"));
  EXPECT_FALSE(sup_->Reconcile(key_).ok());  // its instances begin to stop
  EXPECT_TRUE(rt_.signals().empty()) << "no signal for a stop that is not durable";

  faulty_->SetFailing(false);
  Reconcile();
  EXPECT_THAT(rt_.SignalsFor("default/web-001"), ElementsAre(SIGTERM));
  EXPECT_THAT(rt_.SignalsFor("default/web-002"), ElementsAre(SIGTERM));
  rt_.Exit("default/web-001", {.signal = SIGTERM});
  rt_.Exit("default/web-002", {.signal = SIGTERM});
  EXPECT_TRUE(Ids().empty());
  EXPECT_EQ(StoredCount("DeploymentDeleted"), 1);
  EXPECT_EQ(StoredCount("InstanceStopping"), 2);
  EXPECT_EQ(StoredCount("InstanceExited"), 2);

  Open();  // a daemon restart reads only the store
  EXPECT_FALSE(sup_->GetDeployment(key_).ok()) << "the delete was not lost";
  EXPECT_TRUE(Ids().empty());
  EXPECT_TRUE(StoredInstances().empty());
}

TEST_F(SupervisorTest, AnExitWhoseCommitFailsIsRecordedAndRestartedOnceTheStoreRecovers) {
  RegisterSpec();
  Deploy(1);
  Reconcile();
  faulty_->SetFailing(true);
  rt_.Exit("default/web-001", {.code = 1});
  EXPECT_EQ(Get("web-001").state, InstanceState::kBackOff);
  clock_.Advance(absl::Seconds(2));
  EXPECT_FALSE(sup_->Reconcile(key_).ok());
  EXPECT_EQ(rt_.spawns().size(), 1u);
  EXPECT_EQ(Get("web-001").state, InstanceState::kStarting);

  faulty_->SetFailing(false);
  Reconcile();
  EXPECT_EQ(rt_.spawns().size(), 2u);
  EXPECT_EQ(Get("web-001").state, InstanceState::kRunning) << "not stuck in Starting";
  EXPECT_EQ(StoredInstances()["web-001"]["state"], "Running");
  EXPECT_EQ(StoredCount("InstanceExited"), 1) << "the exit's event was kept, not dropped";
  EXPECT_EQ(StoredCount("BackOff"), 1);
  EXPECT_EQ(StoredCount("InstanceStarted"), 2);
}

TEST_F(SupervisorTest, ARestartWhoseCommitFailsSendsNoSignalUntilItIsDurable) {
  RegisterSpec();
  Deploy(1);
  Reconcile();
  faulty_->FailNextApplies(1);
  absl::Status st = sup_->RestartInstance("default", "web-001");
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(st.message()), HasSubstr("restarting instance web-001 is not yet durable"));
  EXPECT_TRUE(rt_.SignalsFor("default/web-001").empty());
  absl::Time next = Reconcile();  // the retry commits the stop, then signals
  EXPECT_THAT(rt_.SignalsFor("default/web-001"), ElementsAre(SIGTERM));
  EXPECT_EQ(next, clock_.Now() + absl::Seconds(5)) << "the grace period runs from the signal";
  rt_.Exit("default/web-001", {.signal = SIGTERM});
  Reconcile();
  EXPECT_EQ(rt_.spawns().size(), 2u);
  EXPECT_EQ(Get("web-001").state, InstanceState::kRunning);
}

}  // namespace
}  // namespace palm::controller
