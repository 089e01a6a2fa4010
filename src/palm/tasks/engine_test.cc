// The task engine against a FakeClock and a real SQLite store in a temp dir (wrapped so a
// test can count commits and make one fail): group commit, routing (least in flight, FIFO,
// weights, targets, spill-over), broadcast, idempotency, leases and their expiry, results
// refused, cancel, bounds, reload after a crash, metrics, drain support.
#include "palm/tasks/engine.h"

#include <stdlib.h>

#include <filesystem>
#include <iostream>
#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "absl/strings/str_cat.h"
#include "palm/base/error.h"
#include "palm/base/utf8.h"
#include "palm/testing/fake_clock.h"

namespace palm::tasks {
namespace {

using model::Json;
using model::Task;
using model::TaskMode;
using model::TaskState;
using ::testing::HasSubstr;

const std::string kTenant = "default";

// Forwards to the real store; counts commits and can fail the next ones.
class CountingStore final : public store::Store {
 public:
  explicit CountingStore(std::unique_ptr<store::Store> real) : real_(std::move(real)) {}
  absl::Status Apply(const store::WriteBatch& batch) override {
    if (fail_applies > 0) {
      --fail_applies;
      return absl::UnavailableError("disk full (test)");
    }
    ++applies;
    task_rows += batch.put_tasks.size();
    last_rows = batch.put_tasks.size();
    for (const auto& r : batch.put_tasks) {
      doc_bytes += r.doc_text.empty() ? r.doc.dump().size() : r.doc_text.size();
    }
    for (const auto& r : batch.put_deliveries) {
      doc_bytes += r.doc_text.empty() ? r.doc.dump().size() : r.doc_text.size();
    }
    return real_->Apply(batch);
  }
  absl::StatusOr<std::vector<store::SpecRow>> ListSpecs() override { return real_->ListSpecs(); }
  absl::StatusOr<std::vector<store::DeploymentRow>> ListDeployments() override {
    return real_->ListDeployments();
  }
  absl::StatusOr<std::vector<store::InstanceRow>> ListInstances() override {
    return real_->ListInstances();
  }
  absl::StatusOr<std::vector<store::RevisionRow>> ListRevisions() override {
    return real_->ListRevisions();
  }
  absl::StatusOr<std::vector<store::TokenRow>> ListTokens() override {
    return real_->ListTokens();
  }
  absl::StatusOr<std::vector<store::EventRow>> ListEvents(int64_t after, size_t limit,
                                                          const std::string& tenant,
                                                          const std::string& dep,
                                                          bool descending) override {
    return real_->ListEvents(after, limit, tenant, dep, descending);
  }
  absl::StatusOr<int64_t> LastEventSeq() override { return real_->LastEventSeq(); }
  absl::StatusOr<std::vector<store::TaskRow>> ListTasks(const store::TaskQuery& q) override {
    return real_->ListTasks(q);
  }
  absl::StatusOr<std::optional<store::TaskRow>> GetTask(const std::string& tenant,
                                                        const std::string& id) override {
    return real_->GetTask(tenant, id);
  }
  absl::StatusOr<std::optional<store::TaskRow>> FindTaskByIdempotencyKey(
      const std::string& tenant, const std::string& dep, const std::string& key) override {
    return real_->FindTaskByIdempotencyKey(tenant, dep, key);
  }
  absl::StatusOr<std::vector<store::TaskRow>> ListActiveTasks() override {
    return real_->ListActiveTasks();
  }
  absl::StatusOr<int64_t> LastTaskSeq() override { return real_->LastTaskSeq(); }
  absl::StatusOr<int64_t> PruneFinishedTasks(int64_t keep) override {
    return real_->PruneFinishedTasks(keep);
  }
  absl::StatusOr<std::optional<std::string>> GetMeta(const std::string& key) override {
    return real_->GetMeta(key);
  }
  absl::Status PutMeta(const std::string& key, const std::string& value) override {
    return real_->PutMeta(key, value);
  }
  bool Healthy() override { return real_->Healthy(); }
  int SchemaVersion() override { return real_->SchemaVersion(); }

  int fail_applies = 0;
  int applies = 0;
  size_t task_rows = 0;
  size_t last_rows = 0;
  size_t doc_bytes = 0;  // task and delivery documents written

