#include "palm/store/migrations.h"

#include <sqlite3.h>

#include "absl/strings/str_cat.h"
#include "palm/base/error.h"
#include "palm/store/sqlite_util.h"

namespace palm::store {
namespace {

using internal::Exec;
using internal::SqliteStatus;

constexpr std::string_view kV1 = R"sql(
CREATE TABLE specs (
  tenant     TEXT NOT NULL CHECK (tenant <> ''),
  name       TEXT NOT NULL CHECK (name <> ''),
  version    TEXT NOT NULL CHECK (version <> ''),
  doc        TEXT NOT NULL,
  deprecated INTEGER NOT NULL DEFAULT 0 CHECK (deprecated IN (0, 1)),
  created_at TEXT NOT NULL,
  PRIMARY KEY (tenant, name, version)
);
CREATE TABLE deployments (
  tenant TEXT NOT NULL CHECK (tenant <> ''),
  name   TEXT NOT NULL CHECK (name <> ''),
  doc    TEXT NOT NULL,
  PRIMARY KEY (tenant, name)
);
CREATE TABLE instances (
  tenant     TEXT NOT NULL CHECK (tenant <> ''),
  id         TEXT NOT NULL CHECK (id <> ''),
  deployment TEXT NOT NULL CHECK (deployment <> ''),
  doc        TEXT NOT NULL,
  PRIMARY KEY (tenant, id)
);
CREATE INDEX instances_by_deployment ON instances (tenant, deployment);
CREATE TABLE tokens (
  hash        TEXT PRIMARY KEY CHECK (hash <> ''),
  tenant      TEXT NOT NULL CHECK (tenant <> ''),
  role        TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer', 'instance')),
  instance_id TEXT NOT NULL DEFAULT '' CHECK (role <> 'instance' OR instance_id <> ''),
  created_at  TEXT NOT NULL
);
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
)sql";

// Events (Kubernetes-style, DESIGN.md section 3): an append-only log with a retention bound.
constexpr std::string_view kV2 = R"sql(
CREATE TABLE events (
  seq        INTEGER PRIMARY KEY,
  tenant     TEXT NOT NULL CHECK (tenant <> ''),
  deployment TEXT NOT NULL DEFAULT '',
  doc        TEXT NOT NULL
);
CREATE INDEX events_by_deployment ON events (tenant, deployment, seq);
)sql";

// Tasks (DESIGN.md section 3, Task). `seq` is the creation order and the listing cursor; the
// partial indexes keep the engine's reload (active tasks) and retention (finished tasks)
// from scanning the whole table. The state CHECK is a chain of ORs on purpose: SQLite
// evaluates an IN list of more than two constants through a temporary b-tree built on every
// row written, which tripled the cost of a task write.
constexpr std::string_view kV3 = R"sql(
CREATE TABLE tasks (
  tenant          TEXT NOT NULL CHECK (tenant <> ''),
  id              TEXT NOT NULL CHECK (id <> ''),
  deployment      TEXT NOT NULL CHECK (deployment <> ''),
  seq             INTEGER NOT NULL UNIQUE,
  state           TEXT NOT NULL CHECK (state = 'Queued' OR state = 'Assigned' OR
                                       state = 'Succeeded' OR state = 'Failed' OR
                                       state = 'TimedOut' OR state = 'Cancelled'),
  idempotency_key TEXT NOT NULL DEFAULT '',
  doc             TEXT NOT NULL,
  PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX tasks_by_idempotency_key ON tasks (tenant, deployment, idempotency_key)
  WHERE idempotency_key <> '';
CREATE INDEX tasks_by_tenant ON tasks (tenant, seq);
CREATE INDEX tasks_by_deployment ON tasks (tenant, deployment, seq);
CREATE INDEX tasks_by_state ON tasks (tenant, state, seq);
CREATE INDEX tasks_active ON tasks (seq) WHERE state IN ('Queued', 'Assigned');
CREATE INDEX tasks_finished ON tasks (seq) WHERE state NOT IN ('Queued', 'Assigned');
)sql";

