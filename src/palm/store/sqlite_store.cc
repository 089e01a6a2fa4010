// The SQLite implementation of Store (docs/formats/store.md).
#include <sqlite3.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "palm/base/error.h"
#include "palm/base/log.h"
#include "palm/store/migrations.h"
#include "palm/store/sqlite_util.h"
#include "palm/store/store.h"

namespace palm::store {

bool WriteBatch::empty() const {
  return put_specs.empty() && put_deployments.empty() && delete_deployments.empty() &&
         put_revisions.empty() && delete_revisions.empty() && put_instances.empty() &&
         delete_instances.empty() && put_tokens.empty() && delete_tokens.empty() &&
         put_tasks.empty() && put_deliveries.empty() && put_events.empty() &&
         delete_events_through == 0;
}

void WriteBatch::DeleteInstance(const std::string& tenant, const std::string& id) {
  std::erase_if(put_instances,
                [&](const InstanceRow& r) { return r.tenant == tenant && r.id == id; });
  delete_instances.emplace_back(tenant, id);
}

void WriteBatch::DeleteDeployment(const std::string& tenant, const std::string& name) {
  std::erase_if(put_deployments,
                [&](const DeploymentRow& r) { return r.tenant == tenant && r.name == name; });
  std::erase_if(put_revisions,
                [&](const RevisionRow& r) { return r.tenant == tenant && r.deployment == name; });
  delete_deployments.emplace_back(tenant, name);
}

void WriteBatch::DeleteRevision(RevisionRow key) {
  std::erase_if(put_revisions, [&](const RevisionRow& r) {
    return r.tenant == key.tenant && r.deployment == key.deployment && r.revision == key.revision;
  });
  key.doc = nullptr;
  delete_revisions.push_back(std::move(key));
}

namespace {

using internal::Exec;
using internal::SqliteStatus;
using internal::StmtScope;

// Statements, prepared once per store and reused (SQLITE_PREPARE_PERSISTENT).
constexpr char kPutSpec[] =
    "INSERT INTO specs (tenant, name, version, doc, deprecated, created_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, COALESCE(?6, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))) "
    "ON CONFLICT (tenant, name, version) DO UPDATE SET doc = excluded.doc, "
    "deprecated = excluded.deprecated";
constexpr char kPutDeployment[] =
    "INSERT INTO deployments (tenant, name, doc) VALUES (?1, ?2, ?3) "
    "ON CONFLICT (tenant, name) DO UPDATE SET doc = excluded.doc";
constexpr char kDeleteDeployment[] = "DELETE FROM deployments WHERE tenant = ?1 AND name = ?2";
constexpr char kPutRevision[] =
    "INSERT INTO revisions (tenant, deployment, revision, doc) VALUES (?1, ?2, ?3, ?4) "
    "ON CONFLICT (tenant, deployment, revision) DO UPDATE SET doc = excluded.doc";
constexpr char kDeleteRevision[] =
    "DELETE FROM revisions WHERE tenant = ?1 AND deployment = ?2 AND revision = ?3";
constexpr char kDeleteDeploymentRevisions[] =
    "DELETE FROM revisions WHERE tenant = ?1 AND deployment = ?2";
constexpr char kPutInstance[] =
    "INSERT INTO instances (tenant, id, deployment, doc) VALUES (?1, ?2, ?3, ?4) "
    "ON CONFLICT (tenant, id) DO UPDATE SET deployment = excluded.deployment, doc = excluded.doc";
constexpr char kDeleteInstance[] = "DELETE FROM instances WHERE tenant = ?1 AND id = ?2";
constexpr char kPutToken[] =
    "INSERT INTO tokens (hash, tenant, role, instance_id, created_at) "
    "VALUES (?1, ?2, ?3, ?4, COALESCE(NULLIF(?5, ''), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))) "
    "ON CONFLICT (hash) DO UPDATE SET tenant = excluded.tenant, role = excluded.role, "
    "instance_id = excluded.instance_id";
constexpr char kDeleteToken[] = "DELETE FROM tokens WHERE hash = ?1";
constexpr char kListSpecs[] =
    "SELECT tenant, name, version, doc, deprecated FROM specs ORDER BY rowid";
constexpr char kListDeployments[] = "SELECT tenant, name, doc FROM deployments ORDER BY rowid";
constexpr char kListRevisions[] =
    "SELECT tenant, deployment, revision, doc FROM revisions "
    "ORDER BY tenant, deployment, revision";
constexpr char kListInstances[] =
    "SELECT tenant, id, deployment, doc FROM instances ORDER BY rowid";
constexpr char kListTokens[] =
    "SELECT hash, tenant, role, instance_id, created_at FROM tokens ORDER BY rowid";
constexpr char kGetMeta[] = "SELECT value FROM meta WHERE key = ?1";
constexpr char kPutMeta[] =
    "INSERT INTO meta (key, value) VALUES (?1, ?2) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value";
constexpr char kPing[] = "SELECT 1";
constexpr char kPutEvent[] =
    "INSERT INTO events (seq, tenant, deployment, doc) VALUES (?1, ?2, ?3, ?4)";
constexpr char kDeleteEventsThrough[] = "DELETE FROM events WHERE seq <= ?1";
constexpr char kListEventsAsc[] =
    "SELECT seq, tenant, deployment, doc FROM events WHERE seq > ?1 "
    "AND (?3 = '' OR tenant = ?3) AND (?4 = '' OR deployment = ?4) ORDER BY seq LIMIT ?2";
constexpr char kListEventsDesc[] =
    "SELECT seq, tenant, deployment, doc FROM events WHERE seq < ?1 "
    "AND (?3 = '' OR tenant = ?3) AND (?4 = '' OR deployment = ?4) ORDER BY seq DESC LIMIT ?2";
constexpr char kLastEventSeq[] = "SELECT COALESCE(MAX(seq), 0) FROM events";

// Tasks. Most writes insert a task or change its state and document; the identifying
// columns (deployment, seq, idempotency_key) of an existing task are the same, so the upsert
// rewrites only state and doc and leaves the other indexes alone. When they differ the
// upsert changes nothing and kReplaceTask rewrites the whole row ("insert or replace").
constexpr char kPutTask[] =
    "INSERT INTO tasks (tenant, id, deployment, seq, state, idempotency_key, doc) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
    "ON CONFLICT (tenant, id) DO UPDATE SET state = excluded.state, doc = excluded.doc "
    "WHERE deployment = excluded.deployment AND seq = excluded.seq "
    "AND idempotency_key = excluded.idempotency_key";
constexpr char kReplaceTask[] =
    "UPDATE tasks SET deployment = ?3, seq = ?4, state = ?5, idempotency_key = ?6, doc = ?7 "
    "WHERE tenant = ?1 AND id = ?2";
constexpr char kPutDelivery[] =
    "INSERT INTO task_deliveries (task_seq, idx, doc) VALUES (?1, ?2, ?3) "
    "ON CONFLICT (task_seq, idx) DO UPDATE SET doc = excluded.doc";
constexpr char kListDeliveries[] =
    "SELECT idx, doc FROM task_deliveries WHERE task_seq = ?1 ORDER BY idx";
#define PALM_TASK_COLUMNS \
  "SELECT tenant, id, deployment, seq, state, idempotency_key, doc FROM tasks "
// One statement per filter combination and direction so each gets its own index (an
// "(?2 = '' OR deployment = ?2)" form would be planned once for all of them). ?1 tenant,
// ?2 deployment, ?3 state, ?4 cursor, ?5 limit.
constexpr char kListTasksAsc[] =
    PALM_TASK_COLUMNS "WHERE tenant = ?1 AND seq > ?4 ORDER BY seq LIMIT ?5";
constexpr char kListTasksDesc[] =
    PALM_TASK_COLUMNS "WHERE tenant = ?1 AND seq < ?4 ORDER BY seq DESC LIMIT ?5";
constexpr char kListTasksByDeploymentAsc[] =
    PALM_TASK_COLUMNS "WHERE tenant = ?1 AND deployment = ?2 AND seq > ?4 ORDER BY seq LIMIT ?5";
constexpr char kListTasksByDeploymentDesc[] = PALM_TASK_COLUMNS
    "WHERE tenant = ?1 AND deployment = ?2 AND seq < ?4 "
    "ORDER BY seq DESC LIMIT ?5";
constexpr char kListTasksByStateAsc[] =
    PALM_TASK_COLUMNS "WHERE tenant = ?1 AND state = ?3 AND seq > ?4 ORDER BY seq LIMIT ?5";
constexpr char kListTasksByStateDesc[] =
    PALM_TASK_COLUMNS "WHERE tenant = ?1 AND state = ?3 AND seq < ?4 ORDER BY seq DESC LIMIT ?5";
constexpr char kListTasksByBothAsc[] = PALM_TASK_COLUMNS
    "WHERE tenant = ?1 AND deployment = ?2 AND state = ?3 AND seq > ?4 "
    "ORDER BY seq LIMIT ?5";
constexpr char kListTasksByBothDesc[] = PALM_TASK_COLUMNS
    "WHERE tenant = ?1 AND deployment = ?2 AND state = ?3 AND seq < ?4 "
    "ORDER BY seq DESC LIMIT ?5";
constexpr char kGetTask[] = PALM_TASK_COLUMNS "WHERE tenant = ?1 AND id = ?2";
// The "<> ''" term lets SQLite use the partial unique index.
constexpr char kFindTaskByKey[] = PALM_TASK_COLUMNS
    "WHERE tenant = ?1 AND deployment = ?2 AND idempotency_key = ?3 "
    "AND idempotency_key <> ''";
// The WHERE terms match the partial indexes tasks_active / tasks_finished word for word.
constexpr char kListActiveTasks[] =
    PALM_TASK_COLUMNS "WHERE state IN ('Queued', 'Assigned') ORDER BY seq";
#undef PALM_TASK_COLUMNS
constexpr char kLastTaskSeq[] =
    "SELECT MAX(COALESCE((SELECT MAX(seq) FROM tasks), 0), "
    "COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'tasks_pruned_through'), 0))";
// The seq of the newest finished task beyond the `keep` newest (?1), if any.
constexpr char kPruneCutoff[] =
    "SELECT seq FROM tasks WHERE state NOT IN ('Queued', 'Assigned') "
    "ORDER BY seq DESC LIMIT 1 OFFSET ?1";
constexpr char kPruneDeliveries[] =
    "DELETE FROM task_deliveries WHERE task_seq IN (SELECT seq FROM tasks "
    "WHERE state NOT IN ('Queued', 'Assigned') AND seq <= ?1)";
constexpr char kPruneTasks[] =
    "DELETE FROM tasks WHERE state NOT IN ('Queued', 'Assigned') AND seq <= ?1";
// Remembers the highest pruned seq so LastTaskSeq never goes back (ids are never reused).
constexpr char kPutPrunedThrough[] =
    "INSERT INTO meta (key, value) VALUES ('tasks_pruned_through', ?1) "
    "ON CONFLICT (key) DO UPDATE SET value = "
    "MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))";

std::string Basename(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

void BindText(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}

std::string ColumnText(sqlite3_stmt* s, int i) {
  const unsigned char* p = sqlite3_column_text(s, i);
  return p == nullptr ? std::string()
                      : std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(s, i));
}

// The document as stored: compact JSON text. Text enters palm as valid UTF-8 (it is
// sanitized where it comes in), so a string that is not is a bug upstream: the row is
// written with U+FFFD in place of the bad bytes and the error is logged, naming the row,
// rather than failing every other change in the batch with it.
std::string DocText(const Json& doc, std::string_view what) {
  try {
    return doc.dump();
  } catch (const Json::exception& e) {
    PALM_LOG(kError, "store: ", std::string(what), ": document has text that is not UTF-8 (", e.what(),
             "); stored with U+FFFD in place of the bad bytes. This is a bug: text must be "
             "made valid UTF-8 where it enters palm");
    return doc.dump(-1, ' ', false, Json::error_handler_t::replace);
  }
}

class SqliteStore final : public Store {
 public:
  SqliteStore(sqlite3* db, std::string name) : db_(db), name_(std::move(name)) {}