 private:
  std::unique_ptr<store::Store> real_;
};

// What a callback received (shared so the test can look after the engine called it).
template <typename T>
struct Answer {
  bool called = false;
  T value;
};
using SubmitAnswer = Answer<std::pair<absl::StatusOr<Task>, bool>>;
using PollAnswer = Answer<absl::StatusOr<std::optional<Json>>>;
using StatusAnswer = Answer<absl::Status>;
using TaskAnswer = Answer<absl::StatusOr<Task>>;

model::TaskRequest Req(Json input = {{"q", 1}}, std::string target = "",
                       TaskMode mode = TaskMode::kRoute) {
  model::TaskRequest r;
  r.deployment = "web";
  r.input = std::move(input);
  r.target = std::move(target);
  r.mode = mode;
  return r;
}

model::TaskResult Ok(Json output = {{"answer", 42}}) {
  model::TaskResult r;
  r.ok = true;
  r.output = std::move(output);
  return r;
}

model::TaskResult Fail(std::string error) {
  model::TaskResult r;
  r.ok = false;
  r.error = std::move(error);
  return r;
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/palm-tasks-XXXXXX";
    dir_ = mkdtemp(tmpl);
    Open();
  }
  void TearDown() override {
    engine_.reset();
    events_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // (Re)opens store and engine on the same data dir, as a daemon restart does. Nothing
  // unflushed survives (the old engine is dropped without a Flush: a crash).
  void Open(bool load = true) {
    engine_.reset();
    events_.reset();
    store_.reset();
    auto st = store::OpenSqliteStore(dir_ + "/palm.db");
    ASSERT_TRUE(st.ok()) << st.status();
    store_ = std::make_unique<CountingStore>(std::move(*st));
    events_ = std::make_unique<events::EventLog>();
    ASSERT_TRUE(events_->Load(*store_).ok());
    engine_ = std::make_unique<TaskEngine>(*store_, clock_, options_, events_.get());
    flush_requests_ = 0;
    idle_.clear();
    engine_->SetFlushRequest([this] { ++flush_requests_; });
    engine_->SetIdleCallback(
        [this](const std::string& tenant, const std::string& id) { idle_.push_back(id); });
    if (load) {
      ASSERT_TRUE(engine_->Load().ok());
    }
  }

  void Deploy(RoutingTable routing = {}) { engine_->SetDeployment(kTenant, "web", routing); }
  void Instance(const std::string& id, int64_t rev = 1, bool routable = true) {
    engine_->SetInstance(kTenant, "web", id, rev, routable);
  }

  std::shared_ptr<SubmitAnswer> Submit(model::TaskRequest r) {
    auto a = std::make_shared<SubmitAnswer>();
    a->value.first = absl::UnknownError("not called");
    engine_->Submit(kTenant, std::move(r), [a](absl::StatusOr<Task> t, bool created) {
      EXPECT_FALSE(a->called) << "called twice";
      a->called = true;
      a->value = {std::move(t), created};
    });
    return a;
  }
  // Submits and flushes; the task must have been accepted.
  Task SubmitOk(model::TaskRequest r) {
    auto a = Submit(std::move(r));
    engine_->Flush();
    EXPECT_TRUE(a->called);
    EXPECT_TRUE(a->value.first.ok()) << a->value.first.status();
    return a->value.first.ok() ? *a->value.first : Task{};
  }
  // Submits and flushes; returns the error.
  absl::Status SubmitErr(model::TaskRequest r) {
    auto a = Submit(std::move(r));
    EXPECT_FALSE(a->called) << "answered before Flush";
    engine_->Flush();
    EXPECT_TRUE(a->called);
    return a->value.first.status();
  }

  std::shared_ptr<PollAnswer> Poll(const std::string& id, absl::Duration wait = absl::Seconds(30)) {
    auto a = std::make_shared<PollAnswer>();
    engine_->Next(kTenant, id, wait, [a](absl::StatusOr<std::optional<Json>> r) {
      EXPECT_FALSE(a->called) << "called twice";
      a->called = true;
      a->value = std::move(r);
    });
    return a;
  }
  // The task id a finished poll received ("" when it ended empty).
  static std::string Got(const PollAnswer& a) {
    EXPECT_TRUE(a.called);
    EXPECT_TRUE(a.value.ok()) << a.value.status();
    if (!a.value.ok() || !*a.value) return "";
    return (**a.value)["id"].get<std::string>();
  }
  // Polls without waiting and flushes: the id of the task handed out, or "".
  std::string Take(const std::string& id) {
    auto a = Poll(id, absl::ZeroDuration());
    engine_->Flush();
    return Got(*a);
  }

  std::shared_ptr<StatusAnswer> Result(const std::string& inst, const std::string& task_id,
                                       model::TaskResult r) {
    auto a = std::make_shared<StatusAnswer>();
    engine_->Complete(kTenant, inst, task_id, std::move(r),
                      [a](absl::StatusOr<TaskState> st) {
                        a->called = true;
                        a->value = st.status();
                      });
    return a;
  }
  absl::Status ResultNow(const std::string& inst, const std::string& task_id,
                         model::TaskResult r) {
    auto a = Result(inst, task_id, std::move(r));
    EXPECT_FALSE(a->called) << "answered before Flush";
    engine_->Flush();
    EXPECT_TRUE(a->called);
    return a->value;
  }

  Task Get(const std::string& id) {
    auto t = engine_->Get(kTenant, id);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : Task{};
  }
  Task Stored(const std::string& id) {
    auto row = store_->GetTask(kTenant, id);
    EXPECT_TRUE(row.ok() && *row) << id;
    if (!row.ok() || !*row) return Task{};
    auto t = model::TaskFromStored((*row)->doc);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : Task{};
  }

  std::vector<std::string> EventKinds() {
    auto rows = store_->ListEvents(0, 1000, "", "", /*descending=*/false);
    EXPECT_TRUE(rows.ok());
    std::vector<std::string> out;
    for (const auto& r : *rows) out.push_back(r.doc["kind"].get<std::string>());
    return out;
  }

  void AdvanceAndTick(absl::Duration d) {
    clock_.Advance(d);
    engine_->Tick();
    engine_->Flush();
  }

  std::string dir_;
  testing::FakeClock clock_;
  EngineOptions options_;
  std::unique_ptr<CountingStore> store_;
  std::unique_ptr<events::EventLog> events_;
  std::unique_ptr<TaskEngine> engine_;
  int flush_requests_ = 0;
  std::vector<std::string> idle_;
};

// ---- Group commit ------------------------------------------------------------------------

TEST_F(EngineTest, SubmitAnswersOnlyAfterFlushAndIsDurable) {
  Deploy();
  Instance("web-001");
  auto a = Submit(Req());
  EXPECT_FALSE(a->called);
  EXPECT_EQ(flush_requests_, 1);
  EXPECT_TRUE(engine_->HasPending());
  EXPECT_EQ(store_->applies, 0);
  engine_->Flush();
  ASSERT_TRUE(a->called);
  ASSERT_TRUE(a->value.first.ok()) << a->value.first.status();
  EXPECT_TRUE(a->value.second);
  EXPECT_EQ(a->value.first->id, "task-00000001");
  EXPECT_EQ(a->value.first->state, TaskState::kQueued);
  EXPECT_FALSE(engine_->HasPending());
  EXPECT_EQ(Stored("task-00000001").state, TaskState::kQueued);
}

TEST_F(EngineTest, ManyChangesShareOneCommitAndATaskIsWrittenOnce) {
  Deploy();
  Instance("web-001");
  auto p = Poll("web-001");
  for (int i = 0; i < 10; ++i) Submit(Req());
  EXPECT_EQ(flush_requests_, 1);  // once per batch
  engine_->Flush();
  EXPECT_EQ(store_->applies, 1);
  // The first task was submitted and assigned in the same batch: one row for it.
  EXPECT_EQ(store_->last_rows, 10u);
  EXPECT_EQ(Got(*p), "task-00000001");
  EXPECT_EQ(Stored("task-00000001").state, TaskState::kAssigned);
  // A new batch requests a flush again.
  Submit(Req());
  EXPECT_EQ(flush_requests_, 2);
}

TEST_F(EngineTest, CommitFailureAnswersUnavailableAndRetriesTheBatch) {
  Deploy();
  Instance("web-001");
  store_->fail_applies = 1;
  auto a = Submit(Req());
  engine_->Flush();
  ASSERT_TRUE(a->called);
  EXPECT_EQ(a->value.first.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorCode(a->value.first.status()), "STORE_UNAVAILABLE");
  EXPECT_TRUE(engine_->HasPending());
  // The next change asks for a flush again; that flush commits both.
  auto b = Submit(Req());
  EXPECT_EQ(flush_requests_, 2);
  engine_->Flush();
  ASSERT_TRUE(b->value.first.ok());
  EXPECT_EQ(store_->applies, 1);
  EXPECT_EQ(store_->last_rows, 2u);
  EXPECT_EQ(Stored("task-00000001").state, TaskState::kQueued);
  EXPECT_EQ(Stored("task-00000002").state, TaskState::kQueued);
}

TEST_F(EngineTest, ErrorsAreAnsweredAtFlushNotInsideTheCall) {
  auto st = SubmitErr(Req());  // checks "not called before Flush"
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrorCode(st), "DEPLOYMENT_NOT_FOUND");
  auto p = Poll("web-009");
  EXPECT_FALSE(p->called);
  engine_->Flush();
  EXPECT_EQ(Got(*p), "");  // unknown instance: empty at once
  EXPECT_EQ(store_->applies, 0);
}

// ---- Routing -----------------------------------------------------------------------------

TEST_F(EngineTest, WaitingPollWithFewestInFlightGetsTheTask) {
  Deploy();
  Instance("web-001");
  Instance("web-002");
  Instance("web-003");
  // web-001 holds one lease.
  Task t1 = SubmitOk(Req());
  EXPECT_EQ(Take("web-001"), t1.id);
  auto p1 = Poll("web-001");
  auto p2 = Poll("web-002");
  EXPECT_EQ(engine_->Queue(kTenant, "web").waiting_agents, 2);
  Task t2 = SubmitOk(Req());
  EXPECT_FALSE(p1->called);
  EXPECT_EQ(Got(*p2), t2.id);
  EXPECT_EQ(Get(t2.id).deliveries[0].instance, "web-002");
  // Only web-001 waits now.
  Task t3 = SubmitOk(Req());
  EXPECT_EQ(Got(*p1), t3.id);
  EXPECT_EQ(engine_->InFlight(kTenant, "web-001"), 2);
  EXPECT_EQ(engine_->InFlight(kTenant, "web-002"), 1);
  EXPECT_EQ(engine_->InFlight(kTenant, "web-003"), 0);
  QueueStats q = engine_->Queue(kTenant, "web");
  EXPECT_EQ(q.queued, 0);
  EXPECT_EQ(q.assigned, 3);
  EXPECT_EQ(q.waiting_agents, 0);
}

TEST_F(EngineTest, ACancelledPollIsNeverHandedATask) {
  Deploy();
  Instance("web-001");
  Instance("web-002");
  bool called = false;
  uint64_t gone = engine_->Next(kTenant, "web-001", absl::Seconds(30),
                                [&](absl::StatusOr<std::optional<Json>>) { called = true; });
  ASSERT_NE(gone, 0u);
  auto p2 = Poll("web-002");
  engine_->CancelPoll(gone);  // web-001's agent hung up
  EXPECT_EQ(engine_->Queue(kTenant, "web").waiting_agents, 1);
  Task t = SubmitOk(Req());
  EXPECT_EQ(Got(*p2), t.id);
  Task t2 = SubmitOk(Req());  // nobody waits: it queues instead of going to the dead poll
  EXPECT_EQ(Get(t2.id).state, TaskState::kQueued);
  AdvanceAndTick(absl::Seconds(60));
  EXPECT_FALSE(called);
  engine_->CancelPoll(gone);  // unknown by now: ignored
}

TEST_F(EngineTest, QueuedTasksAreTakenInOrder) {
  Deploy();
  Instance("web-001");
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(SubmitOk(Req({{"i", i}})).id);
  EXPECT_EQ(engine_->Queue(kTenant, "web").queued, 5);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Take("web-001"), ids[i]);
  EXPECT_EQ(Take("web-001"), "");
  EXPECT_EQ(engine_->Queue(kTenant, "web").queued, 0);
  EXPECT_EQ(engine_->Queue(kTenant, "web").assigned, 5);
}

