#include "palm/model/task.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palm/base/error.h"

namespace palm::model {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

absl::Time T(int64_t ms) { return absl::FromUnixMillis(1'800'000'000'000 + ms); }

Delivery Done(std::string instance, TaskState state) {
  Delivery d;
  d.instance = std::move(instance);
  d.revision = 2;
  d.state = state;
  d.attempts = 1;
  d.assigned_at = T(10);
  d.completed_at = T(20);
  return d;
}

Task RouteTask() {
  Task t;
  t.tenant = "acme";
  t.id = "task-00000042";
  t.seq = 42;
  t.deployment = "support";
  t.input = {{"question", "why?"}};
  t.target = "canary";
  t.state = TaskState::kSucceeded;
  t.max_attempts = 5;
  t.timeout_s = 30;
  t.idempotency_key = "req-1";
  Delivery d;
  d.instance = "support-002";
  d.revision = 1;
  d.state = TaskState::kSucceeded;
  d.attempts = 2;
  d.output = {{"answer", "because"}};
  d.assigned_at = T(3);
  d.completed_at = T(12);
  d.cost_usd = 0.0021;
  t.deliveries.push_back(d);
  t.created_at = T(0);
  t.updated_at = T(12);
  t.completed_at = T(12);
  return t;
}

Task BroadcastTask() {
  Task t;
  t.id = "task-00000007";
  t.seq = 7;
  t.deployment = "web";
  t.input = Json::array({1, 2});
  t.mode = TaskMode::kBroadcast;
  t.state = TaskState::kAssigned;
  t.error = "1 of 2 failed";
  Delivery a = Done("web-001", TaskState::kFailed);
  a.error = "boom";
  a.output = "partial";
  a.cost_usd = 1;
  Delivery b;
  b.instance = "web-002";
  b.revision = 3;
  b.state = TaskState::kAssigned;
  b.attempts = 1;
  b.assigned_at = T(5);
  b.lease_expires_at = T(65'005);
  t.deliveries = {a, b};
  t.created_at = T(1);
  t.updated_at = T(20);  // its last change: delivery a's result
  return t;
}

// ---- names and ids -------------------------------------------------------------------

TEST(TaskTest, StateAndModeNamesRoundTrip) {
  for (TaskState s : {TaskState::kQueued, TaskState::kAssigned, TaskState::kSucceeded,
                      TaskState::kFailed, TaskState::kTimedOut, TaskState::kCancelled}) {
    TaskState back = TaskState::kQueued;
    ASSERT_TRUE(ParseTaskState(ToString(s), &back)) << ToString(s);
    EXPECT_EQ(back, s);
  }
  EXPECT_EQ(ToString(TaskState::kTimedOut), "TimedOut");
  TaskState s;
  EXPECT_FALSE(ParseTaskState("queued", &s)) << "case matters, like instance states";
  EXPECT_FALSE(ParseTaskState("", &s));
  EXPECT_EQ(ToString(TaskMode::kRoute), "route");
  EXPECT_EQ(ToString(TaskMode::kBroadcast), "broadcast");
  TaskMode m = TaskMode::kRoute;
  ASSERT_TRUE(ParseTaskMode("broadcast", &m));
  EXPECT_EQ(m, TaskMode::kBroadcast);
  EXPECT_FALSE(ParseTaskMode("Route", &m));
}

TEST(TaskTest, TerminalStates) {
  EXPECT_FALSE(IsTerminal(TaskState::kQueued));
  EXPECT_FALSE(IsTerminal(TaskState::kAssigned));
  EXPECT_TRUE(IsTerminal(TaskState::kSucceeded));
  EXPECT_TRUE(IsTerminal(TaskState::kFailed));
  EXPECT_TRUE(IsTerminal(TaskState::kTimedOut));
  EXPECT_TRUE(IsTerminal(TaskState::kCancelled));
}

TEST(TaskTest, TaskIds) {
  EXPECT_EQ(TaskId(42), "task-00000042");
  EXPECT_EQ(TaskId(1), "task-00000001");
  EXPECT_EQ(TaskId(123456789), "task-123456789") << "more digits once past 8";
  for (int64_t seq :
       {int64_t{1}, int64_t{42}, int64_t{99'999'999}, int64_t{100'000'000}, INT64_MAX}) {
    int64_t back = 0;
    ASSERT_TRUE(ParseTaskId(TaskId(seq), &back)) << TaskId(seq);
    EXPECT_EQ(back, seq);
  }
  int64_t n = 7;
  for (const char* bad :
       {"", "task-", "task-42", "task-000000042", "task-0000004x", "Task-00000042", "task-00000000",
        "task--0000001", "task-+0000001", "00000042", "task-00000042 ", "task-99999999999999999999",
        "job-00000042"}) {
    EXPECT_FALSE(ParseTaskId(bad, &n)) << bad;
  }
  EXPECT_EQ(n, 7) << "left untouched on failure";
}

// ---- TaskStateOf ---------------------------------------------------------------------

TEST(TaskTest, StateOfFollowsTheDeliveries) {
  Task t = BroadcastTask();
  auto with = [&](std::vector<TaskState> states) {
    t.state = TaskState::kQueued;
    t.deliveries.clear();
    for (TaskState s : states) t.deliveries.push_back(Done("web-001", s));
    return TaskStateOf(t);
  };
  using S = TaskState;
  EXPECT_EQ(with({S::kQueued}), S::kQueued);
  EXPECT_EQ(with({S::kAssigned}), S::kAssigned);
  EXPECT_EQ(with({S::kQueued, S::kAssigned}), S::kAssigned);
  EXPECT_EQ(with({S::kQueued, S::kSucceeded}), S::kQueued) << "not finished while one waits";
  EXPECT_EQ(with({S::kFailed, S::kQueued}), S::kQueued);
  EXPECT_EQ(with({S::kSucceeded, S::kAssigned, S::kTimedOut}), S::kAssigned);
  EXPECT_EQ(with({S::kSucceeded}), S::kSucceeded);
  EXPECT_EQ(with({S::kSucceeded, S::kSucceeded}), S::kSucceeded);
  EXPECT_EQ(with({S::kFailed}), S::kFailed);
  EXPECT_EQ(with({S::kTimedOut}), S::kTimedOut);
  EXPECT_EQ(with({S::kSucceeded, S::kTimedOut}), S::kTimedOut)
      << "every failure was a lease expiry";
  EXPECT_EQ(with({S::kTimedOut, S::kTimedOut, S::kSucceeded}), S::kTimedOut);
  EXPECT_EQ(with({S::kTimedOut, S::kFailed}), S::kFailed);
  EXPECT_EQ(with({S::kSucceeded, S::kFailed}), S::kFailed);
  EXPECT_EQ(with({S::kSucceeded, S::kCancelled}), S::kFailed)
      << "a cancelled delivery is a failure that is not a timeout";
}

TEST(TaskTest, CancelledStaysCancelled) {
  Task t = RouteTask();
  t.state = TaskState::kCancelled;
  EXPECT_EQ(TaskStateOf(t), TaskState::kCancelled);
  t.deliveries[0].state = TaskState::kAssigned;
  EXPECT_EQ(TaskStateOf(t), TaskState::kCancelled);
  t.state = TaskState::kQueued;
  EXPECT_EQ(TaskStateOf(t), TaskState::kAssigned);
}

TEST(TaskTest, StateOfATaskWithoutDeliveriesIsItsOwn) {
  Task t;
  t.state = TaskState::kFailed;
  EXPECT_EQ(TaskStateOf(t), TaskState::kFailed);
}

// ---- API form ------------------------------------------------------------------------

TEST(TaskTest, RouteTaskJsonFlattensItsDelivery) {
  Json j = ToJson(RouteTask());
  const Json want = Json::parse(R"({
    "id": "task-00000042", "tenant": "acme", "deployment": "support", "mode": "route",
    "target": "canary", "input": {"question": "why?"}, "state": "Succeeded",
    "attempts": 2, "max_attempts": 5, "timeout_s": 30, "idempotency_key": "req-1",
    "instance": "support-002", "revision": 1, "output": {"answer": "because"}, "error": null,
    "lease_expires_at": null, "cost_usd": 0.0021, "latency_ms": 12,
    "created_at": "2027-01-15T08:00:00.000Z", "updated_at": "2027-01-15T08:00:00.012Z",
    "completed_at": "2027-01-15T08:00:00.012Z"})");
  EXPECT_EQ(j, want) << j.dump(2);
  EXPECT_FALSE(j.contains("deliveries"));
  EXPECT_FALSE(j.contains("seq"));
}

TEST(TaskTest, QueuedRouteTaskUsesNullsLikeTheDocs) {
  Task t;
  t.id = TaskId(1);
  t.seq = 1;
  t.deployment = "support";
  t.deliveries.emplace_back();
  t.created_at = t.updated_at = T(0);
  Json j = ToJson(t);
  const Json want = Json::parse(R"({
    "id": "task-00000001", "tenant": "default", "deployment": "support", "mode": "route",
    "target": null, "input": null, "state": "Queued",
    "attempts": 0, "max_attempts": 3, "timeout_s": 60, "idempotency_key": null,
    "instance": null, "revision": null, "output": null, "error": null,
    "lease_expires_at": null, "cost_usd": null, "latency_ms": null,
    "created_at": "2027-01-15T08:00:00.000Z", "updated_at": "2027-01-15T08:00:00.000Z",
    "completed_at": null})");
  EXPECT_EQ(j, want) << j.dump(2);
}