  ~SqliteStore() override {
    for (auto& [sql, stmt] : stmts_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }

  absl::Status Init(int schema_version) {
    schema_version_ = schema_version;
    return absl::OkStatus();
  }

  absl::Status Apply(const WriteBatch& batch) override {
    if (batch.empty()) return absl::OkStatus();
    PALM_RETURN_IF_ERROR(Exec(db_, "BEGIN IMMEDIATE", name_ + ": starting a write"));
    absl::Status st = ApplyInTransaction(batch);
    if (st.ok()) st = Exec(db_, "COMMIT", name_ + ": committing a write");
    if (!st.ok()) {
      // The transaction may already be gone (SQLite rolls back on some errors).
      if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return st;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<SpecRow>> ListSpecs() override {
    std::vector<SpecRow> rows;
    PALM_RETURN_IF_ERROR(Query(kListSpecs, "specs", [&](sqlite3_stmt* s) -> absl::Status {
      SpecRow r{ColumnText(s, 0), ColumnText(s, 1), ColumnText(s, 2), {}, sqlite3_column_int(s, 4) != 0};
      PALM_ASSIGN_OR_RETURN(r.doc, ParseDoc(s, 3, "specs", r.tenant + "/" + r.name + "@" + r.version));
      rows.push_back(std::move(r));
      return absl::OkStatus();
    }));
    return rows;
  }

  absl::StatusOr<std::vector<DeploymentRow>> ListDeployments() override {
    std::vector<DeploymentRow> rows;
    PALM_RETURN_IF_ERROR(Query(kListDeployments, "deployments", [&](sqlite3_stmt* s) -> absl::Status {
      DeploymentRow r{ColumnText(s, 0), ColumnText(s, 1), {}};
      PALM_ASSIGN_OR_RETURN(r.doc, ParseDoc(s, 2, "deployments", r.tenant + "/" + r.name));
      rows.push_back(std::move(r));
      return absl::OkStatus();
    }));
    return rows;
  }

  absl::StatusOr<std::vector<InstanceRow>> ListInstances() override {
    std::vector<InstanceRow> rows;
    PALM_RETURN_IF_ERROR(Query(kListInstances, "instances", [&](sqlite3_stmt* s) -> absl::Status {
      InstanceRow r{ColumnText(s, 0), ColumnText(s, 1), ColumnText(s, 2), {}};
      PALM_ASSIGN_OR_RETURN(r.doc, ParseDoc(s, 3, "instances", r.tenant + "/" + r.id));
      rows.push_back(std::move(r));
      return absl::OkStatus();
    }));
    return rows;
  }

  absl::StatusOr<std::vector<RevisionRow>> ListRevisions() override {
    std::vector<RevisionRow> rows;
    PALM_RETURN_IF_ERROR(Query(kListRevisions, "revisions", [&](sqlite3_stmt* s) -> absl::Status {
      RevisionRow r{ColumnText(s, 0), ColumnText(s, 1), sqlite3_column_int64(s, 2), {}};
      std::string key = absl::StrCat(r.tenant, "/", r.deployment, "/", r.revision);
      PALM_ASSIGN_OR_RETURN(r.doc, ParseDoc(s, 3, "revisions", key));
      rows.push_back(std::move(r));
      return absl::OkStatus();
    }));
    return rows;
  }

  absl::StatusOr<std::vector<TokenRow>> ListTokens() override {
    std::vector<TokenRow> rows;
    PALM_RETURN_IF_ERROR(Query(kListTokens, "tokens", [&](sqlite3_stmt* s) -> absl::Status {
      rows.push_back({ColumnText(s, 0), ColumnText(s, 1), ColumnText(s, 2), ColumnText(s, 3),
                      ColumnText(s, 4)});
      return absl::OkStatus();
    }));
    return rows;
  }

  absl::StatusOr<std::optional<std::string>> GetMeta(const std::string& key) override {
    std::optional<std::string> value;
    PALM_ASSIGN_OR_RETURN(sqlite3_stmt * s, Stmt(kGetMeta));
    StmtScope scope(s);
    BindText(s, 1, key);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      value = ColumnText(s, 0);
      rc = sqlite3_step(s);
    }
    if (rc != SQLITE_DONE) return SqliteStatus(db_, rc, name_ + ": reading meta " + key);
    return value;
  }

  absl::Status PutMeta(const std::string& key, const std::string& value) override {
    PALM_ASSIGN_OR_RETURN(sqlite3_stmt * s, Stmt(kPutMeta));
    StmtScope scope(s);
    BindText(s, 1, key);
    BindText(s, 2, value);
    return Step(s, "writing meta " + key);
  }

  absl::StatusOr<std::vector<EventRow>> ListEvents(int64_t after_seq, size_t limit,
                                                   const std::string& tenant,
                                                   const std::string& deployment,
                                                   bool descending) override {
    std::vector<EventRow> rows;
    PALM_ASSIGN_OR_RETURN(sqlite3_stmt * s, Stmt(descending ? kListEventsDesc : kListEventsAsc));
    StmtScope scope(s);
    sqlite3_bind_int64(s, 1, descending && after_seq == 0 ? INT64_MAX : after_seq);
    sqlite3_bind_int64(s, 2, static_cast<sqlite3_int64>(std::min<size_t>(limit, INT64_MAX)));
    BindText(s, 3, tenant);
    BindText(s, 4, deployment);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      int64_t seq = sqlite3_column_int64(s, 0);
      PALM_ASSIGN_OR_RETURN(Json doc, ParseDoc(s, 3, "events", absl::StrCat(seq)));
      rows.push_back({seq, ColumnText(s, 1), ColumnText(s, 2), std::move(doc)});
    }
    if (rc != SQLITE_DONE) return SqliteStatus(db_, rc, name_ + ": reading events");
    return rows;
  }

  absl::StatusOr<int64_t> LastEventSeq() override {
    PALM_ASSIGN_OR_RETURN(sqlite3_stmt * s, Stmt(kLastEventSeq));
    StmtScope scope(s);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) return SqliteStatus(db_, rc, name_ + ": reading events");
    return static_cast<int64_t>(sqlite3_column_int64(s, 0));
  }

