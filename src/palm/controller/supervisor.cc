#include "palm/controller/supervisor.h"

#include <signal.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "palm/base/crypto.h"
#include "palm/base/error.h"
#include "palm/base/log.h"
#include "palm/base/semver.h"
#include "palm/base/utf8.h"
#include "palm/controller/policy.h"
#include "palm/controller/supervisor_live.h"
#include "palm/controller/template.h"
#include "palm/model/codec.h"

namespace palm::controller {

using model::Deployment;
using model::ExitInfo;
using model::Instance;
using model::InstanceState;
using model::Json;

namespace {

bool HasProcess(const Instance& in) {
  return in.pid > 0 && (in.state == InstanceState::kStarting ||
                        in.state == InstanceState::kRunning ||
                        in.state == InstanceState::kDraining ||
                        in.state == InstanceState::kStopping);
}

std::string DescribeExit(const ExitInfo& e) {
  if (e.code) return absl::StrCat("exited with code ", *e.code);
  if (e.signal) return absl::StrCat("killed by ", model::SignalName(*e.signal));
  // Adopted processes are not our children: their exit status cannot be collected.
  return "exited (status unknown: adopted process, or gone while the daemon was down)";
}

ExitInfo ToExitInfo(const runtime::ExitStatus& s, absl::Time at) {
  ExitInfo e;
  e.code = s.code;
  e.signal = s.signal;
  e.at = at;
  return e;
}

// The Kubernetes-style Progressing condition of a deployment with a rollout history.
Json ProgressingCondition(const Deployment& d) {
  const model::RolloutState& st = d.rollout;
  if (st.phase.empty()) return nullptr;
  std::string reason;
  bool status = true;
  if (st.aborted) {
    reason = "RolloutAborted";
    status = false;
  } else if (st.phase == "Failed") {
    reason = "ProgressDeadlineExceeded";
    status = false;
  } else if (st.phase == "Paused") {
    reason = "RolloutPaused";
  } else if (st.phase == "RollingBack") {
    reason = "RolledBack";
  } else if (st.phase == "Complete") {
    reason = "NewRevisionAvailable";
  } else {
    reason = "RevisionUpdating";
  }
  return {{"type", "Progressing"}, {"status", status}, {"reason", reason},
          {"message", st.message}};
}

}  // namespace

Supervisor::Supervisor(store::Store& store, runtime::Runtime& runtime, const Clock& clock,
                       PortAllocator& ports, SupervisorOptions options,
                       events::EventLog* events)
    : store_(store), runtime_(runtime), clock_(clock), ports_(ports),
      options_(std::move(options)), events_(events),
      committer_(store, "supervisor",
                 {[events](store::WriteBatch* b) {
                    if (events) events->Seal(b);
                  },
                  [events](const store::WriteBatch& b) {
                    if (events) events->Publish(b);
                  }}),
      pending_(committer_.pending()) {}

Supervisor::~Supervisor() = default;

std::string Supervisor::RuntimeKey(const std::string& tenant, const std::string& id) {
  return absl::StrCat(tenant, "/", id);
}

void Supervisor::SetDirtyCallback(std::function<void(const DeploymentKey&)> cb) {
  on_dirty_ = std::move(cb);
}

void Supervisor::MarkDirty(const DeploymentKey& key) {
  if (on_dirty_) on_dirty_(key);
}

// ---- Loading --------------------------------------------------------------------------

absl::Status Supervisor::Load() {
  PALM_ASSIGN_OR_RETURN(auto spec_rows, store_.ListSpecs());
  for (auto& row : spec_rows) {
    auto spec = model::SpecFromStored(row.doc);
    if (!spec.ok()) return Annotate(spec.status(), absl::StrCat("stored spec ", row.name));
    spec->deprecated = row.deprecated;
    specs_[spec->tenant][spec->name][spec->version] = std::move(*spec);
  }
  PALM_ASSIGN_OR_RETURN(auto rev_rows, store_.ListRevisions());
  for (auto& row : rev_rows) {
    auto r = model::RevisionFromStored(row.doc);
    if (!r.ok()) return Annotate(r.status(), absl::StrCat("stored revision of ", row.deployment));
    revisions_[{r->tenant, r->deployment}][r->number] = std::move(*r);
  }
  PALM_ASSIGN_OR_RETURN(auto dep_rows, store_.ListDeployments());
  for (auto& row : dep_rows) {
    auto d = model::DeploymentFromStored(row.doc);
    if (!d.ok()) return Annotate(d.status(), absl::StrCat("stored deployment ", row.name));
    auto& revs = revisions_[{d->tenant, d->name}];
    if (!revs.count(d->revision)) {
      // Stored before revisions were kept: its template is its only known revision.
      int64_t latest = d->latest_revision;
      d->latest_revision = d->revision - 1;
      NewRevision(*d, "recorded when the daemon started");
      d->latest_revision = std::max(latest, d->revision);
    }
    SyncDeployment(*d);
    deployments_[{d->tenant, d->name}] = std::move(*d);
  }
  PALM_ASSIGN_OR_RETURN(auto inst_rows, store_.ListInstances());
  absl::Time now = clock_.Now();
  size_t adopted = 0, lost = 0;
  std::vector<Live*> unrecorded;  // recorded as Starting, pid never recorded
  for (auto& row : inst_rows) {
    auto in = model::InstanceFromStored(row.doc);
    if (!in.ok()) return Annotate(in.status(), absl::StrCat("stored instance ", row.id));
    auto live = std::make_unique<Live>();
    live->inst = std::move(*in);
    std::string key = RuntimeKey(live->inst.tenant, live->inst.id);
    Live& l = *live;
    instances_[key] = std::move(live);
    for (auto& [name, port] : l.inst.ports) ports_.Reserve(port);
    if (!l.inst.token_hash.empty()) token_to_instance_[l.inst.token_hash] = key;
    if (!deployments_.count(l.key())) l.removing = true;
    if (!HasProcess(l.inst)) {
      if (l.inst.state == InstanceState::kStarting) unrecorded.push_back(&l);
      continue;
    }
    absl::Status st = runtime_.Adopt(
        key, {l.inst.pid, l.inst.proc_start_time, l.inst.proc_boot_id}, l.inst.log_path);
    if (st.ok()) {
      ++adopted;
      EmitFor(l, "info", "InstanceAdopted", absl::StrCat("(pid ", l.inst.pid, ") adopted"));
      if (const Deployment* d = FindDeployment(l.key()); d && !l.removing) {
        TrackHealth(l, TemplateFor(*d, l.inst.revision));
      }
      if (l.inst.state == InstanceState::kStopping ||
          l.inst.state == InstanceState::kDraining) {
        // A stop (or drain) was under way when the daemon died: finish it with a fresh
        // grace period.
        l.inst.state = InstanceState::kRunning;
        BeginStop(l, /*remove=*/true, /*restart_after=*/false);
      }
      continue;
    }
    ++lost;
    EmitFor(l, "warning", "InstanceLost",
            absl::StrCat("(pid ", l.inst.pid, ") is gone since the daemon last ran"));
    HandleExit(l, ExitInfo{std::nullopt, std::nullopt, now});
  }
  adopted += RecoverUnrecordedStarts(unrecorded);
  for (auto& [k, live] : instances_) SyncRoute(*live);
  // Every deployment and instance is known to the engine now: what its tasks name beyond
  // them (an instance removed above or while the daemon was down) is gone for good.
  if (tasks_) tasks_->FleetViewComplete();
  PALM_RETURN_IF_ERROR(Commit());
  PALM_LOG(kInfo, "loaded ", deployments_.size(), " deployments, ", instances_.size(),
           " instances (", adopted, " adopted, ", lost, " gone)");
  for (const auto& key : AllKeys()) MarkDirty(key);
  return absl::OkStatus();
}

size_t Supervisor::RecoverUnrecordedStarts(const std::vector<Live*>& unrecorded) {
  if (unrecorded.empty()) return 0;
  // The daemon died between phase 1 (Starting + token hash recorded) and phase 2 (pid
  // recorded) of a start: the process may exist. It carries PALM_INSTANCE_ID and a token
  // whose hash was recorded, which identifies it beyond doubt.
  std::map<std::string, runtime::FoundProcess> by_key;
  for (auto& p : runtime_.FindByEnvKey("PALM_INSTANCE_ID")) {
    auto tenant = p.env.find("PALM_TENANT");
    auto token = p.env.find("PALM_TOKEN");
    if (tenant == p.env.end() || token == p.env.end()) continue;
    std::string key = RuntimeKey(tenant->second, p.env["PALM_INSTANCE_ID"]);
    auto it = instances_.find(key);
    if (it == instances_.end() || it->second->inst.token_hash != Sha256Hex(token->second)) {
      continue;
    }
    by_key.emplace(key, std::move(p));
  }
  size_t found = 0;
  for (Live* l : unrecorded) {
    Instance& in = l->inst;
    std::string key = RuntimeKey(in.tenant, in.id);
    auto it = by_key.find(key);
    if (it != by_key.end() && runtime_.Adopt(key, it->second.pid, in.log_path).ok()) {
      in.pid = it->second.pid.pid;
      in.proc_start_time = it->second.pid.start_time;
      in.proc_boot_id = it->second.pid.boot_id;
      in.state = InstanceState::kRunning;
      in.started_at = clock_.Now();
      if (const Deployment* d = FindDeployment(l->key())) {
        TrackHealth(*l, TemplateFor(*d, in.revision));
      }
      in.last_error.clear();
      ++found;
      EmitFor(*l, "info", "InstanceAdopted",
              absl::StrCat("(pid ", in.pid, ") was started before the daemon stopped; adopted"));
    } else {
      in.state = InstanceState::kPending;  // never started: start it now
    }
    Persist(*l);
  }
  return found;
}

// ---- Persistence ----------------------------------------------------------------------

void Supervisor::Persist(Live& live) {
  pending_.put_instances.push_back(
      {live.inst.tenant, live.inst.id, live.inst.deployment, model::ToJson(live.inst, true)});
  SyncRoute(live);
}

void Supervisor::SyncRoute(Live& live) {
  if (!tasks_) return;
  const Instance& in = live.inst;
  const Deployment* d = FindDeployment(live.key());
  bool routable = in.state == InstanceState::kRunning && in.ready && !live.removing && d &&
                  !d->drained;
  if (live.routed == static_cast<int>(routable)) return;
  live.routed = routable;
  tasks_->SetInstance(in.tenant, in.deployment, in.id, in.revision, routable);
}

void Supervisor::SyncDeployment(const Deployment& d) {
  if (!tasks_) return;
  // The routing the last rollout plan chose; the next Reconcile plans again.
  auto it = routing_.find({d.tenant, d.name});
  tasks::RoutingTable routing;
  routing.stable_revision = d.stable_revision;
  tasks_->SetDeployment(d.tenant, d.name, it != routing_.end() ? it->second : routing);
}

void Supervisor::Erase(const std::string& runtime_key) {
  auto it = instances_.find(runtime_key);
  if (it == instances_.end()) return;
  const Instance& in = it->second->inst;
  for (auto& [name, port] : in.ports) ports_.Release(port);
  if (!in.token_hash.empty()) token_to_instance_.erase(in.token_hash);
  heartbeat_dirty_.erase(runtime_key);
  if (health_) health_->Untrack(runtime_key);
  if (tasks_) tasks_->RemoveInstance(in.tenant, in.id);
  pending_.DeleteInstance(in.tenant, in.id);  // also drops puts of it kept from a failed commit
  instances_.erase(it);
}

absl::Status Supervisor::Commit() {
  // A later put of the same row supersedes an earlier one; the store applies in order. A
  // failed batch stays pending (the Committer's rule) and so do the stops it recorded.
  PALM_RETURN_IF_ERROR(committer_.Commit());
  SendRecordedStops();
  return absl::OkStatus();
}

absl::Status Supervisor::CommitMutation(std::string_view what) {
  absl::Status st = Commit();
  if (st.ok()) return st;
  return store::NotYetDurable(st, what);
}

void Supervisor::SendRecordedStops() {
  std::vector<RecordedStop> stops = std::exchange(recorded_stops_, {});
  for (const RecordedStop& stop : stops) {
    auto it = instances_.find(stop.runtime_key);
    // Gone, or exited (or otherwise moved on) before its stop became durable: nothing to send.
    if (it == instances_.end() || it->second->inst.state != InstanceState::kStopping) continue;
    Live& live = *it->second;
    // The grace period runs from the signal, which is sent now.
    live.stop_deadline = clock_.Now() + stop.grace;
    absl::Status st = runtime_.Signal(stop.runtime_key, stop.signal);
    if (!st.ok()) {
      EmitFor(live, "warning", "StopSignalFailed",
              absl::StrCat("could not be sent ", model::SignalName(stop.signal), ": ",
                           st.message()));
    }
  }
}

void Supervisor::Emit(const char* severity, const char* kind, const char* object_type,
                      const std::string& name, const std::string& deployment,
                      const std::string& tenant, const std::string& message,
                      const char* actor) {
  LogLine(std::string(severity) == "error"
              ? LogLevel::kError
              : (std::string(severity) == "warning" ? LogLevel::kWarning : LogLevel::kInfo),
          message);
  if (!events_) return;
  events::Event e;
  e.severity = severity;
  e.kind = kind;
  e.object_type = object_type;
  e.object_name = name;
  e.deployment = deployment;
  e.tenant = tenant;
  e.message = message;
  e.actor_kind = actor;
  e.actor_id = std::string(actor) == "user" ? "admin" : "palmd";
  events_->Append(e, clock_.Now(), &pending_);
}

void Supervisor::EmitFor(const Live& live, const char* severity, const char* kind,
                         const std::string& message) {
  Emit(severity, kind, "instance", live.inst.id, live.inst.deployment, live.inst.tenant,
       absl::StrCat("instance ", live.inst.id, " ", message), "system");
}

// ---- Specs ------------------------------------------------------------------------------

absl::StatusOr<model::AgentSpec> Supervisor::RegisterSpec(model::AgentSpec spec,
                                                          bool* created) {
  auto& versions = specs_[spec.tenant][spec.name];
  if (auto it = versions.find(spec.version); it != versions.end()) {
    if (model::SpecBody(it->second) == model::SpecBody(spec)) {
      *created = false;
      return it->second;
    }
    return Conflict("SPEC_VERSION_EXISTS",
                    absl::StrCat("spec ", spec.name, "@", spec.version,
                                 " is already registered with a different body; "
                                 "a registered version is immutable"),
                    "bump `version` (e.g. a new patch version) and register again");
  }
  absl::Time now = clock_.Now();
  spec.created_at = spec.updated_at = now;
  spec.deprecated = false;
  pending_.put_specs.push_back(
      {spec.tenant, spec.name, spec.version, model::ToJson(spec), false});
  Emit("info", "SpecRegistered", "spec", absl::StrCat(spec.name, "@", spec.version), "",
       spec.tenant, absl::StrCat("spec ", spec.name, "@", spec.version, " registered"), "user");
  *created = true;
  const std::string what = absl::StrCat("registering spec ", spec.name, "@", spec.version);
  model::AgentSpec& stored = versions[spec.version] = std::move(spec);
  PALM_RETURN_IF_ERROR(CommitMutation(what));
  return stored;
}

std::vector<const model::AgentSpec*> Supervisor::ListSpecs(const std::string& tenant) const {
  std::vector<const model::AgentSpec*> out;
  auto t = specs_.find(tenant);
  if (t == specs_.end()) return out;
  for (const auto& [name, versions] : t->second) {
    for (const auto& [v, spec] : versions) out.push_back(&spec);
  }
  std::stable_sort(out.begin(), out.end(), [](const auto* a, const auto* b) {
    return a->created_at < b->created_at;
  });
  return out;
}

absl::StatusOr<const model::AgentSpec*> Supervisor::GetSpec(const std::string& tenant,
                                                           const std::string& name,
                                                           const std::string& version) const {
  auto not_found = [&] {
    return NotFound("SPEC_NOT_FOUND",
                    absl::StrCat("spec ", name, version.empty() ? "" : "@", version,
                                 " is not registered"),
                    "register it with `palm spec register -f FILE`; `palm spec list` shows "
                    "what is registered");
  };
  auto t = specs_.find(tenant);
  if (t == specs_.end()) return not_found();
  auto n = t->second.find(name);
  if (n == t->second.end() || n->second.empty()) return not_found();
  if (version.empty()) {
    const model::AgentSpec* best = nullptr;
    for (const auto& [v, spec] : n->second) {
      if (!best || CompareSemver(spec.version, best->version) > 0) best = &spec;
    }
    return best;
  }
  auto v = n->second.find(version);
  if (v == n->second.end()) return not_found();
  return &v->second;
}

absl::StatusOr<model::AgentSpec> Supervisor::DeprecateSpec(const std::string& tenant,
                                                          const std::string& name,
                                                          const std::string& version) {
  PALM_ASSIGN_OR_RETURN(const model::AgentSpec* found, GetSpec(tenant, name, version));
  model::AgentSpec spec = *found;
  if (spec.deprecated) return spec;
  spec.deprecated = true;
  spec.updated_at = clock_.Now();
  pending_.put_specs.push_back({spec.tenant, spec.name, spec.version, model::ToJson(spec), true});
  Emit("info", "SpecDeprecated", "spec", absl::StrCat(spec.name, "@", spec.version), "",
       spec.tenant, absl::StrCat("spec ", spec.name, "@", spec.version, " deprecated"), "user");
  specs_[tenant][name][spec.version] = spec;
  PALM_RETURN_IF_ERROR(
      CommitMutation(absl::StrCat("deprecating spec ", spec.name, "@", spec.version)));
  return spec;
}

const model::AgentSpec* Supervisor::FindSpec(const std::string& tenant,
                                             const std::string& ref) const {
  std::string name, version;
  if (!model::ParseSpecRef(ref, /*allow_bare=*/false, &name, &version).ok()) return nullptr;
  auto spec = GetSpec(tenant, name, version);
  return spec.ok() ? *spec : nullptr;
}

// ---- Deployments ----------------------------------------------------------------------

absl::Status Supervisor::CheckSpecUsable(const Deployment& d) const {
  std::string name, version;
  PALM_RETURN_IF_ERROR(model::ParseSpecRef(d.spec, false, &name, &version));
  PALM_ASSIGN_OR_RETURN(const model::AgentSpec* spec, GetSpec(d.tenant, name, version));
  if (spec->deprecated) {
    return Error(absl::StatusCode::kFailedPrecondition, "SPEC_DEPRECATED",
                 absl::StrCat("spec ", d.spec, " is deprecated; new deployments cannot use it"),
                 absl::StrCat("deploy a newer version (`palm spec list` shows them)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Deployment> Supervisor::CreateDeployment(Deployment d) {
  DeploymentKey key{d.tenant, d.name};
  if (deployments_.count(key)) {
    return Conflict("DEPLOYMENT_EXISTS", absl::StrCat("deployment ", d.name, " already exists"),
                    "change it with `palm deployment apply -f FILE` or `palm deployment scale`, "
                    "or pick another --name");
  }
  bool created = false;
  return ApplyDeployment(std::move(d), &created);
}

absl::StatusOr<Deployment> Supervisor::ApplyDeployment(Deployment d, bool* created) {
  DeploymentKey key{d.tenant, d.name};
  absl::Time now = clock_.Now();
  auto it = deployments_.find(key);
  *created = it == deployments_.end();
  RolloutEffects fx;
  if (*created) {
    PALM_RETURN_IF_ERROR(CheckSpecUsable(d));
    d.created_at = d.updated_at = now;
    d.next_instance_seq = 1;
    d.latest_revision = 0;
    NewRevision(d, "created");
    d.stable_revision = d.revision;
    // The first rollout: Complete once every replica is available.
    d.rollout = {};
    d.rollout.phase = "Progressing";
    d.rollout.to_revision = d.revision;
    d.rollout.started_at = now;
    d.rollout.replicas = d.replicas;
    fx.outcomes.push_back({d.revision, "Progressing", "created"});
  } else {
    const Deployment& old = it->second;
    std::vector<std::string> changes;
    if (old.spec != d.spec) changes.push_back(absl::StrCat("spec ", old.spec, " -> ", d.spec));
    if (old.config != d.config) changes.push_back("config changed");
    if (old.env != d.env) changes.push_back("env changed");
    if (old.spec != d.spec) PALM_RETURN_IF_ERROR(CheckSpecUsable(d));
    d.created_at = old.created_at;
    d.updated_at = now;
    d.revision = old.revision;
    d.latest_revision = old.latest_revision;
    d.stable_revision = old.stable_revision;
    d.rollout = old.rollout;
    d.next_instance_seq = old.next_instance_seq;
    d.drained = old.drained;
    d.last_deployed_task = old.last_deployed_task;
    d.last_deployed_at = old.last_deployed_at;
    if (!changes.empty()) {
      std::string cause = absl::StrJoin(changes, ", ");
      NewRevision(d, cause);
      fx = StartRollout(d, now, cause);
    }
  }
  RecordEffects(d, fx);
  PruneRevisions(d);
  pending_.put_deployments.push_back({d.tenant, d.name, model::ToJson(d)});
  std::string what = absl::StrCat("deployment ", d.name, *created ? " created" : " updated",
                                  " (spec ", d.spec, ", revision ", d.revision, ", replicas ",
                                  d.replicas, ")");
  Emit("info", *created ? "DeploymentCreated" : "DeploymentUpdated", "deployment", d.name,
       d.name, d.tenant, what, "user");
  // Memory first: under the Committer's rule the change is kept even if this commit fails,
  // and the reconciler acts on it (starting nothing before its records are durable).
  SyncDeployment(d);
  deployments_[key] = d;
  MarkDirty(key);
  PALM_RETURN_IF_ERROR(CommitMutation(what));
  return d;
}

absl::StatusOr<Deployment> Supervisor::SaveDeployment(Deployment d, const char* kind,
                                                      const std::string& message) {
  DeploymentKey key{d.tenant, d.name};
  d.updated_at = clock_.Now();
  pending_.put_deployments.push_back({d.tenant, d.name, model::ToJson(d)});
  if (kind) Emit("info", kind, "deployment", d.name, d.name, d.tenant, message, "user");
  deployments_[key] = d;
  SyncDeployment(d);
  // Draining or resuming changes every instance's routability.
  for (Live* live : InstancesOf(key)) SyncRoute(*live);
  MarkDirty(key);
  PALM_RETURN_IF_ERROR(CommitMutation(
      message.empty() ? absl::StrCat("the change to deployment ", key.name) : message));
  return d;
}

absl::StatusOr<Deployment> Supervisor::ScaleDeployment(const DeploymentKey& key,
                                                      int64_t replicas) {
  PALM_ASSIGN_OR_RETURN(const Deployment* found, GetDeployment(key));
  Deployment d = *found;
  int64_t from = d.replicas;
  d.replicas = replicas;
  const char* kind = replicas == from ? nullptr : (replicas > from ? "ScaledUp" : "ScaledDown");
  return SaveDeployment(std::move(d), kind,
                        absl::StrCat("deployment ", key.name, " scaled from ", from, " to ",
                                     replicas));
}

absl::StatusOr<Deployment> Supervisor::DrainDeployment(const DeploymentKey& key) {
  PALM_ASSIGN_OR_RETURN(const Deployment* found, GetDeployment(key));
  if (found->drained) return *found;
  Deployment d = *found;
  d.drained = true;
  return SaveDeployment(std::move(d), "DeploymentDraining",
                        absl::StrCat("deployment ", key.name,
                                     " draining: instances finish their tasks and stop; "
                                     "`palm deployment resume` starts them again"));
}

absl::StatusOr<Deployment> Supervisor::RecordFleetTask(const DeploymentKey& key,
                                                      const std::string& task) {
  PALM_ASSIGN_OR_RETURN(const Deployment* found, GetDeployment(key));
  Deployment d = *found;
  d.last_deployed_task = task;
  d.last_deployed_at = clock_.Now();
  return SaveDeployment(std::move(d), "FleetTaskDeployed",
                        absl::StrCat("fleet ", key.name, ": task recorded for `palm fleet run`"));
}

absl::StatusOr<Deployment> Supervisor::DeleteDeployment(const DeploymentKey& key) {
  PALM_ASSIGN_OR_RETURN(const Deployment* found, GetDeployment(key));
  Deployment d = *found;
  pending_.DeleteDeployment(key.tenant, key.name);
  Emit("info", "DeploymentDeleted", "deployment", key.name, key.name, key.tenant,
       absl::StrCat("deployment ", key.name, " deleted; stopping its instances"), "user");
  deployments_.erase(key);
  revisions_.erase(key);
  targets_.erase(key);
  routing_.erase(key);
  if (tasks_) tasks_->RemoveDeployment(key.tenant, key.name);
  for (Live* live : InstancesOf(key)) live->removing = true;
  MarkDirty(key);
  PALM_RETURN_IF_ERROR(CommitMutation(absl::StrCat("deleting deployment ", key.name)));
  return d;
}

std::vector<const Deployment*> Supervisor::ListDeployments(const std::string& tenant) const {
  std::vector<const Deployment*> out;
  for (const auto& [key, d] : deployments_) {
    if (key.tenant == tenant) out.push_back(&d);
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const auto* a, const auto* b) { return a->created_at < b->created_at; });
  return out;
}

absl::StatusOr<const Deployment*> Supervisor::GetDeployment(const DeploymentKey& key) const {
  auto it = deployments_.find(key);
  if (it == deployments_.end()) {
    return NotFound("DEPLOYMENT_NOT_FOUND",
                    absl::StrCat("deployment ", key.name, " not found"),
                    "`palm deployment list` shows the deployments");
  }
  return &it->second;
}

model::Deployment* Supervisor::FindDeployment(const DeploymentKey& key) {
  auto it = deployments_.find(key);
  return it == deployments_.end() ? nullptr : &it->second;
}

Json Supervisor::DeploymentStatus(const Deployment& d) const {
  int64_t current = 0, updated = 0, ready = 0, running = 0, restarts = 0, failing = 0;
  std::map<std::string, int64_t> by_state;
  std::map<std::string, int64_t> health = {
      {"healthy", 0}, {"degraded", 0}, {"unhealthy", 0}, {"unknown", 0}};
  MetricAggregate metrics;
  for (const Live* live : InstancesOf({d.tenant, d.name})) {
    const Instance& in = live->inst;
    ++by_state[std::string(model::ToString(in.state))];
    restarts += in.restarts;
    if (live->removing) continue;
    ++current;
    ++health[HealthKey(in.health)];
    if (in.state == InstanceState::kRunning) metrics.Add(in.metrics);
    if (in.revision == d.revision) ++updated;
    if (in.state == InstanceState::kRunning) ++running;
    if (in.state == InstanceState::kRunning && in.ready) ++ready;
    if (in.state == InstanceState::kBackOff || in.state == InstanceState::kFailed) ++failing;
  }
  DeploymentKey key{d.tenant, d.name};
  RolloutView view = Observe(key, d, clock_.Now());
  int64_t available = 0;
  for (const auto& [rev, c] : view.revisions) available += c.available;
  available = std::min(available, d.replicas);
  const std::string& rollout_phase = d.rollout.phase;
  bool rolling = RolloutActive(d) || d.rollout.aborted || rollout_phase == "Failed";
  std::string phase;
  if (d.drained) {
    phase = by_state.empty() ? "Drained" : "Draining";
  } else if (rolling && !rollout_phase.empty() && rollout_phase != "Complete") {
    phase = rollout_phase;
  } else if (failing > 0) {
    phase = "Degraded";
  } else if (available == d.replicas && updated == d.replicas && current == d.replicas) {
    phase = "Complete";
  } else if (current == 0) {
    phase = "Pending";
  } else {
    phase = "Progressing";
  }
  bool is_available = available >= d.replicas;
  Json conditions = Json::array();
  conditions.push_back(
      {{"type", "Available"},
       {"status", is_available},
       {"reason", is_available ? "MinimumReplicasAvailable" : "MinimumReplicasUnavailable"},
       {"message", absl::StrCat(available, " of ", d.replicas, " replicas available")}});
  if (failing > 0) {
    conditions.push_back({{"type", "Degraded"},
                          {"status", true},
                          {"reason", "InstancesFailing"},
                          {"message", absl::StrCat(failing,
                                                   " instances are crashing or cannot start; "
                                                   "see `palm instance list -d ",
                                                   d.name, "`")}});
  }
  if (Json progressing = ProgressingCondition(d); !progressing.is_null()) {
    conditions.push_back(std::move(progressing));
  }
  Json rollout = RolloutStatus(d);
  Json& per_rev = rollout["revisions"] = Json::object();
  const auto& targets = targets_.count(key) ? targets_.at(key) : std::map<int64_t, int64_t>{};
  std::set<int64_t> revs;
  for (const auto& [rev, c] : view.revisions) revs.insert(rev);
  for (const auto& [rev, n] : targets) revs.insert(rev);
  for (int64_t rev : revs) {
    const RevisionCounts c = view.revisions.count(rev) ? view.revisions.at(rev) : RevisionCounts{};
    auto t = targets.find(rev);
    per_rev[std::to_string(rev)] = {{"target", t == targets.end() ? 0 : t->second},
                                    {"current", c.slots},
                                    {"ready", c.ready},
                                    {"available", c.available}};
  }
  Json last_failure = nullptr;
  if (!is_available) {
    // What a running but unready instance's probe says now; else the last failure seen.
    for (const Live* live : InstancesOf({d.tenant, d.name})) {
      const Instance& in = live->inst;
      if (!health_ || live->removing || in.state != InstanceState::kRunning || in.ready) continue;
      auto report = health_->Report(RuntimeKey(in.tenant, in.id));
      if (report && !report->failing_probe.empty() && !report->message.empty()) {
        last_failure = {{"instance", in.id},
                        {"probe", report->failing_probe},
                        {"message", report->message},
                        {"at", palm::FormatTime(clock_.Now())}};
        break;
      }
    }
    auto it = last_probe_failure_.find({d.tenant, d.name});
    if (last_failure.is_null() && it != last_probe_failure_.end()) last_failure = it->second;
  }
  return Json{{"phase", phase},
              {"health", health},
              {"metrics", metrics.ToJson()},
              {"last_probe_failure", last_failure},
              {"replicas",
               {{"desired", d.replicas},
                {"current", current},
                {"updated", updated},
                {"ready", ready},
                {"available", available},
                {"unavailable", std::max<int64_t>(0, d.replicas - available)}}},
              {"running", running},
              {"current_revision", d.revision},
              {"stable_revision", d.stable_revision},
              {"rollout", rollout},
              {"instances_by_state", by_state},
              {"restarts", restarts},
              {"conditions", conditions},
              {"tasks", tasks_ ? tasks_->DeploymentTasks(d.tenant, d.name) : Json::object()}};
}

std::string HealthKey(model::HealthStatus h) {
  switch (h) {
    case model::HealthStatus::kHealthy: return "healthy";
    case model::HealthStatus::kDegraded: return "degraded";
    case model::HealthStatus::kUnhealthy: return "unhealthy";
    default: return "unknown";
  }
}

void MetricAggregate::Add(const Json& metrics) {
  if (!metrics.is_object()) return;
  for (const auto& [name, value] : metrics.items()) {
    if (!value.is_number()) continue;
    Sum& s = sums_[name];
    s.sum += value.get<double>();
    ++s.count;
  }
}

Json MetricAggregate::ToJson() const {
  Json out = Json::object();
  for (const auto& [name, s] : sums_) {
    out[name] = {{"sum", s.sum}, {"mean", s.sum / static_cast<double>(s.count)},
                 {"count", s.count}};
  }
  return out;
}

// ---- Instances ------------------------------------------------------------------------

Supervisor::Live* Supervisor::FindLive(const std::string& tenant, const std::string& id) const {
  auto it = instances_.find(RuntimeKey(tenant, id));
  return it == instances_.end() ? nullptr : it->second.get();
}

std::vector<Supervisor::Live*> Supervisor::InstancesOf(const DeploymentKey& key) const {
  std::vector<Live*> out;
  for (const auto& [k, live] : instances_) {
    if (live->inst.tenant == key.tenant && live->inst.deployment == key.name) {
      out.push_back(live.get());
    }
  }
  return out;
}

std::vector<const Instance*> Supervisor::ListInstances(
    const std::string& tenant, const std::string& deployment,
    std::optional<InstanceState> state) const {
  std::vector<const Instance*> out;
  for (const auto& [k, live] : instances_) {
    const Instance& in = live->inst;
    if (in.tenant != tenant) continue;
    if (!deployment.empty() && in.deployment != deployment) continue;
    if (state && in.state != *state) continue;
    out.push_back(&in);
  }
  // Creation order: by deployment creation, then instance sequence.
  std::stable_sort(out.begin(), out.end(), [](const Instance* a, const Instance* b) {
    if (a->created_at != b->created_at) return a->created_at < b->created_at;
    return a->id < b->id;
  });
  return out;
}

absl::StatusOr<const Instance*> Supervisor::GetInstance(const std::string& tenant,
                                                       const std::string& id) const {
  Live* live = FindLive(tenant, id);
  if (!live) {
    return NotFound("INSTANCE_NOT_FOUND", absl::StrCat("instance ", id, " not found"),
                    "`palm instance list` shows the instances");
  }
  return &live->inst;
}

absl::Status Supervisor::RestartInstance(const std::string& tenant, const std::string& id) {
  Live* live = FindLive(tenant, id);
  if (!live) return GetInstance(tenant, id).status();
  if (live->removing) {
    return Error(absl::StatusCode::kFailedPrecondition, "INSTANCE_STOPPING",
                 absl::StrCat("instance ", id, " is being removed"));
  }
  live->inst.consecutive_failures = 0;
  if (HasProcess(live->inst)) {
    BeginStop(*live, /*remove=*/false, /*restart_after=*/true);
  } else {
    live->inst.state = InstanceState::kPending;
    live->inst.next_start_at.reset();
    Persist(*live);
  }
  Emit("info", "InstanceRestartRequested", "instance", id, live->inst.deployment, tenant,
       absl::StrCat("instance ", id, " restart requested"), "user");
  MarkDirty(live->key());
  return CommitMutation(absl::StrCat("restarting instance ", id));
}

absl::Status Supervisor::DrainInstance(const std::string& tenant, const std::string& id) {
  Live* live = FindLive(tenant, id);
  if (!live) return GetInstance(tenant, id).status();
  Instance& in = live->inst;
  if (live->removing || in.state == InstanceState::kDraining ||
      in.state == InstanceState::kStopping) {
    return absl::OkStatus();  // already on its way out
  }
  DeploymentKey key = live->key();
  int64_t in_flight = tasks_ ? tasks_->InFlight(tenant, id) : 0;
  Emit("info", "InstanceDraining", "instance", id, in.deployment, tenant,
       absl::StrCat("instance ", id, " draining (", in_flight,
                    " tasks in flight); a replacement starts now"),
       "user");
  BeginStop(*live, /*remove=*/true, /*restart_after=*/false, absl::InfiniteDuration());
  MarkDirty(key);
  return CommitMutation(absl::StrCat("draining instance ", id));
}

// ---- Tasks ----------------------------------------------------------------------------

void Supervisor::SetTaskEngine(tasks::TaskEngine* tasks) { tasks_ = tasks; }

void Supervisor::OnInstanceIdle(const std::string& tenant, const std::string& id) {
  Live* live = FindLive(tenant, id);
  if (live && live->inst.state == InstanceState::kDraining) MarkDirty(live->key());
}

// ---- Agents ---------------------------------------------------------------------------

std::optional<std::pair<std::string, std::string>> Supervisor::InstanceForToken(
    const std::string& token) const {
  auto it = token_to_instance_.find(Sha256Hex(token));
  if (it == token_to_instance_.end()) return std::nullopt;
  auto live = instances_.find(it->second);
  if (live == instances_.end()) return std::nullopt;
  return std::make_pair(live->second->inst.tenant, live->second->inst.id);
}

absl::StatusOr<HeartbeatOut> Supervisor::Heartbeat(const std::string& tenant,
                                                   const std::string& id,
                                                   const HeartbeatIn& in) {
  Live* live = FindLive(tenant, id);
  if (!live) return GetInstance(tenant, id).status();
  absl::Time now = clock_.Now();
  Instance& inst = live->inst;
  inst.last_heartbeat = now;
  inst.metrics = in.metrics;
  live->heartbeat_seen = true;
  live->heartbeat_degraded = in.status == "degraded";
  live->heartbeat_reason = in.reason;
  DeriveHealth(*live);
  heartbeat_dirty_.insert(RuntimeKey(tenant, id));
  HeartbeatOut out;
  out.drain = inst.state == InstanceState::kDraining || inst.state == InstanceState::kStopping;
  return out;
}

absl::Status Supervisor::FlushSoftState() {
  for (const std::string& key : heartbeat_dirty_) {
    auto it = instances_.find(key);
    if (it != instances_.end()) Persist(*it->second);
  }
  heartbeat_dirty_.clear();
  return Commit();
}

// ---- Health ---------------------------------------------------------------------------

void Supervisor::SetHealthManager(health::HealthManager* health) { health_ = health; }

void Supervisor::TrackHealth(Live& live, const Deployment& d) {
  Instance& in = live.inst;
  live.probed = false;
  live.probe_observed = false;
  live.probe_started = live.probe_live = live.probe_ready = true;
  live.probe_failing.clear();
  live.probe_message.clear();
  const model::AgentSpec* spec = FindSpec(d.tenant, d.spec);
  if (health_ && spec && !spec->health.empty() && in.started_at) {
    health::ProbeTarget t;
    t.key = RuntimeKey(in.tenant, in.id);
    t.spec = spec->health;
    t.ports = in.ports;
    t.started_at = *in.started_at;
    t.workdir = spec->workdir;
    // Exec probes get the agent's environment, but never its token.
    std::string no_token;
    if (auto req = RenderSpawn({*spec, d, in, options_.endpoint, no_token, options_.base_env});
        req.ok()) {
      t.env = std::move(req->env);
    }
    t.last_heartbeat = [this, key = t.key]() -> std::optional<absl::Time> {
      auto it = instances_.find(key);
      if (it == instances_.end()) return std::nullopt;
      return it->second->inst.last_heartbeat;
    };
    health_->Track(std::move(t));
    live.probed = true;
    if (auto report = health_->Report(RuntimeKey(in.tenant, in.id))) {
      live.probe_started = report->started;
      live.probe_live = report->live;
      live.probe_ready = report->ready;
      live.probe_observed = report->observed;
    }
  }
  DeriveHealth(live);
}

void Supervisor::DeriveHealth(Live& live) {
  Instance& in = live.inst;
  model::HealthStatus status = model::HealthStatus::kUnknown;
  std::string reason;
  if (!live.probe_live) {
    status = model::HealthStatus::kUnhealthy;
    reason = absl::StrCat(live.probe_failing, " probe failed: ", live.probe_message);
  } else if (live.probed && !live.probe_started) {
    reason = "waiting for the startup probe";
  } else if (live.probe_failing == "readiness") {
    status = model::HealthStatus::kDegraded;
    reason = absl::StrCat("readiness probe failed: ", live.probe_message);
  } else if (live.heartbeat_seen && live.heartbeat_degraded) {
    status = model::HealthStatus::kDegraded;
    reason = live.heartbeat_reason;
  } else if ((live.probed && live.probe_observed) || live.heartbeat_seen) {
    status = model::HealthStatus::kHealthy;
  } else if (live.probed) {
    reason = "no probe result yet";
  }
  in.ready = in.state == InstanceState::kRunning && live.probe_started && live.probe_live &&
             live.probe_ready;
  if (!in.ready) {
    in.ready_since.reset();
  } else if (!in.ready_since) {
    in.ready_since = clock_.Now();
  }
  if (status != in.health || reason != in.health_reason) {
    bool was_unhealthy = in.health == model::HealthStatus::kUnhealthy;
    in.health = status;
    in.health_reason = reason;
    in.health_since = clock_.Now();
    if (status == model::HealthStatus::kUnhealthy) {
      EmitFor(live, "warning", "Unhealthy", absl::StrCat("is unhealthy: ", reason));
    } else if (status == model::HealthStatus::kHealthy && (live.healing || was_unhealthy)) {
      live.healing = false;
      EmitFor(live, "info", "Healed", "is healthy again");
    }
  }
}

void Supervisor::OnHealthReport(const health::HealthReport& report) {
  auto it = instances_.find(report.key);
  if (it == instances_.end()) return;
  Live& live = *it->second;
  Instance& in = live.inst;
  if (in.state != InstanceState::kRunning) return;
  bool was_ready = in.ready;
  // Failing() also names a probe still awaited (no message yet): that is not a failure.
  bool newly_failing = !report.failing_probe.empty() && !report.message.empty() &&
                       (report.failing_probe != live.probe_failing ||
                        live.probe_live != report.live || live.probe_message.empty());
  live.probe_started = report.started;
  live.probe_live = report.live;
  live.probe_ready = report.ready;
  live.probe_observed = report.observed;
  live.probe_failing = report.failing_probe;
  live.probe_message = report.message;
  if (newly_failing) {
    EmitFor(live, "warning", "ProbeFailed",
            absl::StrCat(report.failing_probe, " probe failed: ", report.message));
    last_probe_failure_[live.key()] = {{"instance", in.id},
                                       {"probe", report.failing_probe},
                                       {"message", report.message},
                                       {"at", palm::FormatTime(clock_.Now())}};
  }
  DeriveHealth(live);
  if (in.ready != was_ready) {
    EmitFor(live, in.ready ? "info" : "warning", in.ready ? "Ready" : "NotReady",
            in.ready ? "is ready"
                     : absl::StrCat("is not ready", report.message.empty() ? "" : ": ",
                                    report.message));
  }
  if (!report.live) {
    // Kubernetes semantics: a failed liveness (or startup) probe restarts the process.
    live.liveness_failure = absl::StrCat(report.failing_probe, " probe failed: ", report.message);
    EmitFor(live, "warning", "LivenessRestart",
            absl::StrCat("will be restarted: ", live.liveness_failure));
    BeginStop(live, /*remove=*/false, /*restart_after=*/false);
  }
  Persist(live);
  (void)Commit();
  MarkDirty(live.key());
}

absl::Status Supervisor::CheckInstance(
    const std::string& tenant, const std::string& id,
    std::function<void(std::vector<health::ProbeCheck>)> done) {
  PALM_ASSIGN_OR_RETURN(const Instance* in, GetInstance(tenant, id));
  if (!health_ || !FindLive(tenant, id)->probed) {
    done({});  // nothing configured: nothing to run
    return absl::OkStatus();
  }
  if (in->state != InstanceState::kRunning) {
    return Error(absl::StatusCode::kFailedPrecondition, "INSTANCE_NOT_RUNNING",
                 absl::StrCat("instance ", id, " is ", std::string(model::ToString(in->state)),
                              "; probes run against running instances"));
  }
  return health_->CheckNow(RuntimeKey(tenant, id), std::move(done));
}

Json Supervisor::ProbeStats() const {
  if (!health_) return {{"tracked", 0}, {"count", 0}};
  Json stats = health_->LatencyStats();
  stats["tracked"] = health_->tracked();
  return stats;
}

Json Supervisor::DescribeProbes(const std::string& tenant, const std::string& id) const {
  if (!health_) return Json::object();
  Json d = health_->Describe(RuntimeKey(tenant, id));
  return d.is_null() ? Json::object() : d;
}

// ---- Reconciliation ---------------------------------------------------------------------

std::vector<DeploymentKey> Supervisor::AllKeys() const {
  std::set<DeploymentKey> keys;
  for (const auto& [key, d] : deployments_) keys.insert(key);
  for (const auto& [k, live] : instances_) keys.insert(live->key());
  return {keys.begin(), keys.end()};
}

Supervisor::Live& Supervisor::NewInstance(Deployment& d, int64_t revision) {
  absl::Time now = clock_.Now();
  auto live = std::make_unique<Live>();
  Instance& in = live->inst;
  in.tenant = d.tenant;
  in.deployment = d.name;
  in.seq = d.next_instance_seq++;
  in.id = absl::StrCat(d.name, "-", in.seq < 100 ? (in.seq < 10 ? "00" : "0") : "", in.seq);
  in.spec = TemplateFor(d, revision).spec;
  in.revision = revision;
  in.state = InstanceState::kPending;
  in.created_at = in.updated_at = in.health_since = now;
  in.log_path = LogPath(in);
  Live& ref = *live;
  instances_[RuntimeKey(in.tenant, in.id)] = std::move(live);
  return ref;
}

std::string Supervisor::LogPath(const Instance& inst) const {
  if (inst.tenant == model::kDefaultTenant) {
    return absl::StrCat(options_.data_dir, "/logs/", inst.id, ".log");
  }
  return absl::StrCat(options_.data_dir, "/logs/", inst.tenant, "/", inst.id, ".log");
}

void Supervisor::PrepareStart(Live& live) {
  Instance& in = live.inst;
  live.pending_token = RandomToken();
  if (!in.token_hash.empty()) token_to_instance_.erase(in.token_hash);
  in.token_hash = Sha256Hex(live.pending_token);
  token_to_instance_[in.token_hash] = RuntimeKey(in.tenant, in.id);
  in.state = InstanceState::kStarting;
  in.pid = 0;
  in.updated_at = clock_.Now();
  live.awaiting_spawn = true;
  Persist(live);
}

absl::StatusOr<runtime::SpawnRequest> Supervisor::BuildSpawn(Live& live, const Deployment& d) {
  Instance& in = live.inst;
  const model::AgentSpec* spec = FindSpec(d.tenant, d.spec);
  if (!spec) {
    return NotFound("SPEC_NOT_FOUND", absl::StrCat("spec ", d.spec, " is not registered"));
  }
  for (const std::string& port_name : spec->ports) {
    if (in.ports.count(port_name)) continue;
    PALM_ASSIGN_OR_RETURN(int port, ports_.Allocate());
    in.ports[port_name] = port;
  }
  TemplateInput tin{*spec, d, in, options_.endpoint, live.pending_token, options_.base_env};
  return RenderSpawn(tin);
}

void Supervisor::StartInstance(Live& live, const Deployment& d) {
  Instance& in = live.inst;
  absl::Time now = clock_.Now();
  bool restart = in.started_at.has_value() || in.last_exit.has_value() || !in.last_error.empty();
  if (restart) ++in.restarts;
  in.next_start_at.reset();
  auto req = BuildSpawn(live, d);
  absl::StatusOr<runtime::Spawned> pid = req.ok() ? runtime_.Spawn(*req) : req.status();
  live.pending_token.clear();
  live.awaiting_spawn = false;
  in.updated_at = now;
  if (!pid.ok()) {
    // The runtime's message may quote the command and the OS: keep it valid UTF-8.
    in.last_error = ToValidUtf8(std::string(pid.status().message()), 1024);
    ++in.consecutive_failures;
    EmitFor(live, "error", "SpawnFailed", absl::StrCat("cannot start: ", in.last_error));
    EnterBackOff(live, d, std::max(BackoffDelay(d.restart_policy, in.consecutive_failures),
                                   options_.min_spawn_failure_delay));
    return;
  }
  in.pid = pid->pid;
  in.proc_start_time = pid->start_time;
  in.proc_boot_id = pid->boot_id;
  const runtime::Limits& lim = pid->enforced;  // what the runtime says enforces the limits
  in.limits = model::InstanceLimits{std::string(runtime::ToString(pid->enforced_by)), lim.memory_mb,
                                    lim.max_procs, lim.max_open_files, lim.cpu};
  in.state = InstanceState::kRunning;
  in.started_at = now;
  in.last_error.clear();
  live.kill_sent = false;
  live.stop_deadline = absl::InfiniteFuture();
  TrackHealth(live, d);
  Persist(live);
  EmitFor(live, "info", "InstanceStarted",
          absl::StrCat("started (pid ", in.pid, restart ? ", restart " : "",
                       restart ? absl::StrCat(in.restarts) : "", ")"));
}

void Supervisor::EnterBackOff(Live& live, const Deployment& d, absl::Duration delay) {
  Instance& in = live.inst;
  in.state = InstanceState::kBackOff;
  in.ready = false;
  in.pid = 0;
  in.next_start_at = clock_.Now() + delay;
  EmitFor(live, "warning", "BackOff",
          absl::StrCat("back-off: restarting in ", absl::FormatDuration(delay), " (",
                       in.consecutive_failures, " consecutive failures)"));
  Persist(live);
}

void Supervisor::BeginStop(Live& live, bool remove, bool restart_after,
                           std::optional<absl::Duration> max_drain) {
  Instance& in = live.inst;
  live.removing = live.removing || remove;
  live.restart_after = restart_after && !live.removing;
  live.awaiting_spawn = false;  // a start recorded but not yet made is not made
  if (!HasProcess(in)) {
    if (live.removing) {
      Erase(RuntimeKey(in.tenant, in.id));  // `live` is gone after this
      return;
    }
    in.state = live.restart_after ? InstanceState::kPending : InstanceState::kStopped;
    in.ready = false;
    Persist(live);
    return;
  }
  if (in.state == InstanceState::kStopping) return;  // already under way
  if (in.state != InstanceState::kDraining) {
    // Drain first: no new tasks; the stop signal waits for the tasks in flight.
    const model::AgentSpec* spec = FindSpec(in.tenant, in.spec);
    double grace_s = spec ? spec->stop.grace_s : model::StopSpec{}.grace_s;
    absl::Duration drain = max_drain.value_or(absl::Milliseconds(std::llround(grace_s * 1000)));
    in.state = InstanceState::kDraining;
    in.ready = false;
    in.updated_at = clock_.Now();
    live.drain_deadline =
        drain == absl::InfiniteDuration() ? absl::InfiniteFuture() : clock_.Now() + drain;
    Persist(live);  // no longer routable from here on
  }
  if (tasks_ && tasks_->InFlight(in.tenant, in.id) > 0 && clock_.Now() < live.drain_deadline) {
    return;  // FinishDrains sends the stop signal when they are done
  }
  SendStop(live);
}

absl::Time Supervisor::FinishDrains(const std::vector<Live*>& lives, absl::Time now) {
  absl::Time next = absl::InfiniteFuture();
  for (Live* live : lives) {
    const Instance& in = live->inst;
    if (in.state != InstanceState::kDraining) continue;
    bool idle = !tasks_ || tasks_->InFlight(in.tenant, in.id) == 0;
    if (idle || now >= live->drain_deadline) {
      if (!idle) {
        EmitFor(*live, "warning", "DrainTimeout",
                "still had tasks in flight at the end of its drain; stopping it anyway");
      }
      SendStop(*live);
    } else {
      next = std::min(next, live->drain_deadline);
    }
  }
  return next;
}

void Supervisor::SendStop(Live& live) {
  Instance& in = live.inst;
  if (health_) health_->Untrack(RuntimeKey(in.tenant, in.id));
  live.probed = false;
  const model::AgentSpec* spec = FindSpec(in.tenant, in.spec);
  model::StopSpec stop = spec ? spec->stop : model::StopSpec{};
  in.state = InstanceState::kStopping;
  in.ready = false;
  in.updated_at = clock_.Now();
  // The signal goes out once Stopping is durable (SendRecordedStops), and the grace period
  // (the SIGKILL deadline) starts then.
  live.stop_deadline = absl::InfiniteFuture();
  live.kill_sent = false;
  recorded_stops_.push_back({RuntimeKey(in.tenant, in.id), stop.signal,
                             absl::Milliseconds(std::llround(stop.grace_s * 1000))});
  EmitFor(live, "info", "InstanceStopping",
          absl::StrCat("stopping (", model::SignalName(stop.signal), ", grace ", stop.grace_s,
                       "s)"));
  Persist(live);
}

void Supervisor::OnExit(const std::string& runtime_key, runtime::ExitStatus status) {
  auto it = instances_.find(runtime_key);
  if (it == instances_.end()) return;
  Live& live = *it->second;
  DeploymentKey key = live.key();
  HandleExit(live, ToExitInfo(status, clock_.Now()));
  (void)Commit();
  MarkDirty(key);
}

void Supervisor::HandleExit(Live& live, const ExitInfo& exit) {
  Instance& in = live.inst;
  // An agent that exits while draining has done what the drain asked.
  bool was_stopping =
      in.state == InstanceState::kStopping || in.state == InstanceState::kDraining;
  if (health_) health_->Untrack(RuntimeKey(in.tenant, in.id));
  live.probed = false;
  in.last_exit = exit;
  in.pid = 0;
  in.proc_start_time = 0;
  in.proc_boot_id.clear();
  in.ready = false;
  in.updated_at = exit.at;
  EmitFor(live, was_stopping ? "info" : "warning", "InstanceExited",
          absl::StrCat(DescribeExit(exit), was_stopping ? " (stopped)" : ""));
  if (tasks_) {
    // Its leases go back to the queue now rather than when they expire.
    tasks_->InstanceLost(in.tenant, in.id, absl::StrCat("instance ", in.id, " ", DescribeExit(exit)));
  }
  if (live.removing) {
    Erase(RuntimeKey(in.tenant, in.id));
    return;
  }
  if (stopping_all_) {
    // Kept stopped while the daemon goes down; started again at its next start.
    in.state = InstanceState::kPending;
    Persist(live);
    return;
  }
  const Deployment* d = FindDeployment(live.key());
  if (was_stopping && !live.liveness_failure.empty() && d) {
    // Stopped because its liveness probe failed: a failure like a crash, with backoff.
    in.last_error = live.liveness_failure;
    live.liveness_failure.clear();
    live.healing = true;
    ++in.consecutive_failures;
    EnterBackOff(live, *d, BackoffDelay(d->restart_policy, in.consecutive_failures));
    return;
  }
  if (was_stopping) {
    in.state = live.restart_after ? InstanceState::kPending : InstanceState::kStopped;
    live.restart_after = false;
    Persist(live);
    return;
  }
  if (!d || !Wanted(live.key(), in.revision)) {
    // Its deployment is gone or its revision is being scaled away: do not bring it back.
    Erase(RuntimeKey(in.tenant, in.id));
    return;
  }
  if (in.started_at && RanStably(d->restart_policy, *in.started_at, exit.at)) {
    in.consecutive_failures = 0;
  }
  if (!ShouldRestart(d->restart_policy.policy, exit)) {
    in.state = (exit.code && *exit.code == 0) ? InstanceState::kStopped : InstanceState::kFailed;
    Persist(live);
    return;
  }
  ++in.consecutive_failures;
  EnterBackOff(live, *d, BackoffDelay(d->restart_policy, in.consecutive_failures));
}

bool Supervisor::Wanted(const DeploymentKey& key, int64_t revision) const {
  auto t = targets_.find(key);
  if (t == targets_.end()) {
    // Not planned yet (just loaded): the revisions the deployment is made of.
    auto d = deployments_.find(key);
    return d != deployments_.end() &&
           (d->second.revision == revision || d->second.stable_revision == revision);
  }
  auto it = t->second.find(revision);
  return it != t->second.end() && it->second > 0;
}

void Supervisor::ReconcileOrphans(const DeploymentKey& key) {
  for (Live* live : InstancesOf(key)) {
    BeginStop(*live, /*remove=*/true, /*restart_after=*/false);  // may erase `live`
  }
}

absl::Time Supervisor::StopDeadlines(const DeploymentKey& key) const {
  absl::Time next = absl::InfiniteFuture();
  for (const Live* live : InstancesOf(key)) {
    if (live->inst.state == InstanceState::kStopping && !live->kill_sent) {
      next = std::min(next, live->stop_deadline);
    }
    if (live->inst.state == InstanceState::kDraining) {
      next = std::min(next, live->drain_deadline);
    }
  }
  return next;
}

absl::StatusOr<bool> Supervisor::ReconcilePass(Deployment& d, absl::Time now, absl::Time* next) {
  DeploymentKey key{d.tenant, d.name};
  // 2. The rollout planner decides how many instances each revision should have and how
  //    tasks are routed; what it changed is persisted with its events.
  RolloutPlan plan = PlanStep(d, now);
  *next = std::min(*next, plan.wake_at);

  // 3. Size each revision: surplus instances drain and stop, missing ones are created.
  bool changed = ScaleRevisions(d, plan.targets);

  // 4. Start new and pending slots, and restart those whose backoff is over.
  std::vector<Live*> to_start;
  for (Live* live : InstancesOf(key)) {
    const Instance& in = live->inst;
    if (live->removing || !Wanted(key, in.revision)) continue;
    bool due = in.state == InstanceState::kPending ||
               (in.state == InstanceState::kBackOff && in.next_start_at.value_or(now) <= now);
    if (due) {
      // Phase 1: record every start (state Starting, the hash of the token the process will
      // carry) in one transaction before any process exists, so a daemon killed mid-way can
      // find the processes it started (see Load) instead of starting them twice.
      PrepareStart(*live);
      to_start.push_back(live);
    } else if (live->awaiting_spawn && in.state == InstanceState::kStarting) {
      to_start.push_back(live);  // recorded by a commit that failed; spawned once it is durable
    }
  }
  // No process before its record is durable: a failed commit spawns nothing (and keeps the
  // record for the next pass).
  PALM_RETURN_IF_ERROR(Commit());
  // Phase 2: spawn, then record pids in one transaction.
  for (Live* live : to_start) StartInstance(*live, TemplateFor(d, live->inst.revision));
  for (Live* live : InstancesOf(key)) {
    if (!live->removing && live->inst.state == InstanceState::kBackOff &&
        live->inst.next_start_at) {
      *next = std::min(*next, *live->inst.next_start_at);
    }
  }
  return changed || !to_start.empty();
}

absl::StatusOr<absl::Time> Supervisor::Reconcile(const DeploymentKey& key) {
  absl::Time now = clock_.Now();
  absl::Time next = absl::InfiniteFuture();
  std::vector<Live*> all = InstancesOf(key);

  // 1. Drained instances get their stop signal; stops that outlived their grace period
  //    get SIGKILL.
  next = std::min(next, FinishDrains(all, now));
  for (Live* live : all) {
    if (live->inst.state != InstanceState::kStopping || live->kill_sent) continue;
    // stop_deadline is set when the stop signal went out (after its record was durable).
    if (now >= live->stop_deadline) {
      live->kill_sent = true;
      EmitFor(*live, "warning", "StopTimeout",
              "did not stop within its grace period; sending SIGKILL");
      (void)runtime_.Signal(RuntimeKey(live->inst.tenant, live->inst.id), SIGKILL);
    }
  }
  if (stopping_all_) {
    PALM_RETURN_IF_ERROR(Commit());
    return std::min(next, StopDeadlines(key));
  }

  Deployment* d = FindDeployment(key);
  if (!d) {
    ReconcileOrphans(key);
    PALM_RETURN_IF_ERROR(Commit());
    return std::min(next, StopDeadlines(key));
  }

  // 2-4 run again while they change something: what changed (instances created,
  // started, stopped) is what the next plan looks at, and no event may come to trigger it
  // (an agent without probes is ready the moment it runs). A few passes settle it: new
  // instances wait for old ones to exit, which only their exit events report.
  bool again = true;
  for (int pass = 0; pass < 8 && again; ++pass) {
    PALM_ASSIGN_OR_RETURN(again, ReconcilePass(*d, now, &next));
  }
  if (again) next = now;  // still moving: go on after other work had its turn
  PALM_RETURN_IF_ERROR(Commit());
  // Stops begun above need their drain and SIGKILL deadlines watched; a SIGKILL deadline is
  // known once the commit above sent the stop signal.
  return std::min(next, StopDeadlines(key));
}

void Supervisor::StopAllAgents() {
  stopping_all_ = true;
  for (auto& [k, live] : instances_) {
    if (HasProcess(live->inst)) BeginStop(*live, false, false);
  }
  (void)Commit();
  for (const auto& key : AllKeys()) MarkDirty(key);
}

size_t Supervisor::AgentsRunning() const {
  size_t n = 0;
  for (const auto& [k, live] : instances_) n += HasProcess(live->inst) ? 1 : 0;
  return n;
}

void Supervisor::Detach() {
  (void)FlushSoftState();
  for (const auto& [k, live] : instances_) {
    if (HasProcess(live->inst)) runtime_.Forget(k);
  }
}

}  // namespace palm::controller
