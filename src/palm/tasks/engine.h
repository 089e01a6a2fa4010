// TaskEngine: palm's task queue and router (DESIGN.md section 3, Task; docs/api.md, Tasks).
//
// It owns every Queued and Assigned task, the agents' long polls, the leases and the
// per-revision metrics. The supervisor tells it which instances exist and which are
// routable (Running, ready, not draining, not killed) through the fleet-view calls; the API
// calls the client and agent calls.
//
// Durability (group commit): every change is added to one pending WriteBatch; answers that
// acknowledge something (Submit, Complete, Cancel, and the task handed out by Next) are
// held until Flush() has committed that batch, then their callbacks run. The daemon posts
// one Flush() per event-loop turn (see SetFlushRequest), so concurrent requests share one
// fsync. If the commit fails the batch is KEPT (store/committer.h's rule): the changes stay
// applied in the engine and the next Flush retries all of them, so the held callbacks get
// kUnavailable (STORE_UNAVAILABLE) saying the change is not yet durable and being retried,
// which is true: a submit answered so is queued and committed later (resubmitting with the
// same idempotency_key finds it), a result so answered is recorded. The owner must call Flush
// again while HasPending() (daemon::TaskDriver retries every second).
//
// Routing of a `route` delivery: a revision is chosen by weight (smooth weighted
// round-robin over the weights of SetDeployment; no weights = the stable revision gets
// everything), or by the target (stable/canary/preview revision, or one instance). Among the
// routable instances of that revision that are waiting in a long poll the one with the
// fewest deliveries in flight gets it at once; when none waits it is queued and the next
// eligible poll takes it (FIFO). A queued delivery bound to a revision that has no routable
// instance left may be taken by any routable instance. A `broadcast` task gets one delivery
// pinned to each routable instance at submit time (none routable: kFailedPrecondition,
// NO_READY_INSTANCES).
//
// Leases: Next grants a lease of the task's timeout_s. When it expires, or the instance
// exits (InstanceLost), the delivery goes back to the queue (front, keeping its place) with
// the next attempt; after max_attempts it is TimedOut (lease expiries) with the last error.
// An agent's ok:false result fails the delivery at once (no retry): the agent answered.
// A result for a delivery that is not Assigned to that instance at that attempt is
// kAborted (LEASE_NOT_HELD, 409); a second result for a finished delivery is kAborted
// (TASK_ALREADY_FINISHED, 409) and changes nothing.
//
// Bounds: at most max_queued_per_deployment queued deliveries per deployment (beyond:
// kResourceExhausted RATE_LIMITED, 429), input at most max_input_bytes serialized and a
// result's output at most max_output_bytes (beyond: kInvalidArgument with payload code
// PAYLOAD_TOO_LARGE, 413, nothing changed); a result's error is cut to max_error_bytes (at a
// character boundary, with a note of its full size). Finished tasks stay in the
// store (at most `retention`, oldest pruned by PruneRetention) and the newest
// `finished_cache` in memory.
//
// Events: LeaseExpired (warning) per expired lease; TaskFailed / TaskTimedOut (warning) when
// a task ends badly; nothing per successful task (that is what metrics are for).
//
// Time: Clock::Now() for records; Clock::MonotonicNow() for leases, polls and metrics.
// Timers: the owner arms one timer for NextDeadline() and calls Tick() when it fires.
// Thread-safety: none; the daemon's event loop only. Callbacks run inside Flush() or
// Tick() or the fleet-view calls, never re-entrantly inside the call that registered them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "palm/base/clock.h"
#include "palm/events/event_log.h"
#include "palm/model/task.h"
#include "palm/store/store.h"
#include "palm/tasks/metrics.h"

namespace palm::tasks {

struct EngineOptions {
  size_t max_queued_per_deployment = 10000;
  size_t max_input_bytes = 256 * 1024;
  size_t max_output_bytes = 256 * 1024;  // a result's output, serialized
  size_t max_error_bytes = 8 * 1024;     // a result's error is cut to this
  size_t finished_cache = 10000;    // finished tasks kept in memory for Get/Await
  int64_t retention = 100000;       // finished tasks kept in the store
  absl::Duration max_poll_wait = absl::Seconds(60);   // cap on Next's and Await's wait
};

// Which revision plays which part in routing (set by the supervisor; rollouts set canary,
// preview and weights).
struct RoutingTable {
  int64_t stable_revision = 1;
  std::optional<int64_t> canary_revision;
  std::optional<int64_t> preview_revision;  // gets only target=preview tasks
  std::map<int64_t, int> weights;           // revision -> weight; empty = stable 100
};

// Counts for a deployment's status.
struct QueueStats {
  int64_t queued = 0;
  int64_t assigned = 0;     // deliveries in flight
  int64_t waiting_agents = 0;
};

using TaskCallback = std::function<void(absl::StatusOr<model::Task>)>;
// Next: a task for the agent (model::AgentView form), or nullopt when the wait ended empty.
using NextCallback = std::function<void(absl::StatusOr<std::optional<model::Json>>)>;
// Complete: the task's state once the result is durable (Succeeded, Failed, or still
// Assigned/Queued for a broadcast with deliveries left), or why the result was refused.
using ResultCallback = std::function<void(absl::StatusOr<model::TaskState>)>;

class TaskEngine {
 public:
  TaskEngine(store::Store& store, const Clock& clock, EngineOptions options = {},
             events::EventLog* events = nullptr);
  ~TaskEngine();
  TaskEngine(const TaskEngine&) = delete;
  TaskEngine& operator=(const TaskEngine&) = delete;