  absl::StatusOr<std::vector<TaskRow>> ListTasks(const TaskQuery& q) override {
    if (q.tenant.empty()) return InvalidArgument("listing tasks: the tenant is required");
    const bool by_dep = !q.deployment.empty(), by_state = !q.state.empty();
    const char* sql =
        by_dep && by_state ? (q.descending ? kListTasksByBothDesc : kListTasksByBothAsc)
        : by_dep           ? (q.descending ? kListTasksByDeploymentDesc : kListTasksByDeploymentAsc)
        : by_state         ? (q.descending ? kListTasksByStateDesc : kListTasksByStateAsc)
                           : (q.descending ? kListTasksDesc : kListTasksAsc);
    PALM_ASSIGN_OR_RETURN(sqlite3_stmt * s, Stmt(sql));
    StmtScope scope(s);
    BindText(s, 1, q.tenant);
    BindText(s, 2, q.deployment);
    BindText(s, 3, q.state);
    int64_t cursor = q.after_seq;
    if (cursor == 0) cursor = q.descending ? INT64_MAX : INT64_MIN;
    sqlite3_bind_int64(s, 4, cursor);
    sqlite3_bind_int64(s, 5, static_cast<sqlite3_int64>(std::min<size_t>(q.limit, INT64_MAX)));
    return ReadTasks(s);
  }