TEST(TaskTest, RouteTaskShowsTheLeaseAndTheErrorOfItsDelivery) {
  Task t = RouteTask();
  t.state = TaskState::kAssigned;
  t.completed_at.reset();
  t.deliveries[0].state = TaskState::kAssigned;
  t.deliveries[0].completed_at.reset();
  t.deliveries[0].lease_expires_at = T(30'003);
  t.deliveries[0].error = "lease expired after 30s";
  Json j = ToJson(t);
  EXPECT_EQ(j["lease_expires_at"], "2027-01-15T08:00:30.003Z");
  EXPECT_EQ(j["error"], "lease expired after 30s");
  EXPECT_TRUE(j["latency_ms"].is_null()) << "not finished";
  EXPECT_TRUE(j["completed_at"].is_null());
  t.error = "cancelled by admin";
  EXPECT_EQ(ToJson(t)["error"], "cancelled by admin") << "the task's own error wins";
}

TEST(TaskTest, LatencyKeepsFractionsOfAMillisecond) {
  Task t = RouteTask();
  t.created_at = absl::FromUnixMicros(1'000'000);
  t.completed_at = absl::FromUnixMicros(1'012'500);
  EXPECT_EQ(ToJson(t)["latency_ms"], 12.5);
  t.state = TaskState::kCancelled;
  EXPECT_EQ(ToJson(t)["latency_ms"], 12.5) << "cancelled is finished too";
}

TEST(TaskTest, BroadcastTaskJsonListsDeliveries) {
  Json j = ToJson(BroadcastTask());
  const Json want = Json::parse(R"({
    "id": "task-00000007", "tenant": "default", "deployment": "web", "mode": "broadcast",
    "target": null, "input": [1, 2], "state": "Assigned",
    "attempts": null, "max_attempts": 3, "timeout_s": 60, "idempotency_key": null,
    "instance": null, "revision": null, "output": null, "error": "1 of 2 failed",
    "lease_expires_at": null, "cost_usd": null, "latency_ms": null,
    "created_at": "2027-01-15T08:00:00.001Z", "updated_at": "2027-01-15T08:00:00.020Z",
    "completed_at": null,
    "deliveries": [
      {"instance": "web-001", "revision": 2, "state": "Failed", "attempts": 1,
       "output": "partial", "error": "boom", "lease_expires_at": null,
       "completed_at": "2027-01-15T08:00:00.020Z", "cost_usd": 1},
      {"instance": "web-002", "revision": 3, "state": "Assigned", "attempts": 1,
       "output": null, "error": null, "lease_expires_at": "2027-01-15T08:01:05.005Z",
       "completed_at": null, "cost_usd": null}]})");
  EXPECT_EQ(j, want) << j.dump(2);
}

