// Supervisor: the single owner of palm's live state for specs, deployments and instances,
// and the deployment reconciler that drives processes toward that state.
//
// API handlers call the query and mutation methods; a mutation that returns OK is durable in
// the store (an acknowledged write survives kill -9). Durability rule (store/committer.h): a
// batch whose commit fails is kept and retried with the next commit; the mutation then
// answers kUnavailable STORE_UNAVAILABLE saying its change is applied but not yet durable
// and being retried, which is true: memory keeps the change and the store gets all of it or
// none. No process is spawned or signalled for a change before it is durable (spawns and stop
// signals run after the commit that records them). The runtime reports exits
// through OnExit(). Reconcile(key) is one level-triggered step for one deployment: it
// starts missing replicas, restarts crashed ones whose backoff has passed, stops surplus
// and old-revision replicas, and escalates overdue stops to SIGKILL. It returns the time it
// wants to run again; a Runner (runner.h) owns timers and calls it. Tests call it directly
// with a FakeClock and a FakeRuntime.
//
// Thread-safety: none. Everything runs on the daemon's event-loop thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "palm/base/clock.h"
#include "palm/controller/port_allocator.h"
#include "palm/controller/rollout.h"
#include "palm/events/event_log.h"
#include "palm/health/health_manager.h"
#include "palm/model/objects.h"
#include "palm/runtime/runtime.h"
#include "palm/store/committer.h"
#include "palm/store/store.h"
#include "palm/tasks/engine.h"

namespace palm::controller {

struct DeploymentKey {
  std::string tenant;
  std::string name;
  auto operator<=>(const DeploymentKey&) const = default;
};

struct SupervisorOptions {
  std::string data_dir;                         // logs go to <data_dir>/logs
  std::string endpoint;                         // PALM_ENDPOINT given to agents
  std::map<std::string, std::string> base_env;  // inherited environment (PATH, HOME, ...)
  // A command that cannot be started is retried no faster than this, whatever the
  // restart policy says, so a typo never spins the daemon.
  absl::Duration min_spawn_failure_delay = absl::Seconds(1);
};

struct HeartbeatIn {
  std::string status = "ok";  // ok | degraded
  std::string reason;
  model::Json metrics = model::Json::object();
  std::optional<double> cost_usd;
};

struct HeartbeatOut {
  bool drain = false;
  bool killed = false;
  int64_t policy_version = 0;
};

// "healthy" | "degraded" | "unhealthy" | "unknown": the key health counts are kept under.
std::string HealthKey(model::HealthStatus h);

// Sum, mean and count per agent metric over a deployment's running instances (the numbers
// agents report in heartbeats).
class MetricAggregate {
 public:
  void Add(const model::Json& metrics);
  // {"name": {"sum": s, "mean": m, "count": n}, ...}
  model::Json ToJson() const;