  absl::StatusOr<std::optional<TaskRow>> GetTask(const std::string& tenant,
                                                 const std::string& id) override {
    PALM_ASSIGN_OR_RETURN(sqlite3_stmt * s, Stmt(kGetTask));
    StmtScope scope(s);
    BindText(s, 1, tenant);
    BindText(s, 2, id);
    return ReadOneTask(s);
  }

  absl::StatusOr<std::optional<TaskRow>> FindTaskByIdempotencyKey(const std::string& tenant,
                                                                  const std::string& deployment,
                                                                  const std::string& key) override {
    if (key.empty()) return std::optional<TaskRow>();
    PALM_ASSIGN_OR_RETURN(sqlite3_stmt * s, Stmt(kFindTaskByKey));
    StmtScope scope(s);
    BindText(s, 1, tenant);
    BindText(s, 2, deployment);
    BindText(s, 3, key);
    return ReadOneTask(s);
  }

  absl::StatusOr<std::vector<TaskRow>> ListActiveTasks() override {
    PALM_ASSIGN_OR_RETURN(sqlite3_stmt * s, Stmt(kListActiveTasks));
    StmtScope scope(s);
    return ReadTasks(s);
  }

  absl::StatusOr<int64_t> LastTaskSeq() override {
    PALM_ASSIGN_OR_RETURN(sqlite3_stmt * s, Stmt(kLastTaskSeq));
    StmtScope scope(s);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) return SqliteStatus(db_, rc, name_ + ": reading tasks");
    return static_cast<int64_t>(sqlite3_column_int64(s, 0));
  }