TEST_F(EngineTest, AgentViewCarriesTheLease) {
  Deploy();
  Instance("web-001");
  model::TaskRequest r = Req({{"question", "why"}});
  r.timeout_s = 30;
  r.max_attempts = 5;
  Task t = SubmitOk(r);
  auto p = Poll("web-001", absl::ZeroDuration());
  engine_->Flush();
  ASSERT_TRUE(p->value.ok() && *p->value);
  const Json& view = **p->value;
  EXPECT_EQ(view["id"], t.id);
  EXPECT_EQ(view["input"]["question"], "why");
  EXPECT_EQ(view["attempt"], 1);
  EXPECT_EQ(view["max_attempts"], 5);
  EXPECT_EQ(view["timeout_s"], 30);
  EXPECT_EQ(view["lease_expires_at"], palm::FormatTime(clock_.Now() + absl::Seconds(30)));
  Task stored = Stored(t.id);
  EXPECT_EQ(stored.state, TaskState::kAssigned);
  ASSERT_TRUE(stored.deliveries[0].lease_expires_at.has_value());
  EXPECT_EQ(stored.deliveries[0].revision, 1);
}

TEST_F(EngineTest, SmoothWeightedRoundRobinSplitsExactly) {
  RoutingTable rt;
  rt.stable_revision = 1;
  rt.canary_revision = 2;
  rt.weights = {{1, 90}, {2, 10}};
  Deploy(rt);
  Instance("web-001", 1);
  Instance("web-002", 2);
  for (int i = 0; i < 1000; ++i) Submit(Req());
  engine_->Flush();
  // The canary instance takes only what was bound to its revision: one in every ten.
  auto drain = [&](const std::string& inst) {
    std::vector<std::shared_ptr<PollAnswer>> polls;
    for (int i = 0; i < 1000; ++i) polls.push_back(Poll(inst, absl::ZeroDuration()));
    engine_->Flush();
    std::vector<int64_t> seqs;
    for (const auto& p : polls) {
      std::string id = Got(*p);
      int64_t seq = 0;
      if (!id.empty() && model::ParseTaskId(id, &seq)) seqs.push_back(seq);
    }
    return seqs;
  };
  std::vector<int64_t> canary = drain("web-002");
  ASSERT_EQ(canary.size(), 100u);
  for (size_t i = 0; i < canary.size(); ++i) {
    EXPECT_EQ((canary[i] - 1) / 10, static_cast<int64_t>(i)) << "not smooth at " << i;
  }
  EXPECT_EQ(drain("web-001").size(), 900u);
  EXPECT_EQ(engine_->Queue(kTenant, "web").queued, 0);
}

TEST_F(EngineTest, WeightsCountOnlyRevisionsThatCanServe) {
  RoutingTable rt;
  rt.stable_revision = 1;
  rt.canary_revision = 2;
  rt.weights = {{1, 50}, {2, 50}};
  Deploy(rt);
  Instance("web-001", 1);
  Instance("web-002", 2, /*routable=*/false);
  for (int i = 0; i < 4; ++i) SubmitOk(Req());
  int taken = 0;
  while (!Take("web-001").empty()) ++taken;
  EXPECT_EQ(taken, 4);
}

TEST_F(EngineTest, DeliveriesOfARevisionWithoutInstancesGoToAnyInstance) {
  Deploy();                   // stable revision 1 gets everything
  Instance("web-002", 2);     // but only revision 2 runs
  auto p = Poll("web-002");
  Task t = SubmitOk(Req());
  EXPECT_EQ(Got(*p), t.id);

  // Queued for revision 1 while web-001 could serve; web-001 then stops being routable: the
  // waiting revision-2 poll takes it.
  Instance("web-001", 1);
  Task t2 = SubmitOk(Req());
  auto p2 = Poll("web-002");
  engine_->Flush();
  EXPECT_FALSE(p2->called);
  Instance("web-001", 1, /*routable=*/false);
  engine_->Flush();
  EXPECT_EQ(Got(*p2), t2.id);
}

TEST_F(EngineTest, TargetsPickRevisionOrInstance) {
  RoutingTable rt;
  rt.stable_revision = 1;
  rt.canary_revision = 2;
  rt.preview_revision = 3;
  Deploy(rt);
  Instance("web-001", 1);
  Instance("web-002", 2);
  Instance("web-003", 3);
  Instance("web-004", 1);
  Task canary = SubmitOk(Req({}, "canary"));
  Task preview = SubmitOk(Req({}, "preview"));
  Task pinned = SubmitOk(Req({}, "web-004"));
  Task plain = SubmitOk(Req());
  EXPECT_EQ(Take("web-003"), preview.id);   // preview takes only preview work
  EXPECT_EQ(Take("web-003"), "");
  EXPECT_EQ(Take("web-001"), plain.id);     // neither canary- nor web-004-bound work
  EXPECT_EQ(Take("web-001"), "");
  EXPECT_EQ(Take("web-002"), canary.id);
  EXPECT_EQ(Take("web-004"), pinned.id);

  // A strict target waits for its revision while it is still the canary.
  Instance("web-002", 2, /*routable=*/false);
  Task canary2 = SubmitOk(Req({}, "canary"));
  EXPECT_EQ(Take("web-001"), "");
  // Once the canary is gone from the routing table, anyone may take it.
  rt.canary_revision.reset();
  Deploy(rt);
  EXPECT_EQ(Take("web-001"), canary2.id);

  auto st = SubmitErr(Req({}, "canary"));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("no canary revision"));
  st = SubmitErr(Req({}, "web-099"));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("web-099"));
}