TEST(TaskTest, AgentView) {
  Task t = RouteTask();
  Delivery& d = t.deliveries[0];
  d.lease_expires_at = T(30'000);
  Json j = AgentView(t, d);
  const Json want = Json::parse(R"({
    "id": "task-00000042", "deployment": "support", "mode": "route",
    "input": {"question": "why?"}, "attempt": 2, "max_attempts": 5, "timeout_s": 30,
    "lease_expires_at": "2027-01-15T08:00:30.000Z",
    "created_at": "2027-01-15T08:00:00.000Z"})");
  EXPECT_EQ(j, want) << j.dump(2);
}

// ---- stored form ---------------------------------------------------------------------

void ExpectSameTask(const Task& a, const Task& b) {
  EXPECT_EQ(ToStored(a), ToStored(b));
  EXPECT_EQ(a.tenant, b.tenant);
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.seq, b.seq);
  EXPECT_EQ(a.deployment, b.deployment);
  EXPECT_EQ(a.input, b.input);
  EXPECT_EQ(a.mode, b.mode);
  EXPECT_EQ(a.target, b.target);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.max_attempts, b.max_attempts);
  EXPECT_EQ(a.timeout_s, b.timeout_s);
  EXPECT_EQ(a.idempotency_key, b.idempotency_key);
  EXPECT_EQ(a.error, b.error);
  EXPECT_EQ(a.created_at, b.created_at);
  EXPECT_EQ(a.updated_at, b.updated_at);
  EXPECT_EQ(a.completed_at, b.completed_at);
  ASSERT_EQ(a.deliveries.size(), b.deliveries.size());
  for (size_t i = 0; i < a.deliveries.size(); ++i) {
    const Delivery& x = a.deliveries[i];
    const Delivery& y = b.deliveries[i];
    EXPECT_EQ(x.instance, y.instance);
    EXPECT_EQ(x.revision, y.revision);
    EXPECT_EQ(x.state, y.state);
    EXPECT_EQ(x.attempts, y.attempts);
    EXPECT_EQ(x.output, y.output);
    EXPECT_EQ(x.error, y.error);
    EXPECT_EQ(x.assigned_at, y.assigned_at);
    EXPECT_EQ(x.lease_expires_at, y.lease_expires_at);
    EXPECT_EQ(x.completed_at, y.completed_at);
    EXPECT_EQ(x.cost_usd, y.cost_usd);
  }
}

