// Store: palm's durable state. Every method returns only after the write is durable
// (SQLite WAL, synchronous=FULL): an acknowledged write survives kill -9 of the daemon.
//
// Objects are kept as JSON documents (the model codec's stored form) next to the indexed
// columns used for lookups; docs/formats/store.md documents the schema. Migrations are
// versioned and applied by Open().
// Thread-safety: one Store is used from one thread at a time (the daemon's event loop);
// it does not lock internally.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace palm::store {

using Json = nlohmann::json;

struct SpecRow {
  std::string tenant, name, version;
  Json doc;
  bool deprecated = false;
};

struct DeploymentRow {
  std::string tenant, name;
  Json doc;  // desired state + bookkeeping
};

// One revision of a deployment's template (model::Revision's stored form).
struct RevisionRow {
  std::string tenant, deployment;
  int64_t revision = 0;
  Json doc;
};

struct InstanceRow {
  std::string tenant, id, deployment;
  Json doc;
};

struct TokenRow {
  std::string hash;         // hex SHA-256 of the token; the token itself is never stored
  std::string tenant;
  std::string role;         // admin | operator | viewer | instance
  std::string instance_id;  // for role "instance": the only instance it may act as
  std::string created_at;
};

struct EventRow {
  int64_t seq = 0;          // assigned by the caller, strictly increasing
  std::string tenant;
  std::string deployment;   // "" when the event is not about a deployment
  Json doc;                 // the event as the API returns it
};

struct TaskRow {
  std::string tenant, id, deployment;
  int64_t seq = 0;              // creation order (unique, strictly increasing)
  std::string state;            // Queued | Assigned | Succeeded | Failed | TimedOut | Cancelled
  std::string idempotency_key;  // "" = none; unique per (tenant, deployment) otherwise
  // model::ToStored(task). Reads assemble it: a document written with "delivery_rows": N
  // (a task whose deliveries are kept in rows of their own, see DeliveryRow) comes back with
  // "deliveries" holding those N rows' documents in index order and no "delivery_rows".
  Json doc;
  std::string doc_text;         // or the same already as JSON text (wins when not empty)
};

// One delivery of a task whose deliveries live in rows of their own (a broadcast: a result
// rewrites its delivery, not the whole task). Keyed by (task_seq, index); deleted with the
// task by PruneFinishedTasks.
struct DeliveryRow {
  int64_t task_seq = 0;         // the task's seq
  int64_t index = 0;            // 0 .. delivery_rows-1
  Json doc;                     // the delivery's stored form (model::ToStored(Delivery))
  std::string doc_text;         // or the same already as JSON text (wins when not empty)
};

// Filters for ListTasks; "" / 0 = any.
struct TaskQuery {
  std::string tenant;           // required
  std::string deployment;
  std::string state;
  int64_t after_seq = 0;        // ascending: seq > after_seq; descending: seq < after_seq
  bool descending = false;
  size_t limit = 100;
};

// A set of writes applied in one transaction: all or nothing.
//
// The store applies deletes before puts, so a key both put and deleted in one batch would
// end up put. Writers that keep a batch across calls (a batch whose commit failed is kept and
// retried with later changes appended) delete through DeleteInstance / DeleteDeployment /
// DeleteRevision, which also drop the batch's earlier puts of that key: the batch then means
// what its changes meant in the order they were made.
struct WriteBatch {
  std::vector<SpecRow> put_specs;
  std::vector<DeploymentRow> put_deployments;
  // (tenant, name); also deletes the deployment's revisions.
  std::vector<std::pair<std::string, std::string>> delete_deployments;
  std::vector<RevisionRow> put_revisions;                               // insert or replace
  std::vector<RevisionRow> delete_revisions;                            // by key; doc unused
  std::vector<InstanceRow> put_instances;
  std::vector<std::pair<std::string, std::string>> delete_instances;    // (tenant, id)
  std::vector<TokenRow> put_tokens;
  std::vector<std::string> delete_tokens;                               // by hash
  std::vector<TaskRow> put_tasks;                                       // insert or replace
  std::vector<DeliveryRow> put_deliveries;                              // insert or replace
  std::vector<EventRow> put_events;
  int64_t delete_events_through = 0;  // retention: drop events with seq <= this (0 = none)
  bool empty() const;