// Revisions (DESIGN.md section 3, Deployment): each deployment's pod-template history, one
// row per revision. Listed by primary key; deleting a deployment deletes its revisions.
constexpr std::string_view kV4 = R"sql(
CREATE TABLE revisions (
  tenant     TEXT NOT NULL CHECK (tenant <> ''),
  deployment TEXT NOT NULL CHECK (deployment <> ''),
  revision   INTEGER NOT NULL CHECK (revision > 0),
  doc        TEXT NOT NULL,
  PRIMARY KEY (tenant, deployment, revision)
);
)sql";

// Deliveries in rows of their own: a broadcast task's deliveries are kept here (the task's
// document says "delivery_rows": N instead of listing them), so a delivery's result rewrites
// that delivery's row, not a document holding every delivery. Keyed by the task's seq
// (unique); retention deletes them with their task.
constexpr std::string_view kV5 = R"sql(
CREATE TABLE task_deliveries (
  task_seq INTEGER NOT NULL,
  idx      INTEGER NOT NULL CHECK (idx >= 0),
  doc      TEXT NOT NULL,
  PRIMARY KEY (task_seq, idx)
) WITHOUT ROWID;
)sql";

absl::StatusOr<int> CurrentVersion(sqlite3* db, std::string_view name) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", -1,
                              &stmt, nullptr);
  if (rc != SQLITE_OK) return SqliteStatus(db, rc, absl::StrCat(std::string(name), ": reading the schema version"));
  rc = sqlite3_step(stmt);
  int version = rc == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : 0;
  sqlite3_finalize(stmt);
  if (rc != SQLITE_ROW) return SqliteStatus(db, rc, absl::StrCat(std::string(name), ": reading the schema version"));
  return version;
}

}  // namespace

const std::vector<Migration>& Migrations() {
  static const auto* steps = new std::vector<Migration>{
      {1, "specs, deployments, instances, tokens, meta", kV1},
      {2, "events", kV2},
      {3, "tasks", kV3},
      {4, "revisions", kV4},
      {5, "task_deliveries", kV5},
  };
  return *steps;
}

int LatestSchemaVersion() { return Migrations().back().version; }

absl::StatusOr<int> Migrate(sqlite3* db, std::string_view name, const std::vector<Migration>& steps) {
  const std::string file(name);
  const int latest = steps.empty() ? 0 : steps.back().version;
  while (true) {
    // IMMEDIATE takes the write lock before reading the version, so two daemons opening a
    // fresh store at once apply each step exactly once.
    PALM_RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE", file + ": starting a migration"));
    auto rollback = [&](absl::Status st) {
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      return st;
    };
    absl::Status st = Exec(db,
                           "CREATE TABLE IF NOT EXISTS schema_migrations ("
                           "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
                           file + ": creating schema_migrations");
    if (!st.ok()) return rollback(st);
    absl::StatusOr<int> current = CurrentVersion(db, name);
    if (!current.ok()) return rollback(current.status());
    if (*current > latest) {
      return rollback(Error(
          absl::StatusCode::kFailedPrecondition, "STORE_TOO_NEW",
          absl::StrCat(file, " has schema version ", *current, " but this palm knows up to ",
                       latest, ": upgrade palm"),
          "a newer palm wrote this data dir; run that version (or newer), or restore a backup "
          "made by this one"));
    }
    if (*current == latest) {
      st = Exec(db, "COMMIT", file + ": committing");
      if (!st.ok()) return rollback(st);
      return latest;
    }
    const Migration* next = nullptr;
    for (const Migration& m : steps) {
      if (m.version == *current + 1) next = &m;
    }
    if (next == nullptr) {
      return rollback(Error(absl::StatusCode::kInternal, "INTERNAL",
                            absl::StrCat(file, ": no migration step to version ", *current + 1)));
    }
    std::string context = absl::StrCat(file, ": migration ", next->version, " (",
                                       std::string(next->description), ")");
    st = Exec(db, next->sql, context);
    if (st.ok()) {
      st = Exec(db,
                absl::StrCat("INSERT INTO schema_migrations (version, applied_at) VALUES (",
                             next->version, ", strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"),
                context);
    }
    if (st.ok()) st = Exec(db, "COMMIT", context);
    if (!st.ok()) return rollback(st);
  }
}

}  // namespace palm::store