TEST_F(EngineTest, UnroutableInstancesGetNothingAndTheirPollsEnd) {
  Deploy();
  Instance("web-001");
  auto p = Poll("web-001");
  Instance("web-001", 1, /*routable=*/false);  // draining
  engine_->Flush();
  EXPECT_EQ(Got(*p), "");
  SubmitOk(Req());
  EXPECT_EQ(Take("web-001"), "");
  EXPECT_EQ(engine_->Queue(kTenant, "web").queued, 1);
  Instance("web-001", 1, /*routable=*/true);
  EXPECT_EQ(Take("web-001"), "task-00000001");
}

TEST_F(EngineTest, DeadlineChangedWhenAnEarlierTimerArrives) {
  int changed = 0;
  engine_->SetDeadlineChanged([&] { ++changed; });
  Deploy();
  Instance("web-001");
  Instance("web-002");
  auto p1 = Poll("web-001", absl::Seconds(30));
  EXPECT_EQ(changed, 1);
  auto p2 = Poll("web-002", absl::Seconds(40));  // later: no change
  EXPECT_EQ(changed, 1);
  model::TaskRequest r = Req();
  r.timeout_s = 5;
  SubmitOk(r);  // a 5 s lease for web-001: earlier
  EXPECT_EQ(changed, 2);
  EXPECT_EQ(engine_->NextDeadline(), clock_.MonotonicNow() + absl::Seconds(5));
}

TEST_F(EngineTest, PollsEndEmptyAtTheirDeadlineCappedByMaxPollWait) {
  options_.max_poll_wait = absl::Seconds(10);
  Open();
  Deploy();
  Instance("web-001");
  absl::Time start = clock_.MonotonicNow();
  auto p = Poll("web-001", absl::Seconds(60));
  EXPECT_EQ(engine_->NextDeadline(), start + absl::Seconds(10));
  AdvanceAndTick(absl::Seconds(9));
  EXPECT_FALSE(p->called);
  AdvanceAndTick(absl::Seconds(1));
  EXPECT_EQ(Got(*p), "");
  EXPECT_EQ(engine_->NextDeadline(), absl::InfiniteFuture());
  EXPECT_EQ(engine_->Queue(kTenant, "web").waiting_agents, 0);
}

// ---- Broadcast ---------------------------------------------------------------------------

TEST_F(EngineTest, BroadcastGivesEachReadyInstanceItsOwnDelivery) {
  Deploy();
  Instance("web-001");
  Instance("web-002");
  Instance("web-003");
  Instance("web-004", 1, /*routable=*/false);
  auto p1 = Poll("web-001");
  Task t = SubmitOk(Req({{"task", "hello"}}, "", TaskMode::kBroadcast));
  ASSERT_EQ(t.deliveries.size(), 3u);
  EXPECT_EQ(t.deliveries[0].instance, "web-001");
  EXPECT_EQ(t.deliveries[2].instance, "web-003");
  EXPECT_EQ(Got(*p1), t.id);
  EXPECT_EQ(Take("web-002"), t.id);
  EXPECT_EQ(Take("web-004"), "");
  EXPECT_EQ(Take("web-003"), t.id);
  EXPECT_EQ(Take("web-001"), "");  // one delivery each

  EXPECT_TRUE(ResultNow("web-001", t.id, Ok({{"n", 1}})).ok());
  EXPECT_EQ(Get(t.id).state, TaskState::kAssigned);
  EXPECT_TRUE(ResultNow("web-002", t.id, Ok({{"n", 2}})).ok());
  EXPECT_TRUE(ResultNow("web-003", t.id, Ok({{"n", 3}})).ok());
  Task done = Stored(t.id);
  EXPECT_EQ(done.state, TaskState::kSucceeded);
  EXPECT_EQ(done.deliveries[1].output["n"], 2);
  EXPECT_EQ(done.deliveries[2].state, TaskState::kSucceeded);
  // The same instance twice: already finished.
  EXPECT_EQ(ErrorCode(ResultNow("web-002", t.id, Ok())), "TASK_ALREADY_FINISHED");
}


TEST_F(EngineTest, BroadcastStateAggregatesDeliveries) {
  Deploy();
  Instance("web-001");
  Instance("web-002");
  model::TaskRequest r = Req({}, "", TaskMode::kBroadcast);
  r.timeout_s = 10;
  r.max_attempts = 1;
  Task t1 = SubmitOk(r);
  EXPECT_EQ(Take("web-001"), t1.id);
  EXPECT_EQ(Take("web-002"), t1.id);
  EXPECT_TRUE(ResultNow("web-001", t1.id, Ok()).ok());
  AdvanceAndTick(absl::Seconds(10));  // web-002's lease expires: its only attempt
  Task done1 = Stored(t1.id);
  EXPECT_EQ(done1.state, TaskState::kTimedOut);  // every failure was a lease expiry
  EXPECT_EQ(done1.deliveries[1].state, TaskState::kTimedOut);
  EXPECT_THAT(done1.error, HasSubstr("1 of 2"));

  Task t2 = SubmitOk(r);
  EXPECT_EQ(Take("web-001"), t2.id);
  EXPECT_EQ(Take("web-002"), t2.id);
  EXPECT_TRUE(ResultNow("web-001", t2.id, Fail("boom")).ok());
  EXPECT_EQ(Get(t2.id).state, TaskState::kAssigned);
  AdvanceAndTick(absl::Seconds(10));
  Task done2 = Stored(t2.id);
  EXPECT_EQ(done2.state, TaskState::kFailed);
  EXPECT_EQ(done2.deliveries[0].error, "boom");
}

TEST_F(EngineTest, BroadcastNeedsAReadyInstance) {
  Deploy();
  Instance("web-001", 1, /*routable=*/false);
  auto st = SubmitErr(Req({}, "", TaskMode::kBroadcast));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorCode(st), "NO_READY_INSTANCES");
}

TEST_F(EngineTest, RemovedInstanceFailsItsPinnedDeliveries) {
  Deploy();
  Instance("web-001");
  Instance("web-002");
  Task t = SubmitOk(Req({}, "", TaskMode::kBroadcast));
  EXPECT_EQ(Take("web-001"), t.id);
  engine_->RemoveInstance(kTenant, "web-002");
  engine_->Flush();
  Task now = Get(t.id);
  EXPECT_EQ(now.deliveries[1].state, TaskState::kFailed);
  EXPECT_EQ(now.deliveries[1].error, "instance web-002 was removed");
  EXPECT_TRUE(ResultNow("web-001", t.id, Ok()).ok());
  EXPECT_EQ(Stored(t.id).state, TaskState::kFailed);
  EXPECT_EQ(engine_->Queue(kTenant, "web").queued, 0);
}

// ---- Idempotency -------------------------------------------------------------------------

TEST_F(EngineTest, SameIdempotencyKeyReturnsTheExistingTask) {
  Deploy();
  RoutingTable other;
  engine_->SetDeployment(kTenant, "api", other);
  model::TaskRequest r = Req();
  r.idempotency_key = "order-7";
  // Twice in the same batch: the second waits for the first to be durable.
  auto a = Submit(r);
  auto b = Submit(r);
  engine_->Flush();
  ASSERT_TRUE(a->value.first.ok() && b->value.first.ok());
  EXPECT_TRUE(a->value.second);
  EXPECT_FALSE(b->value.second);
  EXPECT_EQ(a->value.first->id, b->value.first->id);
  // Again in a later batch: no change, answered from memory.
  int applies = store_->applies;
  auto c = Submit(r);
  engine_->Flush();
  EXPECT_FALSE(c->value.second);
  EXPECT_EQ(c->value.first->id, a->value.first->id);
  EXPECT_EQ(store_->applies, applies);
  // Another deployment: another task.
  r.deployment = "api";
  Task d = SubmitOk(r);
  EXPECT_NE(d.id, a->value.first->id);
  EXPECT_EQ(engine_->Queue(kTenant, "web").queued, 1);

  // After a restart.
  Open();
  Deploy();
  r.deployment = "web";
  auto e = Submit(r);
  engine_->Flush();
  ASSERT_TRUE(e->value.first.ok());
  EXPECT_FALSE(e->value.second);
  EXPECT_EQ(e->value.first->id, a->value.first->id);
}