TEST(TaskTest, StoredFormRoundTrips) {
  for (const Task& t : {RouteTask(), BroadcastTask()}) {
    Json stored = ToStored(t);
    // Through text, as the store keeps it.
    absl::StatusOr<Task> back = TaskFromStored(Json::parse(stored.dump()));
    ASSERT_TRUE(back.ok()) << back.status();
    ExpectSameTask(t, *back);
  }
}

// A broadcast's deliveries in rows of their own: the task's document names how many, each
// delivery has its own text, and the store's assembly (deliveries back in order, no
// delivery_rows) reads as the same task.
TEST(TaskTest, SplitStoredFormRoundTripsThroughDeliveryRows) {
  const Task t = BroadcastTask();
  Json head = ToStored(t, /*inline_deliveries=*/false);
  EXPECT_EQ(head["delivery_rows"], 2);
  EXPECT_TRUE(head["deliveries"].empty());
  absl::StatusOr<std::string> text = StoredText(t, /*inline_deliveries=*/false);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, head.dump()) << "the same text as nlohmann writes";
  Json assembled = Json::parse(*text);
  assembled.erase("delivery_rows");
  for (const Delivery& d : t.deliveries) {
    absl::StatusOr<std::string> row = StoredDeliveryText(d);
    ASSERT_TRUE(row.ok()) << row.status();
    EXPECT_EQ(*row, ToStored(d).dump());
    assembled["deliveries"].push_back(Json::parse(*row));
  }
  absl::StatusOr<Task> back = TaskFromStored(assembled);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameTask(t, *back);
  // Its own row is not rewritten per delivery: updated_at comes back as the latest change.
  Task stale = t;
  stale.updated_at = T(1);
  Json doc = ToStored(stale);
  EXPECT_EQ(TaskFromStored(doc)->updated_at, T(20));
}