  absl::StatusOr<int64_t> PruneFinishedTasks(int64_t keep) override {
    if (keep < 0) {
      return InvalidArgument(absl::StrCat("pruning tasks: keep must not be negative, got ", keep));
    }
    PALM_RETURN_IF_ERROR(Exec(db_, "BEGIN IMMEDIATE", name_ + ": starting to prune tasks"));
    absl::StatusOr<int64_t> deleted = PruneInTransaction(keep);
    absl::Status st = deleted.status();
    if (st.ok()) st = Exec(db_, "COMMIT", name_ + ": committing pruned tasks");
    if (!st.ok()) {
      if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return st;
    }
    return deleted;
  }

  bool Healthy() override {
    absl::StatusOr<sqlite3_stmt*> s = Stmt(kPing);
    if (!s.ok()) return false;
    StmtScope scope(*s);
    return sqlite3_step(*s) == SQLITE_ROW;
  }

  int SchemaVersion() override { return schema_version_; }

 private:
  absl::Status ApplyInTransaction(const WriteBatch& b) {
    // Deletes first, then puts: a key both deleted and put in one batch ends up put.
    for (const auto& [tenant, id] : b.delete_instances) {
      PALM_RETURN_IF_ERROR(Run(kDeleteInstance, "deleting instance " + id, {tenant, id}));
    }
    for (const auto& [tenant, name] : b.delete_deployments) {
      PALM_RETURN_IF_ERROR(Run(kDeleteDeployment, "deleting deployment " + name, {tenant, name}));
      PALM_RETURN_IF_ERROR(
          Run(kDeleteDeploymentRevisions, "deleting the revisions of " + name, {tenant, name}));
    }
    for (const RevisionRow& r : b.delete_revisions) {
      PALM_RETURN_IF_ERROR(PutOrDeleteRevision(kDeleteRevision, r, nullptr));
    }
    for (const std::string& hash : b.delete_tokens) {
      PALM_RETURN_IF_ERROR(Run(kDeleteToken, "deleting a token", {hash}));
    }
    for (const SpecRow& r : b.put_specs) {
      std::string what = absl::StrCat("spec ", r.name, "@", r.version);
      std::string doc = DocText(r.doc, what);
      PALM_ASSIGN_OR_RETURN(sqlite3_stmt * s, Stmt(kPutSpec));
      StmtScope scope(s);
      BindText(s, 1, r.tenant);
      BindText(s, 2, r.name);
      BindText(s, 3, r.version);
      BindText(s, 4, doc);
      sqlite3_bind_int(s, 5, r.deprecated ? 1 : 0);
      std::string created;
      if (auto it = r.doc.find("created_at"); it != r.doc.end() && it->is_string()) {
        created = it->get<std::string>();
        BindText(s, 6, created);
      }
      PALM_RETURN_IF_ERROR(Step(s, "writing " + what));
    }
    for (const DeploymentRow& r : b.put_deployments) {
      std::string what = "deployment " + r.name;
      std::string doc = DocText(r.doc, what);
      PALM_RETURN_IF_ERROR(Run(kPutDeployment, "writing " + what, {r.tenant, r.name, doc}));
    }
    for (const RevisionRow& r : b.put_revisions) {
      std::string what = absl::StrCat("revision ", r.revision, " of ", r.deployment);
      std::string doc = DocText(r.doc, what);
      PALM_RETURN_IF_ERROR(PutOrDeleteRevision(kPutRevision, r, &doc));
    }
    for (const InstanceRow& r : b.put_instances) {
      std::string what = "instance " + r.id;
      std::string doc = DocText(r.doc, what);
      PALM_RETURN_IF_ERROR(
          Run(kPutInstance, "writing " + what, {r.tenant, r.id, r.deployment, doc}));
    }
    for (const TokenRow& r : b.put_tokens) {
      PALM_RETURN_IF_ERROR(Run(kPutToken, "writing a token",
                               {r.hash, r.tenant, r.role, r.instance_id, r.created_at}));
    }
    if (!b.put_tasks.empty()) {
      // The hot path (group-committed task changes): one cached statement, rebound per row.
      PALM_ASSIGN_OR_RETURN(sqlite3_stmt * put, Stmt(kPutTask));
      PALM_ASSIGN_OR_RETURN(sqlite3_stmt * replace, Stmt(kReplaceTask));
      StmtScope put_scope(put), replace_scope(replace);
      std::string doc;
      for (const TaskRow& r : b.put_tasks) {
        if (!r.doc_text.empty()) {
          doc = r.doc_text;
        } else {
          doc = DocText(r.doc, "task " + r.id);
        }
        for (sqlite3_stmt* s : {put, replace}) {
          sqlite3_reset(s);
          BindText(s, 1, r.tenant);
          BindText(s, 2, r.id);
          BindText(s, 3, r.deployment);
          sqlite3_bind_int64(s, 4, r.seq);
          BindText(s, 5, r.state);
          BindText(s, 6, r.idempotency_key);
          BindText(s, 7, doc);
          PALM_RETURN_IF_ERROR(Step(s, "writing task " + r.id));
          if (sqlite3_changes(db_) > 0) break;
        }
      }
    }
    if (!b.put_deliveries.empty()) {
      PALM_ASSIGN_OR_RETURN(sqlite3_stmt * s, Stmt(kPutDelivery));
      StmtScope scope(s);
      for (const DeliveryRow& r : b.put_deliveries) {
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, r.task_seq);
        sqlite3_bind_int64(s, 2, r.index);
        const std::string what = absl::StrCat("delivery ", r.index, " of task seq ", r.task_seq);
        const std::string doc = r.doc_text.empty() ? DocText(r.doc, what) : std::string();
        BindText(s, 3, r.doc_text.empty() ? doc : r.doc_text);
        PALM_RETURN_IF_ERROR(Step(s, "writing " + what));
      }
    }
    for (const EventRow& r : b.put_events) {
      std::string what = absl::StrCat("event ", r.seq);
      std::string doc = DocText(r.doc, what);
      PALM_ASSIGN_OR_RETURN(sqlite3_stmt * s, Stmt(kPutEvent));
      StmtScope scope(s);
      sqlite3_bind_int64(s, 1, r.seq);
      BindText(s, 2, r.tenant);
      BindText(s, 3, r.deployment);
      BindText(s, 4, doc);
      PALM_RETURN_IF_ERROR(Step(s, "writing " + what));
    }
    if (b.delete_events_through > 0) {
      PALM_ASSIGN_OR_RETURN(sqlite3_stmt * s, Stmt(kDeleteEventsThrough));
      StmtScope scope(s);
      sqlite3_bind_int64(s, 1, b.delete_events_through);
      PALM_RETURN_IF_ERROR(Step(s, "pruning events"));
    }
    return absl::OkStatus();
  }