 private:
  struct Sum {
    double sum = 0;
    int64_t count = 0;
  };
  std::map<std::string, Sum> sums_;
};

class Supervisor {
 public:
  // `events` (may be null) receives an event for every lifecycle change, written in the
  // same transaction as the change.
  Supervisor(store::Store& store, runtime::Runtime& runtime, const Clock& clock,
             PortAllocator& ports, SupervisorOptions options, events::EventLog* events = nullptr);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Loads everything from the store and re-adopts live agents (pid + start time must
  // match); instances that died while the daemon was down are handled as exits with an
  // unknown status. Marks every deployment for reconciliation. Call once, first.
  absl::Status Load();

  // Called with a deployment key whenever it needs a Reconcile soon.
  void SetDirtyCallback(std::function<void(const DeploymentKey&)> cb);

  // ---- Specs ---------------------------------------------------------------------------
  // Registers `spec` (already validated). *created is false when the same name@version
  // with the same body exists (a no-op). kAlreadyExists (SPEC_VERSION_EXISTS) when that
  // version exists with another body.
  absl::StatusOr<model::AgentSpec> RegisterSpec(model::AgentSpec spec, bool* created);
  std::vector<const model::AgentSpec*> ListSpecs(const std::string& tenant) const;
  // `version` "" means the highest semver. kNotFound (SPEC_NOT_FOUND).
  absl::StatusOr<const model::AgentSpec*> GetSpec(const std::string& tenant,
                                                  const std::string& name,
                                                  const std::string& version) const;
  absl::StatusOr<model::AgentSpec> DeprecateSpec(const std::string& tenant,
                                                 const std::string& name,
                                                 const std::string& version);

  // ---- Deployments ---------------------------------------------------------------------
  // Creates `d` (validated). kAlreadyExists (DEPLOYMENT_EXISTS), kNotFound (SPEC_NOT_FOUND),
  // kFailedPrecondition (SPEC_DEPRECATED).
  absl::StatusOr<model::Deployment> CreateDeployment(model::Deployment d);
  // Creates or updates to `d`. A change of spec, config or env makes a new revision whose
  // instances replace the old ones. *created tells which happened.
  absl::StatusOr<model::Deployment> ApplyDeployment(model::Deployment d, bool* created);
  absl::StatusOr<model::Deployment> ScaleDeployment(const DeploymentKey& key, int64_t replicas);
  // Removes the deployment at once; its instances are stopped (stop signal, grace, SIGKILL)
  // and removed as they exit.
  absl::StatusOr<model::Deployment> DeleteDeployment(const DeploymentKey& key);
  std::vector<const model::Deployment*> ListDeployments(const std::string& tenant) const;
  absl::StatusOr<const model::Deployment*> GetDeployment(const DeploymentKey& key) const;
  // The `status` object of docs/api.md (phase, replicas, revisions, states, conditions).
  model::Json DeploymentStatus(const model::Deployment& d) const;

  // ---- Instances -----------------------------------------------------------------------
  // Instances of `tenant`, optionally of one deployment and in one state, by id.
  std::vector<const model::Instance*> ListInstances(
      const std::string& tenant, const std::string& deployment,
      std::optional<model::InstanceState> state) const;
  absl::StatusOr<const model::Instance*> GetInstance(const std::string& tenant,
                                                     const std::string& id) const;
  // Stops the process (stop signal, grace, SIGKILL) and starts it again at once.
  absl::Status RestartInstance(const std::string& tenant, const std::string& id);
  // `palm instance drain`: the instance gets no new tasks (state Draining, heartbeats
  // answer drain: true); once its tasks in flight are done it is stopped and removed. It no
  // longer counts as a replica, so the deployment starts a replacement at once.
  absl::Status DrainInstance(const std::string& tenant, const std::string& id);

  // ---- Tasks -----------------------------------------------------------------------------
  // The task engine told about every instance's routability, exits and removals, and asked
  // how many tasks an instance has in flight before it is stopped (stops drain first, at
  // most stop.grace_s). May stay null (tests of the process lifecycle alone). Set before
  // Load(). Its idle callback must be routed to OnInstanceIdle.
  void SetTaskEngine(tasks::TaskEngine* tasks);
  void OnInstanceIdle(const std::string& tenant, const std::string& id);
  // `palm deployment drain`: every instance drains and stops once idle (no deadline but
  // the leases); nothing is started until ResumeDeployment. Tasks stay queued.
  absl::StatusOr<model::Deployment> DrainDeployment(const DeploymentKey& key);
  // ---- Rollouts (docs/api.md "Rollouts") --------------------------------------------------
  // Each answers 409 (see rollout.h) when it does not apply in the current phase.
  absl::StatusOr<model::Deployment> PauseRollout(const DeploymentKey& key);
  // Ends a drain when drained; otherwise resumes the rollout (ResumeRollout in rollout.h).
  absl::StatusOr<model::Deployment> ResumeDeployment(const DeploymentKey& key);
  absl::StatusOr<model::Deployment> PromoteRollout(const DeploymentKey& key, bool full);
  absl::StatusOr<model::Deployment> AbortRollout(const DeploymentKey& key);
  // Back to revision `to` (default: the stable one during a rollout, else the revision
  // deployed before the current one). kNotFound REVISION_NOT_FOUND (never existed or
  // pruned), kFailedPrecondition ALREADY_AT_REVISION / NO_PREVIOUS_REVISION.
  absl::StatusOr<model::Deployment> UndoRollout(const DeploymentKey& key,
                                                std::optional<int64_t> to);
  // A new revision with the same template: every instance is replaced with the strategy.
  absl::StatusOr<model::Deployment> RestartRollout(const DeploymentKey& key);
  // The deployment's revisions, oldest first.
  absl::StatusOr<std::vector<model::Revision>> History(const DeploymentKey& key) const;

  // `palm fleet deploy N "TASK"`: records last_deployed_task / last_deployed_at.
  absl::StatusOr<model::Deployment> RecordFleetTask(const DeploymentKey& key,
                                                    const std::string& task);

  // ---- Health ----------------------------------------------------------------------------
  // Probes run by `health` (may stay null: no probing, instances are ready once running).
  // Its on_change must be routed to OnHealthReport.
  void SetHealthManager(health::HealthManager* health);
  // A probe verdict flipped: updates ready/health, records events and, when liveness (or
  // startup) failed, restarts the instance with the restart policy's backoff.
  void OnHealthReport(const health::HealthReport& report);
  // Runs the instance's probes now (`palm health check`); `done` gets one result per
  // configured probe (none when the spec has none). kNotFound, kFailedPrecondition when
  // the instance is not running.
  absl::Status CheckInstance(const std::string& tenant, const std::string& id,
                             std::function<void(std::vector<health::ProbeCheck>)> done);
  // Probe activity: {"tracked": instances probed, "count", "p50_ms", "p99_ms", "max_ms"}.
  model::Json ProbeStats() const;
  // Per-probe state of an instance (see HealthManager::Describe); {} without probes.
  model::Json DescribeProbes(const std::string& tenant, const std::string& id) const;

  // ---- Agents --------------------------------------------------------------------------
  // The instance (tenant, id) a bearer token belongs to, if any.
  std::optional<std::pair<std::string, std::string>> InstanceForToken(
      const std::string& token) const;
  // Records a heartbeat (soft state: kept in memory, flushed by FlushSoftState).
  absl::StatusOr<HeartbeatOut> Heartbeat(const std::string& tenant, const std::string& id,
                                         const HeartbeatIn& in);
  // Persists heartbeat data recorded since the last flush.
  absl::Status FlushSoftState();

  // ---- Reconciliation ------------------------------------------------------------------
  // One step for one deployment (see the file comment). Returns when to run again
  // (absl::InfiniteFuture() when only a change needs it).
  absl::StatusOr<absl::Time> Reconcile(const DeploymentKey& key);
  // Every key with instances or a deployment: what a full resync reconciles.
  std::vector<DeploymentKey> AllKeys() const;
  // Runtime exit notification (the runtime's instance key is "<tenant>/<id>").
  void OnExit(const std::string& runtime_key, runtime::ExitStatus status);

  // `palm daemon stop --all`: stops every agent and keeps them stopped; they are started
  // again when the daemon next starts. AgentsRunning() tells when all are gone.
  void StopAllAgents();
  size_t AgentsRunning() const;
  // Leaves agents running and stops watching them (daemon exit).
  void Detach();

  // Counts for /v1/status and metrics.
  size_t InstanceCount() const { return instances_.size(); }

 private:
  struct Live;  // an instance plus supervisor-only bookkeeping
  using InstanceMap = std::map<std::string, std::unique_ptr<Live>>;  // by "<tenant>/<id>"

  static std::string RuntimeKey(const std::string& tenant, const std::string& id);
  Live* FindLive(const std::string& tenant, const std::string& id) const;
  std::vector<Live*> InstancesOf(const DeploymentKey& key) const;
  model::Deployment* FindDeployment(const DeploymentKey& key);
  const model::AgentSpec* FindSpec(const std::string& tenant, const std::string& ref) const;
  absl::Status CheckSpecUsable(const model::Deployment& d) const;

  void MarkDirty(const DeploymentKey& key);
  void Persist(Live& live);
  // Tells the task engine when the instance's routability changed.
  void SyncRoute(Live& live);
  void SyncDeployment(const model::Deployment& d);
  // ---- Revisions and rollouts (supervisor_rollout.cc) ----
  // Records a new revision of d's template (d.revision = ++d.latest_revision).
  void NewRevision(model::Deployment& d, const std::string& cause);
  // Copies revision `rev`'s template (spec, config, env) into `d`.
  void CopyTemplate(model::Deployment& d, int64_t rev) const;
  // `d` with the template of revision `rev`: what an instance of that revision runs.
  model::Deployment TemplateFor(const model::Deployment& d, int64_t rev) const;
  // Events and history outcomes the planner or a verb decided, into the pending batch.
  void RecordEffects(const model::Deployment& d, const RolloutEffects& fx);
  // Saves `d` after a rollout verb changed it, with `fx`, durably.
  absl::StatusOr<model::Deployment> SaveRollout(model::Deployment d, const RolloutEffects& fx);
  // Drops revisions beyond revision_history_limit (never one in use).
  void PruneRevisions(const model::Deployment& d);
  // What each revision of the deployment has (for the planner and status).
  RolloutView Observe(const DeploymentKey& key, const model::Deployment& d,
                      absl::Time now) const;
  // Plans the rollout step and persists what it changed; returns the plan.
  RolloutPlan PlanStep(model::Deployment& d, absl::Time now);
  // Sizes each revision to its target: surplus instances drain and stop, missing ones
  // are created (Pending). Returns whether anything changed.
  bool ScaleRevisions(model::Deployment& d, const std::map<int64_t, int64_t>& targets);
  // One plan-scale-start pass of Reconcile; true when it changed something. Lowers *next
  // to the times it must run again (planner wake-ups, backoff ends).
  absl::StatusOr<bool> ReconcilePass(model::Deployment& d, absl::Time now, absl::Time* next);
  // Saves `d` (already changed in place by the caller) with an event, durably.
  absl::StatusOr<model::Deployment> SaveDeployment(model::Deployment d, const char* kind,
                                                   const std::string& message);
  void Erase(const std::string& runtime_key);
  // Commits the pending batch (kept and retried on failure, see the file comment), then
  // sends the stop signals that batch recorded.
  absl::Status Commit();
  // Commit() for an API mutation: its error says `what` is kept and retried.
  absl::Status CommitMutation(std::string_view what);
  void SendRecordedStops();
  void Emit(const char* severity, const char* kind, const char* object_type,
            const std::string& name, const std::string& deployment, const std::string& tenant,
            const std::string& message, const char* actor);
  void EmitFor(const Live& live, const char* severity, const char* kind,
               const std::string& message);

  size_t RecoverUnrecordedStarts(const std::vector<Live*>& unrecorded);
  Live& NewInstance(model::Deployment& d, int64_t revision);
  // Whether instances of `revision` are still wanted (the current revision, or a target of
  // the last plan): one that exits is restarted, not removed.
  bool Wanted(const DeploymentKey& key, int64_t revision) const;
  void TrackHealth(Live& live, const model::Deployment& d);
  void DeriveHealth(Live& live);
  void PrepareStart(Live& live);
  void StartInstance(Live& live, const model::Deployment& d);
  // Stops an instance: first it drains (no new tasks; the stop signal waits for its tasks
  // in flight, at most `max_drain`, default its stop.grace_s), then SendStop.
  void BeginStop(Live& live, bool remove, bool restart_after,
                 std::optional<absl::Duration> max_drain = std::nullopt);
  // The stop signal now, SIGKILL after the grace period (Reconcile watches the deadline).
  void SendStop(Live& live);
  // Draining instances whose tasks are done (or whose drain deadline passed) get their
  // stop signal; returns when to look again.
  absl::Time FinishDrains(const std::vector<Live*>& lives, absl::Time now);
  void HandleExit(Live& live, const model::ExitInfo& exit);
  void EnterBackOff(Live& live, const model::Deployment& d, absl::Duration delay);
  absl::StatusOr<runtime::SpawnRequest> BuildSpawn(Live& live, const model::Deployment& d);
  std::string LogPath(const model::Instance& inst) const;
  // Instances of a deleted deployment: each drains and stops, and is removed once gone.
  void ReconcileOrphans(const DeploymentKey& key);
  // The earliest SIGKILL deadline of a stop whose signal went out, or drain deadline.
  absl::Time StopDeadlines(const DeploymentKey& key) const;

  store::Store& store_;
  runtime::Runtime& runtime_;
  const Clock& clock_;
  PortAllocator& ports_;
  SupervisorOptions options_;
  events::EventLog* events_;
  health::HealthManager* health_ = nullptr;
  tasks::TaskEngine* tasks_ = nullptr;
  std::function<void(const DeploymentKey&)> on_dirty_;

  // tenant -> name -> version -> spec
  std::map<std::string, std::map<std::string, std::map<std::string, model::AgentSpec>>> specs_;
  std::map<DeploymentKey, model::Deployment> deployments_;
  std::map<DeploymentKey, std::map<int64_t, model::Revision>> revisions_;
  std::map<DeploymentKey, std::map<int64_t, int64_t>> targets_;  // the last plan's sizes
  std::map<DeploymentKey, tasks::RoutingTable> routing_;         // the last plan's routing
  InstanceMap instances_;
  std::map<std::string, std::string> token_to_instance_;  // token hash -> runtime key
  std::set<std::string> heartbeat_dirty_;                 // runtime keys
  // The latest probe failure per deployment ({instance, probe, message, at}), shown in
  // status while the deployment is not available (what `--wait` reports on timeout).
  std::map<DeploymentKey, model::Json> last_probe_failure_;
  store::Committer committer_;
  store::WriteBatch& pending_;  // committer_.pending()
  // Stop signals recorded (state Stopping) in the pending batch: sent once it is durable.
  struct RecordedStop {
    std::string runtime_key;
    int signal;
    absl::Duration grace;
  };
  std::vector<RecordedStop> recorded_stops_;
  bool stopping_all_ = false;
};

}  // namespace palm::controller