TEST(TaskTest, StoredTextIsExactlyTheStoredForm) {
  Task odd = RouteTask();
  odd.error = "quote \" backslash \\ newline \n tab \t bell \a nul-ish \x01 caf\xc3\xa9 \xe2\x82\xac";
  odd.deliveries[0].error = odd.error;
  odd.deliveries[0].output = {{"nested", {{"list", {1, 2.5, "x", nullptr, true}}}}};
  odd.deliveries[0].cost_usd = 0.1 + 0.2;
  odd.input = "just a string";
  Task fresh;
  fresh.id = TaskId(3);
  fresh.seq = 3;
  fresh.deployment = "d";
  fresh.deliveries.emplace_back();
  for (const Task& t : {RouteTask(), BroadcastTask(), odd, fresh}) {
    absl::StatusOr<std::string> text = StoredText(t);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(Json::parse(*text), ToStored(t)) << *text;
    EXPECT_EQ(*text, ToStored(t).dump()) << "the same text as nlohmann writes";
  }
  Task bad = RouteTask();
  bad.deliveries[0].error = "\xff\xfe not UTF-8";
  EXPECT_FALSE(StoredText(bad).ok());
  bad.deliveries[0].error = "truncated \xe2\x82";
  EXPECT_FALSE(StoredText(bad).ok());
}

TEST(TaskTest, StoredFormKeepsLeasesAndAssignmentTimes) {
  Task t = BroadcastTask();
  Json stored = ToStored(t);
  EXPECT_EQ(stored["seq"], 7);
  EXPECT_EQ(stored["deliveries"][1]["assigned_at"], "2027-01-15T08:00:00.005Z");
  EXPECT_EQ(stored["deliveries"][1]["lease_expires_at"], "2027-01-15T08:01:05.005Z");
  EXPECT_EQ(stored["deliveries"][0]["cost_usd"], 1);
}

TEST(TaskTest, StoredFormOfAFreshTaskRoundTrips) {
  Task t;
  t.id = TaskId(3);
  t.seq = 3;
  t.deployment = "d";
  t.deliveries.emplace_back();
  auto back = TaskFromStored(ToStored(t));
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameTask(t, *back);
  EXPECT_TRUE(back->input.is_null());
  EXPECT_FALSE(back->deliveries[0].cost_usd.has_value());
}