  // kPutRevision (with `doc`) or kDeleteRevision (without).
  absl::Status PutOrDeleteRevision(const char* sql, const RevisionRow& r, const std::string* doc) {
    PALM_ASSIGN_OR_RETURN(sqlite3_stmt * s, Stmt(sql));
    StmtScope scope(s);
    BindText(s, 1, r.tenant);
    BindText(s, 2, r.deployment);
    sqlite3_bind_int64(s, 3, r.revision);
    if (doc != nullptr) BindText(s, 4, *doc);
    return Step(s, absl::StrCat(doc != nullptr ? "writing" : "deleting", " revision ", r.revision,
                                " of ", r.deployment));
  }

  absl::StatusOr<int64_t> PruneInTransaction(int64_t keep) {
    int64_t cutoff = 0;
    {
      PALM_ASSIGN_OR_RETURN(sqlite3_stmt * s, Stmt(kPruneCutoff));
      StmtScope scope(s);
      sqlite3_bind_int64(s, 1, keep);
      int rc = sqlite3_step(s);
      if (rc == SQLITE_DONE) return 0;  // at most `keep` finished tasks
      if (rc != SQLITE_ROW) return SqliteStatus(db_, rc, name_ + ": reading tasks to prune");
      cutoff = sqlite3_column_int64(s, 0);
    }
    {
      PALM_ASSIGN_OR_RETURN(sqlite3_stmt * s, Stmt(kPruneDeliveries));
      StmtScope scope(s);
      sqlite3_bind_int64(s, 1, cutoff);
      PALM_RETURN_IF_ERROR(Step(s, "pruning task deliveries"));
    }
    PALM_ASSIGN_OR_RETURN(sqlite3_stmt * del, Stmt(kPruneTasks));
    {
      StmtScope scope(del);
      sqlite3_bind_int64(del, 1, cutoff);
      PALM_RETURN_IF_ERROR(Step(del, "pruning tasks"));
    }
    const int64_t deleted = sqlite3_changes64(db_);
    PALM_ASSIGN_OR_RETURN(sqlite3_stmt * mark, Stmt(kPutPrunedThrough));
    StmtScope scope(mark);
    sqlite3_bind_int64(mark, 1, cutoff);
    PALM_RETURN_IF_ERROR(Step(mark, "pruning tasks"));
    return deleted;
  }