  // Deletes the row and drops earlier puts of it from this batch (see above).
  void DeleteInstance(const std::string& tenant, const std::string& id);
  // Deletes the deployment and its revisions; drops earlier puts of either from this batch.
  void DeleteDeployment(const std::string& tenant, const std::string& name);
  void DeleteRevision(RevisionRow key);
};

class Store {
 public:
  virtual ~Store() = default;

  // Applies `batch` atomically and durably. On failure nothing was applied. A document that
  // cannot be serialized (a string that is not UTF-8) does not fail the batch: it is stored
  // with U+FFFD in place of the bad bytes and an error naming the row is logged.
  virtual absl::Status Apply(const WriteBatch& batch) = 0;

  virtual absl::StatusOr<std::vector<SpecRow>> ListSpecs() = 0;
  virtual absl::StatusOr<std::vector<DeploymentRow>> ListDeployments() = 0;
  virtual absl::StatusOr<std::vector<InstanceRow>> ListInstances() = 0;
  // Every revision of every deployment, by (tenant, deployment, revision).
  virtual absl::StatusOr<std::vector<RevisionRow>> ListRevisions() = 0;
  virtual absl::StatusOr<std::vector<TokenRow>> ListTokens() = 0;

  // Events of one tenant / deployment ("" = any), at most `limit`. Ascending: seq > after_seq,
  // oldest first. Descending: seq < after_seq (0 = from the newest), newest first.
  virtual absl::StatusOr<std::vector<EventRow>> ListEvents(int64_t after_seq, size_t limit,
                                                           const std::string& tenant,
                                                           const std::string& deployment,
                                                           bool descending) = 0;
  // The highest event seq stored (0 when none).
  virtual absl::StatusOr<int64_t> LastEventSeq() = 0;

  // Tasks matching `q` in seq order (see TaskQuery), at most q.limit.
  virtual absl::StatusOr<std::vector<TaskRow>> ListTasks(const TaskQuery& q) = 0;
  virtual absl::StatusOr<std::optional<TaskRow>> GetTask(const std::string& tenant,
                                                         const std::string& id) = 0;
  virtual absl::StatusOr<std::optional<TaskRow>> FindTaskByIdempotencyKey(
      const std::string& tenant, const std::string& deployment, const std::string& key) = 0;
  // Every task in state Queued or Assigned, in seq order (what the engine reloads).
  virtual absl::StatusOr<std::vector<TaskRow>> ListActiveTasks() = 0;
  // The highest task seq stored (0 when none).
  virtual absl::StatusOr<int64_t> LastTaskSeq() = 0;
  // Retention: deletes the oldest finished (terminal) tasks so that at most `keep` finished
  // tasks remain; returns how many were deleted. Active tasks are never deleted.
  virtual absl::StatusOr<int64_t> PruneFinishedTasks(int64_t keep) = 0;

  // Small key/value table for daemon metadata (e.g. "admin_token_hash").
  virtual absl::StatusOr<std::optional<std::string>> GetMeta(const std::string& key) = 0;
  virtual absl::Status PutMeta(const std::string& key, const std::string& value) = 0;

  // True when the store answers a trivial query (for /readyz).
  virtual bool Healthy() = 0;
  // The schema version after migrations.
  virtual int SchemaVersion() = 0;
};

// Opens (creating if needed) the SQLite store at `path`, enables WAL and
// synchronous=FULL, applies pending migrations in order inside transactions.
// Fails with kFailedPrecondition when the file's schema is newer than this binary knows,
// kUnavailable when the file cannot be opened or locked.
absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path);

}  // namespace palm::store