TEST(TaskTest, StoredFormIsReadStrictly) {
  struct Case {
    std::function<void(Json&)> edit;
    std::string want;
  };
  const Case cases[] = {
      {[](Json& j) { j["priority"] = 1; }, "stored task: task.priority: unknown field"},
      {[](Json& j) { j["deliverys"] = Json::array(); },
       "task.deliverys: unknown field; did you mean \"deliveries\"?"},
      {[](Json& j) { j.erase("id"); }, "task.id: required"},
      {[](Json& j) { j.erase("deployment"); }, "task.deployment: required"},
      {[](Json& j) { j["state"] = "Done"; }, "task.state: must be Queued, Assigned"},
      {[](Json& j) { j.erase("state"); }, "task.state: must be Queued"},
      {[](Json& j) { j["mode"] = "multicast"; }, "task.mode: must be \"route\" or \"broadcast\""},
      {[](Json& j) { j["seq"] = "42"; }, "task.seq: must be an integer"},
      {[](Json& j) { j["max_attempts"] = 0; }, "task.max_attempts: must be a positive integer"},
      {[](Json& j) { j["timeout_s"] = 86401; }, "task.timeout_s: must be at most 86400"},
      {[](Json& j) { j["created_at"] = "yesterday"; }, "task.created_at: must be an RFC 3339"},
      {[](Json& j) { j["deliveries"] = Json::object(); }, "task.deliveries: must be a list"},
      {[](Json& j) { j["deliveries"] = Json::array(); },
       "task.deliveries: a route task has exactly one delivery, got 0"},
      {[](Json& j) { j["deliveries"][0]["state"] = "Running"; },
       "task.deliveries[0].state: must be Queued"},
      {[](Json& j) { j["deliveries"][0]["lease"] = 1; }, "task.deliveries[0].lease: unknown field"},
      {[](Json& j) { j["deliveries"][0]["cost_usd"] = -1; },
       "task.deliveries[0].cost_usd: must not be negative"},
      {[](Json& j) { j["deliveries"][0]["attempts"] = -1; },
       "task.deliveries[0].attempts: must not be negative"},
      {[](Json& j) { j["deliveries"][0]["assigned_at"] = 5; },
       "task.deliveries[0].assigned_at: must be an RFC 3339"},
  };
  for (const Case& c : cases) {
    Json j = ToStored(RouteTask());
    c.edit(j);
    absl::StatusOr<Task> t = TaskFromStored(j);
    ASSERT_FALSE(t.ok()) << c.want;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(t.status().message()), HasSubstr(c.want));
    EXPECT_THAT(std::string(t.status().message()), StartsWith("stored task: task."));
  }
  Json b = ToStored(BroadcastTask());
  b["deliveries"] = Json::array();
  EXPECT_THAT(std::string(TaskFromStored(b).status().message()),
              HasSubstr("a broadcast task has at least one delivery"));
  EXPECT_FALSE(TaskFromStored(Json::array()).ok());
  EXPECT_FALSE(TaskFromStored(nullptr).ok());
}

// ---- request -------------------------------------------------------------------------