  // Reads (tenant, id, deployment, seq, state, idempotency_key, doc) rows to the end.
  absl::StatusOr<std::vector<TaskRow>> ReadTasks(sqlite3_stmt* s) {
    std::vector<TaskRow> rows;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      PALM_ASSIGN_OR_RETURN(TaskRow r, TaskFromRow(s));
      rows.push_back(std::move(r));
    }
    if (rc != SQLITE_DONE) return SqliteStatus(db_, rc, name_ + ": reading tasks");
    return rows;
  }

  absl::StatusOr<std::optional<TaskRow>> ReadOneTask(sqlite3_stmt* s) {
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) return std::optional<TaskRow>();
    if (rc != SQLITE_ROW) return SqliteStatus(db_, rc, name_ + ": reading tasks");
    PALM_ASSIGN_OR_RETURN(TaskRow r, TaskFromRow(s));
    return std::optional<TaskRow>(std::move(r));
  }

  absl::StatusOr<TaskRow> TaskFromRow(sqlite3_stmt* s) {
    TaskRow r;
    r.tenant = ColumnText(s, 0);
    r.id = ColumnText(s, 1);
    r.deployment = ColumnText(s, 2);
    r.seq = sqlite3_column_int64(s, 3);
    r.state = ColumnText(s, 4);
    r.idempotency_key = ColumnText(s, 5);
    PALM_ASSIGN_OR_RETURN(r.doc, ParseDoc(s, 6, "tasks", r.tenant + "/" + r.id));
    if (auto rows = r.doc.find("delivery_rows"); rows != r.doc.end()) {
      PALM_RETURN_IF_ERROR(AssembleDeliveries(r));
    }
    return r;
  }

  // Replaces the document's "delivery_rows": N with "deliveries": the N rows of
  // task_deliveries, in index order.
  absl::Status AssembleDeliveries(TaskRow& r) {
    const std::string key = r.tenant + "/" + r.id;
    auto corrupt = [&](const std::string& why) {
      return Error(absl::StatusCode::kDataLoss, "STORE_CORRUPT",
                   absl::StrCat(name_, ": tasks row ", key, ": ", why),
                   "restore the data dir from a backup (palm restore)");
    };
    const Json& n = r.doc["delivery_rows"];
    if (!n.is_number_integer() || n.get<int64_t>() < 0) {
      return corrupt("delivery_rows is not a count");
    }
    const int64_t count = n.get<int64_t>();
    Json list = Json::array();
    PALM_ASSIGN_OR_RETURN(sqlite3_stmt * s, Stmt(kListDeliveries));
    StmtScope scope(s);
    sqlite3_bind_int64(s, 1, r.seq);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      const int64_t idx = sqlite3_column_int64(s, 0);
      if (idx != static_cast<int64_t>(list.size())) break;  // a gap: reported below
      PALM_ASSIGN_OR_RETURN(Json d,
                            ParseDoc(s, 1, "task_deliveries", absl::StrCat(key, "#", idx)));
      list.push_back(std::move(d));
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
      return SqliteStatus(db_, rc, name_ + ": reading the deliveries of task " + r.id);
    }
    if (static_cast<int64_t>(list.size()) != count) {
      return corrupt(absl::StrCat("has ", count, " delivery rows, found ", list.size(),
                                  " in order"));
    }
    r.doc.erase("delivery_rows");
    r.doc["deliveries"] = std::move(list);
    return absl::OkStatus();
  }

  absl::StatusOr<sqlite3_stmt*> Stmt(const char* sql) {
    auto it = stmts_.find(sql);
    if (it != stmts_.end()) return it->second;
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) return SqliteStatus(db_, rc, name_ + ": preparing a statement");
    stmts_.emplace(sql, s);
    return s;
  }

  absl::Status Step(sqlite3_stmt* s, const std::string& what) {
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return SqliteStatus(db_, rc, name_ + ": " + what);
    return absl::OkStatus();
  }

  // Binds `args` as text parameters 1..n and runs the statement to completion.
  absl::Status Run(const char* sql, const std::string& what,
                   std::initializer_list<std::string> args) {
    PALM_ASSIGN_OR_RETURN(sqlite3_stmt * s, Stmt(sql));
    StmtScope scope(s);
    int i = 1;
    for (const std::string& a : args) BindText(s, i++, a);
    return Step(s, what);
  }

  template <typename F>
  absl::Status Query(const char* sql, std::string_view table, F on_row) {
    PALM_ASSIGN_OR_RETURN(sqlite3_stmt * s, Stmt(sql));
    StmtScope scope(s);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) PALM_RETURN_IF_ERROR(on_row(s));
    if (rc != SQLITE_DONE) {
      return SqliteStatus(db_, rc, absl::StrCat(name_, ": reading ", std::string(table)));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Json> ParseDoc(sqlite3_stmt* s, int col, std::string_view table,
                                const std::string& key) {
    std::string text = ColumnText(s, col);
    Json doc = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) {
      return Error(absl::StatusCode::kDataLoss, "STORE_CORRUPT",
                   absl::StrCat(name_, ": ", std::string(table), " row ", key,
                                ": doc is not valid JSON"),
                   "restore the data dir from a backup (palm restore)");
    }
    return doc;
  }

  sqlite3* db_;
  std::string name_;  // the file's base name, for messages
  int schema_version_ = 0;
  std::map<const char*, sqlite3_stmt*> stmts_;  // keyed by the statement constants above
};