TEST_F(EngineTest, IdempotencyFoundInTheStoreAfterEviction) {
  options_.finished_cache = 0;
  Open();
  Deploy();
  Instance("web-001");
  model::TaskRequest r = Req();
  r.idempotency_key = "k";
  Task t = SubmitOk(r);
  EXPECT_EQ(Take("web-001"), t.id);
  EXPECT_TRUE(ResultNow("web-001", t.id, Ok()).ok());
  auto again = Submit(r);
  engine_->Flush();
  ASSERT_TRUE(again->value.first.ok());
  EXPECT_FALSE(again->value.second);
  EXPECT_EQ(again->value.first->id, t.id);
  EXPECT_EQ(again->value.first->state, TaskState::kSucceeded);
  // Get and a second result work from the store too.
  EXPECT_EQ(Get(t.id).state, TaskState::kSucceeded);
  EXPECT_EQ(ErrorCode(ResultNow("web-001", t.id, Ok())), "TASK_ALREADY_FINISHED");
}

// ---- Leases ------------------------------------------------------------------------------

TEST_F(EngineTest, ExpiredLeaseRequeuesThenTimesOutAfterMaxAttempts) {
  Deploy();
  Instance("web-001");
  Instance("web-002");
  model::TaskRequest r = Req();
  r.timeout_s = 10;
  r.max_attempts = 2;
  Task t = SubmitOk(r);
  absl::Time granted = clock_.MonotonicNow();
  EXPECT_EQ(Take("web-001"), t.id);
  EXPECT_EQ(engine_->NextDeadline(), granted + absl::Seconds(10));
  AdvanceAndTick(absl::Seconds(9));
  EXPECT_EQ(Get(t.id).state, TaskState::kAssigned);
  AdvanceAndTick(absl::Seconds(1));
  Task requeued = Stored(t.id);
  EXPECT_EQ(requeued.state, TaskState::kQueued);
  EXPECT_EQ(requeued.deliveries[0].attempts, 1);
  EXPECT_EQ(requeued.error, "lease expired after 10s on web-001 (attempt 1 of 2)");
  EXPECT_EQ(engine_->InFlight(kTenant, "web-001"), 0);

  auto p = Poll("web-002", absl::ZeroDuration());
  engine_->Flush();
  ASSERT_TRUE(p->value.ok() && *p->value);
  EXPECT_EQ((**p->value)["attempt"], 2);
  // The first holder's late result is refused.
  EXPECT_EQ(ErrorCode(ResultNow("web-001", t.id, Ok())), "LEASE_NOT_HELD");
  AdvanceAndTick(absl::Seconds(10));
  Task done = Stored(t.id);
  EXPECT_EQ(done.state, TaskState::kTimedOut);
  EXPECT_EQ(done.error, "lease expired after 10s on web-002 (attempt 2 of 2)");
  ASSERT_TRUE(done.completed_at.has_value());
  EXPECT_EQ(engine_->Queue(kTenant, "web").assigned, 0);
  EXPECT_EQ(Take("web-001"), "");

  EXPECT_THAT(EventKinds(), ::testing::ElementsAre("LeaseExpired", "LeaseExpired",
                                                   "TaskTimedOut"));
  WindowStats w = engine_->RevisionStats(kTenant, "web", 1, absl::Seconds(60));
  EXPECT_EQ(w.timed_out, 2);
  EXPECT_EQ(w.count, 2);
}

TEST_F(EngineTest, RequeuedTaskKeepsItsPlaceAtTheFront) {
  Deploy();
  Instance("web-001");
  Instance("web-002");
  model::TaskRequest r = Req();
  r.timeout_s = 5;
  Task t1 = SubmitOk(r);
  EXPECT_EQ(Take("web-001"), t1.id);
  Task t2 = SubmitOk(r);
  Task t3 = SubmitOk(r);
  AdvanceAndTick(absl::Seconds(5));
  EXPECT_EQ(Take("web-002"), t1.id);
  EXPECT_EQ(Take("web-002"), t2.id);
  EXPECT_EQ(Take("web-002"), t3.id);
}

TEST_F(EngineTest, ExpiredLeaseGoesToAWaitingPollAtOnce) {
  Deploy();
  Instance("web-001");
  Instance("web-002");
  model::TaskRequest r = Req();
  r.timeout_s = 5;
  Task t = SubmitOk(r);
  EXPECT_EQ(Take("web-001"), t.id);
  auto p = Poll("web-002", absl::Seconds(30));
  AdvanceAndTick(absl::Seconds(5));
  EXPECT_EQ(Got(*p), t.id);
}

TEST_F(EngineTest, LostInstanceReturnsItsLeasesToTheQueue) {
  Deploy();
  Instance("web-001");
  Instance("web-002");
  Task t = SubmitOk(Req());
  EXPECT_EQ(Take("web-001"), t.id);
  auto p = Poll("web-001");
  engine_->InstanceLost(kTenant, "web-001", "exited with code 1");
  engine_->Flush();
  EXPECT_EQ(Got(*p), "");  // its polls end
  EXPECT_EQ(engine_->InFlight(kTenant, "web-001"), 0);
  Task q = Stored(t.id);
  EXPECT_EQ(q.state, TaskState::kQueued);
  EXPECT_EQ(q.error, "instance web-001 lost: exited with code 1 (attempt 1 of 3)");
  EXPECT_EQ(Take("web-002"), t.id);
  EXPECT_EQ(Get(t.id).deliveries[0].attempts, 2);
  EXPECT_TRUE(ResultNow("web-002", t.id, Ok()).ok());
  Task done = Stored(t.id);
  EXPECT_EQ(done.state, TaskState::kSucceeded);
  EXPECT_EQ(done.error, "");
  EXPECT_EQ(done.deliveries[0].output["answer"], 42);
}

TEST_F(EngineTest, ResultsThatDoNotHoldTheLeaseAreRefused) {
  Deploy();
  Instance("web-001");
  Instance("web-002");
  Task t = SubmitOk(Req());
  EXPECT_EQ(Take("web-001"), t.id);
  absl::Status st = ResultNow("web-002", t.id, Ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ErrorCode(st), "LEASE_NOT_HELD");
  model::TaskResult wrong_attempt = Ok();
  wrong_attempt.attempt = 2;
  EXPECT_EQ(ErrorCode(ResultNow("web-001", t.id, wrong_attempt)), "LEASE_NOT_HELD");
  st = ResultNow("web-001", "task-00000099", Ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrorCode(st), "TASK_NOT_FOUND");
  EXPECT_EQ(ErrorCode(ResultNow("web-001", "nonsense", Ok())), "TASK_NOT_FOUND");

  model::TaskResult right = Fail("model refused");
  right.attempt = 1;
  right.cost_usd = 0.25;
  EXPECT_TRUE(ResultNow("web-001", t.id, right).ok());
  Task done = Stored(t.id);
  EXPECT_EQ(done.state, TaskState::kFailed);  // ok:false fails at once, no retry
  EXPECT_EQ(done.error, "model refused");
  EXPECT_EQ(done.deliveries[0].cost_usd, 0.25);
  st = ResultNow("web-001", t.id, Ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ErrorCode(st), "TASK_ALREADY_FINISHED");
  EXPECT_EQ(Stored(t.id).state, TaskState::kFailed);  // nothing changed
  EXPECT_THAT(EventKinds(), ::testing::ElementsAre("TaskFailed"));
}