TEST(TaskTest, MinimalRequestGetsDefaults) {
  auto r = TaskRequestFromJson({{"deployment", "support"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->deployment, "support");
  EXPECT_TRUE(r->input.is_null());
  EXPECT_EQ(r->mode, TaskMode::kRoute);
  EXPECT_EQ(r->target, "");
  EXPECT_EQ(r->timeout_s, 60);
  EXPECT_EQ(r->max_attempts, 3);
  EXPECT_EQ(r->idempotency_key, "");
}

TEST(TaskTest, FullRequest) {
  auto r = TaskRequestFromJson(Json::parse(R"({
      "deployment": "support", "input": {"q": [1, {"x": null}]}, "mode": "broadcast",
      "target": "support-007", "timeout_s": 86400, "max_attempts": 100,
      "idempotency_key": "order 42 / retry #1 ~ok"})"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->input, Json::parse(R"({"q": [1, {"x": null}]})"));
  EXPECT_EQ(r->mode, TaskMode::kBroadcast);
  EXPECT_EQ(r->target, "support-007");
  EXPECT_EQ(r->timeout_s, 86400);
  EXPECT_EQ(r->max_attempts, 100);
  EXPECT_EQ(r->idempotency_key, "order 42 / retry #1 ~ok");
}

TEST(TaskTest, RequestAcceptsNullsAsAbsentAndAnyInput) {
  auto r = TaskRequestFromJson(Json::parse(
      R"({"deployment": "a", "mode": null, "target": null, "timeout_s": null,
          "idempotency_key": null, "input": null})"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->mode, TaskMode::kRoute);
  EXPECT_EQ(r->timeout_s, 60);
  for (Json input : {Json("text"), Json(3.5), Json(false), Json::array()}) {
    auto ok = TaskRequestFromJson({{"deployment", "a"}, {"input", input}});
    ASSERT_TRUE(ok.ok()) << input.dump();
    EXPECT_EQ(ok->input, input);
  }
  for (const char* target : {"", "stable", "canary", "preview", "a-1", "a-000123"}) {
    EXPECT_TRUE(TaskRequestFromJson({{"deployment", "a"}, {"target", target}}).ok()) << target;
  }
  EXPECT_TRUE(
      TaskRequestFromJson({{"deployment", "a"}, {"timeout_s", 1}, {"max_attempts", 1}}).ok());
  EXPECT_TRUE(TaskRequestFromJson({{"deployment", "a"}, {"timeout_s", 30.0}}).ok())
      << "an integral float is an integer";
  EXPECT_TRUE(
      TaskRequestFromJson({{"deployment", "a"}, {"idempotency_key", std::string(256, 'k')}}).ok());
}

TEST(TaskTest, BadRequestsNameTheField) {
  struct Case {
    Json doc;
    std::string want;
    std::string hint = "";
  };
  const Json deployment = {{"deployment", "support"}};
  auto with = [&](const char* key, Json value) {
    Json j = deployment;
    j[key] = std::move(value);
    return j;
  };
  const Case cases[] = {
      {Json::object(), "task.deployment: required (the deployment to run the task"},
      {Json::array(), "task: must be an object, got a list"},
      {Json("support"), "task: must be an object"},
      {{{"deployment", 5}}, "task.deployment: must be a string, got 5"},
      {{{"deployment", "Support"}}, "task.deployment: \"Support\" contains 'S'"},
      {{{"deployment", ""}}, "task.deployment: \"\" is empty"},
      {with("mode", "multicast"),
       "task.mode: must be \"route\" or \"broadcast\", got string \"multicast\""},
      {with("mode", "Broadcast"),
       "task.mode: must be \"route\" or \"broadcast\", got string \"Broadcast\"; did you mean "
       "\"broadcast\"?"},
      {with("mode", "rout"), "did you mean \"route\"?"},
      {with("mode", 1), "task.mode: must be \"route\" or \"broadcast\", got 1"},
      {with("target", "stabel"),
       "task.target: must be \"stable\", \"canary\", \"preview\" or "
       "an instance of deployment \"support\" (\"support-<n>\"), got "
       "string \"stabel\"; did you mean \"stable\"?",
       "instance ids"},
      {with("target", "Canary"), "did you mean \"canary\"?"},
      {with("target", "other-001"), "task.target: must be \"stable\""},
      {with("target", "support-"), "task.target: must be"},
      {with("target", "support-01a"), "task.target: must be"},
      {with("target", "support"), "task.target: must be"},
      {with("target", 7), "task.target: must be a string, got 7"},
      {with("timeout_s", 0), "task.timeout_s: must be a positive integer, got 0"},
      {with("timeout_s", 86401), "task.timeout_s: must be at most 86400, got 86401"},
      {with("timeout_s", 1.5), "task.timeout_s: must be an integer, got 1.5"},
      {with("timeout_s", "60"), "task.timeout_s: must be an integer, got string \"60\""},
      {with("max_attempts", 0), "task.max_attempts: must be a positive integer, got 0"},
      {with("max_attempts", 101), "task.max_attempts: must be at most 100, got 101"},
      {with("max_attempts", -3), "task.max_attempts: must be a positive integer"},
      {with("idempotency_key", 12), "task.idempotency_key: must be a string, got 12"},
      {with("idempotency_key", std::string(257, 'k')),
       "task.idempotency_key: is 257 bytes long (max 256)"},
      {with("idempotency_key", "a\nb"),
       "task.idempotency_key: contains the byte 0x0a: only printable ASCII is allowed"},
      {with("idempotency_key", "caf\xc3\xa9"), "task.idempotency_key: contains the byte 0xc3"},
      {with("timeout", 5), "task.timeout: unknown field; did you mean \"timeout_s\"?",
       "known fields: deployment, input"},
      {with("max_attempt", 5), "task.max_attempt: unknown field; did you mean \"max_attempts\"?"},
      {with("Input", 5), "task.Input: unknown field; did you mean \"input\"?"},
      {with("priority", 5), "task.priority: unknown field"},
      {with("id", "task-00000001"), "task.id: unknown field"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<TaskRequest> r = TaskRequestFromJson(c.doc);
    ASSERT_FALSE(r.ok()) << c.doc.dump();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.doc.dump();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.want)) << c.doc.dump();
    EXPECT_THAT(std::string(r.status().message()), StartsWith("task")) << c.doc.dump();
    if (!c.hint.empty()) {
      EXPECT_THAT(ErrorHint(r.status()), HasSubstr(c.hint));
    }
  }
}

// ---- result --------------------------------------------------------------------------

TEST(TaskTest, Results) {
  auto ok = TaskResultFromJson({{"ok", true}});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(ok->ok);
  EXPECT_TRUE(ok->output.is_null());
  EXPECT_EQ(ok->error, "");
  EXPECT_FALSE(ok->cost_usd.has_value());
  EXPECT_FALSE(ok->attempt.has_value());

  auto full = TaskResultFromJson(Json::parse(
      R"({"ok": false, "output": [1, "two"], "error": "model refused", "cost_usd": 0.5,
          "attempt": 3})"));
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_FALSE(full->ok);
  EXPECT_EQ(full->output, Json::parse(R"([1, "two"])"));
  EXPECT_EQ(full->error, "model refused");
  EXPECT_EQ(full->cost_usd, 0.5);
  EXPECT_EQ(full->attempt, 3);

  auto zero = TaskResultFromJson({{"ok", true}, {"cost_usd", 0}, {"output", "plain"}});
  ASSERT_TRUE(zero.ok()) << zero.status();
  EXPECT_EQ(zero->cost_usd, 0.0);
  EXPECT_EQ(zero->output, "plain");
  auto nulls = TaskResultFromJson(
      Json::parse(R"({"ok": true, "error": null, "cost_usd": null, "attempt": null})"));
  ASSERT_TRUE(nulls.ok()) << nulls.status();
  EXPECT_FALSE(nulls->attempt.has_value());
}

TEST(TaskTest, BadResultsNameTheField) {
  struct Case {
    Json doc;
    std::string want;
  };
  const Case cases[] = {
      {Json::object(), "result.ok: required (true when the task succeeded"},
      {{{"ok", nullptr}}, "result.ok: required"},
      {{{"output", 1}}, "result.ok: required"},
      {{{"ok", "true"}}, "result.ok: must be true or false, got string \"true\""},
      {{{"ok", 1}}, "result.ok: must be true or false, got 1"},
      {{{"ok", true}, {"error", 5}}, "result.error: must be a string, got 5"},
      {{{"ok", true}, {"cost_usd", -0.01}}, "result.cost_usd: must not be negative, got -0.01"},
      {{{"ok", true}, {"cost_usd", "1"}}, "result.cost_usd: must be a number, got string"},
      {{{"ok", true}, {"attempt", 0}}, "result.attempt: must be a positive integer, got 0"},
      {{{"ok", true}, {"attempt", 1.5}}, "result.attempt: must be an integer"},
      {{{"ok", true}, {"attempts", 1}},
       "result.attempts: unknown field; did you mean \"attempt\"?"},
      {{{"ok", true}, {"cost_us", 1}}, "result.cost_us: unknown field; did you mean \"cost_usd\"?"},
      {{{"ok", true}, {"outputs", 1}}, "result.outputs: unknown field; did you mean \"output\"?"},
      {{{"ok", true}, {"result", 1}}, "result.result: unknown field"},
      {Json::array(), "result: must be an object"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<TaskResult> r = TaskResultFromJson(c.doc);
    ASSERT_FALSE(r.ok()) << c.doc.dump();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.want)) << c.doc.dump();
  }
}

}  // namespace
}  // namespace palm::model