  // Reloads Queued and Assigned tasks from the store (leases keep their stored expiry, in
  // wall time, so an agent that outlived the daemon can still post its result). Call once,
  // after the supervisor has loaded (so the fleet view is known), before serving.
  absl::Status Load();
  // The supervisor has pushed every deployment and instance it has (the end of its Load).
  // Once this and Load() have both happened, in either order, what the loaded tasks name but
  // the fleet view does not is gone: a delivery pinned to a missing instance fails ("instance
  // <id> was removed"), leases held by one end, tasks of a missing deployment are cancelled.
  void FleetViewComplete();

  // Called (at most once per batch) when a change is pending and Flush() should run soon.
  void SetFlushRequest(std::function<void()> request);
  // Called when NextDeadline() may have moved earlier.
  void SetDeadlineChanged(std::function<void()> changed);
  // Called when an instance's in-flight count drops to zero (a draining instance may stop).
  void SetIdleCallback(std::function<void(const std::string& tenant, const std::string& id)> cb);

  // ---- Fleet view (from the supervisor) ------------------------------------------------
  void SetDeployment(const std::string& tenant, const std::string& name, RoutingTable routing);
  // The deployment is gone: its Queued and Assigned tasks become Cancelled ("deployment
  // deleted"), its polls end empty.
  void RemoveDeployment(const std::string& tenant, const std::string& name);
  // Creates or updates an instance. When it stops being routable its pending polls end
  // empty (Next answers 204) and it gets nothing new; its leases stay until they finish or
  // expire (draining). Becoming routable lets it take queued work at its next poll.
  void SetInstance(const std::string& tenant, const std::string& deployment,
                   const std::string& id, int64_t revision, bool routable);
  // The process exited (it may be restarted under the same id): its leases return to the
  // queue now with the next attempt (or end TimedOut after max_attempts).
  void InstanceLost(const std::string& tenant, const std::string& id, const std::string& reason);
  // The instance is gone for good: as InstanceLost, and deliveries pinned to it fail
  // ("instance <id> was removed").
  void RemoveInstance(const std::string& tenant, const std::string& id);
  // Deliveries in flight on the instance (leases held).
  int64_t InFlight(const std::string& tenant, const std::string& id) const;

  // ---- Clients -------------------------------------------------------------------------
  // Validated request (model::TaskRequestFromJson). Errors before anything changes:
  // DEPLOYMENT_NOT_FOUND (404) when SetDeployment never named it, bad target (400) when
  // the target instance is not in the deployment or canary/preview has no revision,
  // PAYLOAD_TOO_LARGE, RATE_LIMITED, NO_READY_INSTANCES. With an idempotency key already
  // used in the deployment: the existing task, *created false (no change).
  // `done` runs after the task is durable, with `created` telling which case it was.
  void Submit(const std::string& tenant, model::TaskRequest req,
              std::function<void(absl::StatusOr<model::Task>, bool created)> done);
  // kNotFound TASK_NOT_FOUND.
  absl::StatusOr<model::Task> Get(const std::string& tenant, const std::string& id);
  // Answers when the task is terminal or after `wait` (with its state then).
  void Await(const std::string& tenant, const std::string& id, absl::Duration wait,
             TaskCallback done);
  // Lists from the store (durable state), `q.tenant` set by the caller.
  absl::StatusOr<std::vector<model::Task>> List(const store::TaskQuery& q);
  // Cancels a Queued or Assigned task (a held lease is revoked: the agent's result gets
  // 409). kAborted TASK_ALREADY_FINISHED (409) when already terminal.
  void Cancel(const std::string& tenant, const std::string& id, TaskCallback done);

  // ---- Agents --------------------------------------------------------------------------
  // Long poll of instance `id`: a delivery now if one is eligible, else waits up to `wait`
  // (capped at max_poll_wait) for one. Not routable (draining, not ready, unknown): answers
  // empty at once. Returns the id of the waiting poll (0 when it was answered at once).
  uint64_t Next(const std::string& tenant, const std::string& id, absl::Duration wait,
                NextCallback done);
  // The agent behind a waiting poll went away (its connection closed): the poll is dropped
  // unanswered, so no task is leased to it. Unknown ids are ignored.
  void CancelPoll(uint64_t poll);
  // The result of task `task_id` from instance `id` (see the file comment for 409s).
  // kNotFound TASK_NOT_FOUND.
  void Complete(const std::string& tenant, const std::string& id, const std::string& task_id,
                model::TaskResult result, ResultCallback done);

  // ---- Commit and timers ---------------------------------------------------------------
  // Commits the pending batch, publishes its events, then runs the callbacks it held.
  void Flush();
  bool HasPending() const;
  // The earliest lease expiry or poll/await timeout (monotonic), InfiniteFuture if none.
  absl::Time NextDeadline() const;
  // Expires leases and ends polls/awaits whose time has come (clock.MonotonicNow()).
  void Tick();
  // Deletes the oldest finished tasks beyond options.retention from the store.
  absl::Status PruneRetention();

  // ---- Metrics (for deployment status, canary analysis, the autoscaler) ----------------
  WindowStats RevisionStats(const std::string& tenant, const std::string& deployment,
                            int64_t revision, absl::Duration window) const;
  QueueStats Queue(const std::string& tenant, const std::string& deployment) const;
  // For `status.tasks` of a deployment: {"queued", "assigned", "waiting_agents",
  // "revisions": {"<rev>": {"window_60s": WindowStats, "window_300s": ..., "totals": ...}}}
  model::Json DeploymentTasks(const std::string& tenant, const std::string& deployment) const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace palm::tasks