// ---- Cancel ------------------------------------------------------------------------------

TEST_F(EngineTest, CancelRemovesQueuedAndRevokesAssigned) {
  Deploy();
  Instance("web-001");
  Task queued = SubmitOk(Req());
  Task assigned = SubmitOk(Req());
  Task next = SubmitOk(Req());
  auto cancel = [&](const std::string& id) {
    auto a = std::make_shared<TaskAnswer>();
    engine_->Cancel(kTenant, id, [a](absl::StatusOr<Task> t) {
      a->called = true;
      a->value = std::move(t);
    });
    EXPECT_FALSE(a->called);
    engine_->Flush();
    EXPECT_TRUE(a->called);
    return a->value;
  };
  auto c1 = cancel(queued.id);
  ASSERT_TRUE(c1.ok());
  EXPECT_EQ(c1->state, TaskState::kCancelled);
  EXPECT_EQ(Take("web-001"), assigned.id);  // the cancelled one is skipped
  EXPECT_EQ(engine_->InFlight(kTenant, "web-001"), 1);
  auto c2 = cancel(assigned.id);
  ASSERT_TRUE(c2.ok());
  EXPECT_EQ(c2->state, TaskState::kCancelled);
  EXPECT_EQ(engine_->InFlight(kTenant, "web-001"), 0);
  EXPECT_EQ(ErrorCode(ResultNow("web-001", assigned.id, Ok())), "LEASE_NOT_HELD");
  EXPECT_EQ(Stored(assigned.id).state, TaskState::kCancelled);
  auto c3 = cancel(assigned.id);
  EXPECT_EQ(c3.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ErrorCode(c3.status()), "TASK_ALREADY_FINISHED");
  EXPECT_EQ(ErrorCode(cancel("task-00000077").status()), "TASK_NOT_FOUND");
  EXPECT_EQ(engine_->Queue(kTenant, "web").queued, 1);
  EXPECT_EQ(Take("web-001"), next.id);
}

// ---- Bounds ------------------------------------------------------------------------------

TEST_F(EngineTest, QueueBoundAndInputSize) {
  options_.max_queued_per_deployment = 2;
  options_.max_input_bytes = 100;
  Open();
  Deploy();
  SubmitOk(Req());
  SubmitOk(Req());
  absl::Status st = SubmitErr(Req());
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrorCode(st), "RATE_LIMITED");
  st = SubmitErr(Req({{"blob", std::string(200, 'x')}}));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorCode(st), "PAYLOAD_TOO_LARGE");
  EXPECT_EQ(engine_->Queue(kTenant, "web").queued, 2);
}

// ---- Restart -----------------------------------------------------------------------------

TEST_F(EngineTest, ReloadAfterCrashKeepsQueueAndLeases) {
  Deploy();
  Instance("web-001");
  model::TaskRequest r = Req();
  r.timeout_s = 60;
  Task assigned = SubmitOk(r);
  EXPECT_EQ(Take("web-001"), assigned.id);
  Task queued = SubmitOk(r);
  Submit(r);  // never flushed: lost in the crash, never acknowledged
  clock_.Advance(absl::Seconds(20));

  Open(/*load=*/false);
  Deploy();
  Instance("web-001");
  Instance("web-002");
  ASSERT_TRUE(engine_->Load().ok());
  EXPECT_EQ(engine_->InFlight(kTenant, "web-001"), 1);
  QueueStats q = engine_->Queue(kTenant, "web");
  EXPECT_EQ(q.queued, 1);
  EXPECT_EQ(q.assigned, 1);
  EXPECT_EQ(Take("web-002"), queued.id);
  // The lease keeps its stored expiry: 40 s left.
  EXPECT_EQ(engine_->NextDeadline(), clock_.MonotonicNow() + absl::Seconds(40));
  EXPECT_TRUE(ResultNow("web-001", assigned.id, Ok()).ok());
  EXPECT_EQ(Stored(assigned.id).state, TaskState::kSucceeded);
  // Service time counts from the grant before the restart.
  WindowStats w = engine_->RevisionStats(kTenant, "web", 1, absl::Seconds(60));
  EXPECT_EQ(w.succeeded, 1);
  EXPECT_GE(w.p50_ms, 19000);
  // Seqs go on from the store.
  Task fresh = SubmitOk(r);
  EXPECT_EQ(fresh.id, "task-00000003");
}

TEST_F(EngineTest, ReloadedLeaseExpiresOnItsStoredTime) {
  Deploy();
  Instance("web-001");
  model::TaskRequest r = Req();
  r.timeout_s = 30;
  Task t = SubmitOk(r);
  EXPECT_EQ(Take("web-001"), t.id);
  clock_.Advance(absl::Seconds(100));  // the daemon was down longer than the lease
  Open(/*load=*/false);
  Deploy();
  Instance("web-002");
  ASSERT_TRUE(engine_->Load().ok());
  EXPECT_LE(engine_->NextDeadline(), clock_.MonotonicNow());
  engine_->Tick();
  engine_->Flush();
  EXPECT_EQ(Stored(t.id).state, TaskState::kQueued);
  EXPECT_EQ(Take("web-002"), t.id);
}

TEST_F(EngineTest, PinnedDeliveryWaitsForItsInstanceAcrossReload) {
  Deploy();
  Instance("web-001");
  Task t = SubmitOk(Req({}, "web-001"));
  Open(/*load=*/false);
  Deploy();
  ASSERT_TRUE(engine_->Load().ok());  // web-001 not named yet
  Instance("web-002");
  EXPECT_EQ(Take("web-002"), "");
  Instance("web-001");
  EXPECT_EQ(Take("web-001"), t.id);
}

// ---- Await -------------------------------------------------------------------------------

TEST_F(EngineTest, AwaitAnswersWhenFinishedOrAtTheDeadline) {
  Deploy();
  Instance("web-001");
  Task t = SubmitOk(Req());
  auto wait = [&](absl::Duration d) {
    auto a = std::make_shared<TaskAnswer>();
    engine_->Await(kTenant, t.id, d, [a](absl::StatusOr<Task> r) {
      a->called = true;
      a->value = std::move(r);
    });
    return a;
  };
  auto timeout = wait(absl::Seconds(5));
  auto finish = wait(absl::Seconds(30));
  AdvanceAndTick(absl::Seconds(5));
  ASSERT_TRUE(timeout->called);
  EXPECT_EQ(timeout->value->state, TaskState::kQueued);
  EXPECT_FALSE(finish->called);
  EXPECT_EQ(Take("web-001"), t.id);
  auto res = Result("web-001", t.id, Ok());
  EXPECT_FALSE(finish->called);  // not before the result is durable
  engine_->Flush();
  ASSERT_TRUE(finish->called);
  EXPECT_EQ(finish->value->state, TaskState::kSucceeded);
  auto after = wait(absl::Seconds(30));
  engine_->Flush();
  ASSERT_TRUE(after->called);
  EXPECT_EQ(after->value->state, TaskState::kSucceeded);
  auto missing = std::make_shared<TaskAnswer>();
  engine_->Await(kTenant, "task-00000042", absl::Seconds(1),
                 [missing](absl::StatusOr<Task> r) { missing->value = std::move(r); });
  engine_->Flush();
  EXPECT_EQ(ErrorCode(missing->value.status()), "TASK_NOT_FOUND");
  EXPECT_EQ(engine_->NextDeadline(), absl::InfiniteFuture());
}

