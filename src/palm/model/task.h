// Task: a unit of work routed to agents (DESIGN.md section 3, Task), and its wire mapping.
//
// A task is delivered through one or more Deliveries: a `route` task has exactly one, whose
// instance is chosen when it is assigned; a `broadcast` task has one per instance that was
// ready when it was submitted, each pinned to that instance. Deliveries carry their own
// state, attempts and lease; the task's state is derived from them (TaskStateOf).
//
// JSON (docs/api.md, Tasks). A route task shows its single delivery flattened onto the task
// (`instance`, `revision`, `attempts`, `output`, `error`, `lease_expires_at`) and no
// `deliveries`; a broadcast task lists `deliveries` and its own `output` is null.
// Thread-safe: values and pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "palm/model/objects.h"

namespace palm::model {

enum class TaskState { kQueued, kAssigned, kSucceeded, kFailed, kTimedOut, kCancelled };
std::string_view ToString(TaskState s);  // "Queued", "Assigned", ...
bool ParseTaskState(std::string_view s, TaskState* out);
// Succeeded, Failed, TimedOut or Cancelled.
bool IsTerminal(TaskState s);

enum class TaskMode { kRoute, kBroadcast };
std::string_view ToString(TaskMode m);  // "route" | "broadcast"
bool ParseTaskMode(std::string_view s, TaskMode* out);

inline constexpr int64_t kDefaultTaskTimeoutS = 60;
inline constexpr int64_t kMaxTaskTimeoutS = 86400;
inline constexpr int64_t kDefaultMaxAttempts = 3;
inline constexpr int64_t kMaxMaxAttempts = 100;
inline constexpr size_t kMaxIdempotencyKeyBytes = 256;

struct Delivery {
  std::string instance;        // pinned (broadcast, target=ID) or the assignee; "" while queued
  int64_t revision = 0;        // of the assignee; 0 while never assigned
  TaskState state = TaskState::kQueued;
  int64_t attempts = 0;        // leases granted so far; the current lease is attempt N
  Json output;                 // null until a result
  std::string error;           // last error (agent's, or "lease expired ...")
  std::optional<absl::Time> assigned_at;       // of the current/last attempt
  std::optional<absl::Time> lease_expires_at;  // set while Assigned
  std::optional<absl::Time> completed_at;
  std::optional<double> cost_usd;
};

struct Task {
  std::string tenant = std::string(kDefaultTenant);
  std::string id;              // "task-<seq>", seq zero-padded to 8 digits
  int64_t seq = 0;             // creation order, never reused
  std::string deployment;
  Json input;                  // any JSON value
  TaskMode mode = TaskMode::kRoute;
  std::string target;          // "" (weighted), "stable", "canary", "preview" or an instance id
  TaskState state = TaskState::kQueued;
  int64_t max_attempts = kDefaultMaxAttempts;
  int64_t timeout_s = kDefaultTaskTimeoutS;   // the lease
  std::string idempotency_key;
  std::vector<Delivery> deliveries;  // route: exactly one
  std::string error;           // route: the delivery's; broadcast: a summary
  absl::Time created_at;
  absl::Time updated_at;
  std::optional<absl::Time> completed_at;
};

// The task's state from its deliveries: Cancelled stays Cancelled; while any delivery is
// Queued or Assigned the task is Assigned if any is Assigned, else Queued; when all are
// terminal: Succeeded if all succeeded, else TimedOut if every failure timed out, else
// Failed.
TaskState TaskStateOf(const Task& t);

// What a client submits (POST /v1/tasks), validated.
struct TaskRequest {
  std::string deployment;
  Json input;                  // null when absent
  TaskMode mode = TaskMode::kRoute;
  std::string target;
  int64_t timeout_s = kDefaultTaskTimeoutS;
  int64_t max_attempts = kDefaultMaxAttempts;
  std::string idempotency_key;
};

// Strict: a JSON object with only {deployment, input, mode, target, timeout_s,
// max_attempts, idempotency_key}; deployment a valid name; mode route|broadcast; target ""
// or stable|canary|preview or a valid instance id (`<deployment>-<digits>`); timeout_s
// 1..86400; max_attempts 1..100; idempotency_key at most 256 bytes of printable ASCII.
// kInvalidArgument naming the field ("task.mode: must be \"route\" or \"broadcast\"").
absl::StatusOr<TaskRequest> TaskRequestFromJson(const Json& doc);

// A result an agent posts (POST /v1/agent/tasks/{id}/result), validated.
struct TaskResult {
  bool ok = false;
  Json output;                 // null when absent
  std::string error;
  std::optional<double> cost_usd;
  std::optional<int64_t> attempt;  // when given, must be the current attempt (else 409)
};
// Strict: {ok (required bool), output?, error? (string), cost_usd? (number >= 0),
// attempt? (integer >= 1)}. kInvalidArgument naming the field ("result.ok: ...").
absl::StatusOr<TaskResult> TaskResultFromJson(const Json& doc);

// The task as the API returns it (see the file comment). `latency_ms` is completed_at -
// created_at once terminal, else null.
Json ToJson(const Task& t);
// The stored form (everything, including per-delivery leases), and back. With
// `inline_deliveries` false (a broadcast: its deliveries are stored in rows of their own,
// store::DeliveryRow) the document has "deliveries": [] and "delivery_rows": N instead; the
// store puts the N rows back into "deliveries" when it reads the task.
Json ToStored(const Task& t, bool inline_deliveries = true);
// ToStored(t, inline_deliveries) as compact JSON text, written directly (no document tree:
// this runs for every task change on the group-commit path). Parsing it gives exactly
// ToStored(t, inline_deliveries). kInvalidArgument when a string in the task is not valid
// UTF-8.
absl::StatusOr<std::string> StoredText(const Task& t, bool inline_deliveries = true);
// One delivery's stored form (an element of ToStored(t)["deliveries"]) and as text.
Json ToStored(const Delivery& d);
absl::StatusOr<std::string> StoredDeliveryText(const Delivery& d);
// A broadcast task read back has as `updated_at` the latest of its own and its deliveries'
// assigned_at / completed_at (its own row is not rewritten for each delivery).
absl::StatusOr<Task> TaskFromStored(const Json& doc);
// What an agent receives from GET /v1/agent/tasks/next for delivery `d` of `t`:
// {id, deployment, input, mode, attempt, max_attempts, timeout_s, lease_expires_at,
//  created_at}.
Json AgentView(const Task& t, const Delivery& d);

// "task-00000042" for seq 42; ParseTaskId gives 42 back (false on anything else).
std::string TaskId(int64_t seq);
bool ParseTaskId(std::string_view id, int64_t* seq);

}  // namespace palm::model