// Refuses SQLite files that belong to someone else before anything is written to them.
absl::Status CheckOwnership(sqlite3* db, const std::string& name) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(db,
                              "SELECT (SELECT application_id FROM pragma_application_id), "
                              "(SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                              "name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations'), "
                              "(SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                              "name = 'schema_migrations')",
                              -1, &s, nullptr);
  if (rc != SQLITE_OK) return SqliteStatus(db, rc, name + ": reading the file");
  rc = sqlite3_step(s);
  if (rc != SQLITE_ROW) {
    sqlite3_finalize(s);
    return SqliteStatus(db, rc, name + ": reading the file");
  }
  int64_t app_id = sqlite3_column_int64(s, 0);
  int64_t tables = sqlite3_column_int64(s, 1);
  bool has_migrations = sqlite3_column_int64(s, 2) > 0;
  sqlite3_finalize(s);
  if ((app_id != 0 && app_id != kApplicationId) || (app_id == 0 && tables > 0 && !has_migrations)) {
    return Error(absl::StatusCode::kFailedPrecondition, "STORE_INVALID",
                 absl::StrCat(name, ": is a SQLite database but not a palm store"),
                 "check --data-dir; palm keeps its state in <data-dir>/palm.db");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> PragmaText(sqlite3* db, const std::string& sql, const std::string& name) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr);
  if (rc != SQLITE_OK) return SqliteStatus(db, rc, name + ": " + sql);
  rc = sqlite3_step(s);
  std::string value = rc == SQLITE_ROW ? ColumnText(s, 0) : "";
  sqlite3_finalize(s);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqliteStatus(db, rc, name + ": " + sql);
  return value;
}

absl::StatusOr<int> Setup(sqlite3* db, const std::string& name) {
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, 5000);
  PALM_RETURN_IF_ERROR(CheckOwnership(db, name));
  PALM_ASSIGN_OR_RETURN(std::string mode, PragmaText(db, "PRAGMA journal_mode = WAL", name));
  if (mode != "wal") {
    return Error(absl::StatusCode::kFailedPrecondition, "STORE_INVALID",
                 absl::StrCat(name, ": cannot use write-ahead logging (journal_mode is ", mode, ")"),
                 "put the data dir on a local file system");
  }
  PALM_RETURN_IF_ERROR(Exec(db, "PRAGMA synchronous = FULL", name + ": PRAGMA synchronous"));
  PALM_RETURN_IF_ERROR(Exec(db, "PRAGMA foreign_keys = ON", name + ": PRAGMA foreign_keys"));
  PALM_RETURN_IF_ERROR(Exec(db, "PRAGMA busy_timeout = 5000", name + ": PRAGMA busy_timeout"));
  PALM_ASSIGN_OR_RETURN(int version, Migrate(db, name));
  PALM_RETURN_IF_ERROR(Exec(db, absl::StrCat("PRAGMA application_id = ", kApplicationId),
                            name + ": PRAGMA application_id"));
  return version;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path) {
  const std::string name = Basename(path);
  // Token hashes and agent configs live here: a new store is private to the daemon's user
  // (SQLite gives the -wal and -shm files the database file's mode).
  if (int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600); fd >= 0) {
    ::close(fd);
  }
  sqlite3* db = nullptr;
  // One thread uses a Store at a time (see store.h), so SQLite's own mutexes are not needed.
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s = SqliteStatus(db, rc, absl::StrCat(path, ": cannot open"));
    sqlite3_close_v2(db);
    return s;
  }
  absl::StatusOr<int> version = Setup(db, name);
  if (!version.ok()) {
    sqlite3_close_v2(db);
    return version.status();
  }
  auto store = std::make_unique<SqliteStore>(db, name);
  PALM_RETURN_IF_ERROR(store->Init(*version));
  return store;
}

}  // namespace palm::store