// ---- Metrics and status ------------------------------------------------------------------

TEST_F(EngineTest, ResultsFeedRevisionMetrics) {
  RoutingTable rt;
  rt.stable_revision = 1;
  rt.canary_revision = 2;
  rt.weights = {{1, 50}, {2, 50}};
  Deploy(rt);
  Instance("web-001", 1);
  Instance("web-002", 2);
  Task a = SubmitOk(Req());
  Task b = SubmitOk(Req());
  EXPECT_EQ(Take("web-001"), a.id);
  EXPECT_EQ(Take("web-002"), b.id);
  clock_.Advance(absl::Seconds(2));
  EXPECT_TRUE(ResultNow("web-001", a.id, Ok()).ok());
  EXPECT_TRUE(ResultNow("web-002", b.id, Fail("nope")).ok());
  WindowStats s1 = engine_->RevisionStats(kTenant, "web", 1, absl::Seconds(60));
  EXPECT_EQ(s1.count, 1);
  EXPECT_EQ(s1.succeeded, 1);
  EXPECT_NEAR(s1.p50_ms, 2000, 250);
  WindowStats s2 = engine_->RevisionStats(kTenant, "web", 2, absl::Seconds(60));
  EXPECT_EQ(s2.failed, 1);
  EXPECT_EQ(s2.error_rate, 1.0);
  EXPECT_EQ(engine_->RevisionStats(kTenant, "web", 7, absl::Seconds(60)).count, 0);
  SubmitOk(Req());
  Json j = engine_->DeploymentTasks(kTenant, "web");
  EXPECT_EQ(j["queued"], 1);
  EXPECT_EQ(j["assigned"], 0);
  EXPECT_EQ(j["waiting_agents"], 0);
  EXPECT_EQ(j["revisions"]["1"]["window_60s"]["succeeded"], 1);
  EXPECT_EQ(j["revisions"]["2"]["window_300s"]["failed"], 1);
  EXPECT_TRUE(j["revisions"]["1"].contains("totals"));
  // The window slides.
  clock_.Advance(absl::Seconds(120));
  EXPECT_EQ(engine_->RevisionStats(kTenant, "web", 1, absl::Seconds(60)).count, 0);
  EXPECT_EQ(engine_->RevisionStats(kTenant, "web", 1, absl::Seconds(300)).count, 1);
}

// ---- Drain and removal -------------------------------------------------------------------

TEST_F(EngineTest, IdleCallbackWhenADrainingInstanceFinishesItsWork) {
  Deploy();
  Instance("web-001");
  Instance("web-002");
  Task t1 = SubmitOk(Req());
  Task t2 = SubmitOk(Req());
  EXPECT_EQ(Take("web-001"), t1.id);
  EXPECT_EQ(Take("web-001"), t2.id);
  EXPECT_EQ(Take("web-002"), "");
  EXPECT_TRUE(ResultNow("web-002", t1.id, Ok()).code() == absl::StatusCode::kAborted);
  Instance("web-001", 1, /*routable=*/false);  // drain
  EXPECT_EQ(engine_->InFlight(kTenant, "web-001"), 2);
  EXPECT_TRUE(ResultNow("web-001", t1.id, Ok()).ok());
  EXPECT_TRUE(idle_.empty());
  auto res = Result("web-001", t2.id, Ok());
  EXPECT_TRUE(idle_.empty());  // not inside Complete
  engine_->Flush();
  EXPECT_THAT(idle_, ::testing::ElementsAre("web-001"));
  EXPECT_EQ(engine_->InFlight(kTenant, "web-001"), 0);
  // Routable instances going idle are not reported.
  Task t3 = SubmitOk(Req());
  EXPECT_EQ(Take("web-002"), t3.id);
  EXPECT_TRUE(ResultNow("web-002", t3.id, Ok()).ok());
  EXPECT_THAT(idle_, ::testing::ElementsAre("web-001"));
}

TEST_F(EngineTest, RemoveDeploymentCancelsItsTasks) {
  Deploy();
  Instance("web-001");
  Instance("web-002");
  Task assigned = SubmitOk(Req());
  EXPECT_EQ(Take("web-001"), assigned.id);
  Task queued = SubmitOk(Req({}, "web-001"));
  auto p = Poll("web-002");
  engine_->RemoveDeployment(kTenant, "web");
  engine_->Flush();
  EXPECT_EQ(Got(*p), "");
  for (const std::string& id : {assigned.id, queued.id}) {
    Task t = Stored(id);
    EXPECT_EQ(t.state, TaskState::kCancelled) << id;
    EXPECT_EQ(t.error, "deployment deleted");
  }
  EXPECT_EQ(engine_->InFlight(kTenant, "web-001"), 0);
  EXPECT_EQ(ErrorCode(SubmitErr(Req())), "DEPLOYMENT_NOT_FOUND");
  EXPECT_EQ(ErrorCode(ResultNow("web-001", assigned.id, Ok())), "LEASE_NOT_HELD");
  // And nothing of it is reloaded.
  Open();
  Deploy();
  EXPECT_EQ(engine_->Queue(kTenant, "web").queued, 0);
}

TEST_F(EngineTest, TenantsDoNotSeeEachOthersTasks) {
  Deploy();
  Instance("web-001");
  Task t = SubmitOk(Req());
  EXPECT_EQ(engine_->Get("other", t.id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(engine_->Get(kTenant, t.id)->id, t.id);
  store::TaskQuery q;
  q.tenant = kTenant;
  auto l = engine_->List(q);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->size(), 1u);
  q.tenant = "other";
  l = engine_->List(q);
  ASSERT_TRUE(l.ok());
  EXPECT_TRUE(l->empty());
}

TEST_F(EngineTest, PruneRetentionKeepsTheNewestFinished) {
  options_.retention = 1;
  options_.finished_cache = 0;
  Open();
  Deploy();
  Instance("web-001");
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    Task t = SubmitOk(Req());
    EXPECT_EQ(Take("web-001"), t.id);
    EXPECT_TRUE(ResultNow("web-001", t.id, Ok()).ok());
    ids.push_back(t.id);
  }
  Task active = SubmitOk(Req());
  ASSERT_TRUE(engine_->PruneRetention().ok());
  EXPECT_EQ(engine_->Get(kTenant, ids[0]).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(engine_->Get(kTenant, ids[2])->state, TaskState::kSucceeded);
  EXPECT_EQ(engine_->Get(kTenant, active.id)->state, TaskState::kQueued);
}

// ---- Hardening: bounds, broadcast write cost, load order, 503s ---------------------------

TEST_F(EngineTest, AResultOverTheOutputLimitIsRefusedAndAnOverlongErrorIsCut) {
  options_.max_output_bytes = 100;
  options_.max_error_bytes = 64;
  Open();
  Deploy();
  Instance("web-001");
  Task t = SubmitOk(Req());
  EXPECT_EQ(Take("web-001"), t.id);
  absl::Status big = ResultNow("web-001", t.id, Ok({{"blob", std::string(200, 'x')}}));
  EXPECT_EQ(big.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorCode(big), "PAYLOAD_TOO_LARGE");
  EXPECT_THAT(std::string(big.message()),
              HasSubstr("result.output: 211 bytes is over the limit of 100 bytes"));
  EXPECT_EQ(Get(t.id).state, TaskState::kAssigned) << "nothing changed";
  // A long error (with a multi-byte character at the cut) is kept, cut at a boundary.
  std::string error = std::string(40, 'e') + std::string(50, '\xc3') + "end";
  for (size_t i = 40; i < 90; i += 2) error[i + 1] = '\xa9';  // "é" x 25
  EXPECT_TRUE(ResultNow("web-001", t.id, Fail(error)).ok());
  const std::string stored = Stored(t.id).deliveries[0].error;
  EXPECT_LE(stored.size(), 64u);
  EXPECT_EQ(FindInvalidUtf8(stored), std::string::npos);
  EXPECT_THAT(stored, HasSubstr("(truncated from 93 bytes)"));
}

// A broadcast's results each write their own delivery, not the whole task again: the bytes
// written grow linearly with the number of instances (they grew with its square).
TEST_F(EngineTest, ABroadcastWritesBytesLinearInItsDeliveries) {
  auto bytes_for = [&](int n) {
    Open();
    Deploy();
    for (int i = 0; i < n; ++i) Instance(absl::StrCat("web-", 1000 + i));
    const size_t before = store_->doc_bytes;
    Task t = SubmitOk(Req({{"task", "hello"}}, "", TaskMode::kBroadcast));
    EXPECT_EQ(t.deliveries.size(), static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      const std::string id = absl::StrCat("web-", 1000 + i);
      EXPECT_EQ(Take(id), t.id);
      EXPECT_TRUE(ResultNow(id, t.id, Ok({{"answer", std::string(100, 'a')}})).ok());
    }
    Task done = Stored(t.id);
    EXPECT_EQ(done.state, TaskState::kSucceeded);
    EXPECT_EQ(done.deliveries.size(), static_cast<size_t>(n));
    EXPECT_EQ(done.deliveries[n - 1].output["answer"], std::string(100, 'a'));
    EXPECT_GE(done.updated_at, *done.deliveries[n - 1].completed_at);
    return store_->doc_bytes - before;
  };
  const size_t small = bytes_for(25), large = bytes_for(100);
  std::cout << "[ bytes ] broadcast with per-delivery results: 25 instances " << small
            << " B, 100 instances " << large << " B\n";
  EXPECT_LT(static_cast<double>(large) / static_cast<double>(small), 5.0)
      << "4x the instances should cost about 4x the bytes, not 16x";
  // Per delivery: its row at submit, at assignment and with its result (~800 B), and the
  // task's own small row when the task's state flips (here Queued <-> Assigned each time).
  EXPECT_LT(large, 100u * 2000u) << "about 1.4 KB per delivery in this test";
}

TEST_F(EngineTest, BroadcastResultsSurviveAReload) {
  Deploy();
  Instance("web-001");
  Instance("web-002");
  Task t = SubmitOk(Req({}, "", TaskMode::kBroadcast));
  EXPECT_EQ(Take("web-001"), t.id);
  EXPECT_EQ(Take("web-002"), t.id);
  EXPECT_TRUE(ResultNow("web-001", t.id, Ok({{"n", 1}})).ok());
  Open(/*load=*/false);
  Deploy();
  Instance("web-001");
  Instance("web-002");
  ASSERT_TRUE(engine_->Load().ok());
  EXPECT_EQ(engine_->InFlight(kTenant, "web-002"), 1);
  EXPECT_TRUE(ResultNow("web-002", t.id, Ok({{"n", 2}})).ok());
  Task done = Stored(t.id);
  EXPECT_EQ(done.state, TaskState::kSucceeded);
  EXPECT_EQ(done.deliveries[0].output["n"], 1);
  EXPECT_EQ(done.deliveries[1].output["n"], 2);
  auto listed = engine_->List(store::TaskQuery{kTenant});
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].deliveries[1].output["n"], 2);
}

// Deliveries pinned to an instance that no longer exists after a restart used to stay
// queued forever: the supervisor removed the instance before the engine had loaded its tasks.
TEST_F(EngineTest, DeliveriesPinnedToAnInstanceGoneAtLoadFailInEitherOrder) {
  for (bool fleet_first : {true, false}) {
    SCOPED_TRACE(fleet_first ? "fleet view, then Load" : "Load, then fleet view");
    Open();
    Deploy();
    Instance("web-001");
    Instance("web-002");
    Task broadcast = SubmitOk(Req({}, "", TaskMode::kBroadcast));
    Task pinned = SubmitOk(Req({}, "web-002"));
    EXPECT_EQ(Take("web-002"), broadcast.id);  // web-002 holds a lease, and has one queued

    Open(/*load=*/false);  // the daemon restarts; web-002 is gone
    auto fleet = [&] {
      Deploy();
      Instance("web-001");
      engine_->FleetViewComplete();
    };
    if (fleet_first) fleet();
    ASSERT_TRUE(engine_->Load().ok());
    if (!fleet_first) fleet();
    engine_->Flush();
    Task p = Stored(pinned.id);
    EXPECT_EQ(p.state, TaskState::kFailed);
    EXPECT_EQ(p.error, "instance web-002 was removed");
    EXPECT_EQ(Take("web-001"), broadcast.id);
    EXPECT_TRUE(ResultNow("web-001", broadcast.id, Ok()).ok());
    Task b = Stored(broadcast.id);
    EXPECT_EQ(b.state, TaskState::kFailed) << "finished, not waiting forever";
    EXPECT_EQ(b.deliveries[1].error, "instance web-002 was removed");
    EXPECT_EQ(engine_->Queue(kTenant, "web").queued, 0);
    EXPECT_EQ(engine_->Queue(kTenant, "web").assigned, 0);
  }
}

TEST_F(EngineTest, TasksOfADeploymentGoneAtLoadAreCancelled) {
  Deploy();
  Instance("web-001");
  Task t = SubmitOk(Req());
  Open(/*load=*/false);
  ASSERT_TRUE(engine_->Load().ok());
  engine_->FleetViewComplete();  // "web" is not in it
  engine_->Flush();
  EXPECT_EQ(Stored(t.id).state, TaskState::kCancelled);
  EXPECT_EQ(Stored(t.id).error, "deployment deleted");
}

// A 503 on submit does not mean nothing was created: the batch is kept and retried. The error
// says so, and a resubmit with the same idempotency key learns the task's fate.
TEST_F(EngineTest, ASubmitAnswered503IsCommittedLaterAndTheErrorSaysSo) {
  Deploy();
  Instance("web-001");
  model::TaskRequest r = Req();
  r.idempotency_key = "order-7";
  store_->fail_applies = 1;
  absl::Status st = SubmitErr(r);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorCode(st), "STORE_UNAVAILABLE");
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("task task-00000001 was accepted but is not yet durable"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("the write is retried"));
  EXPECT_THAT(ErrorHint(st), HasSubstr("resubmit with the same idempotency_key"));
  EXPECT_TRUE(engine_->HasPending()) << "kept for the retry";
  EXPECT_FALSE(store_->GetTask(kTenant, "task-00000001")->has_value());

  engine_->Flush();  // the retry (daemon::TaskDriver flushes again while HasPending)
  EXPECT_FALSE(engine_->HasPending());
  EXPECT_EQ(Stored("task-00000001").state, TaskState::kQueued) << "committed after all";
  auto again = Submit(r);
  engine_->Flush();
  ASSERT_TRUE(again->value.first.ok()) << again->value.first.status();
  EXPECT_FALSE(again->value.second) << "the same task, not a second one";
  EXPECT_EQ(again->value.first->id, "task-00000001");
}

}  // namespace
}  // namespace palm::tasks
