// Internal to palm_store: SQLite result codes -> absl::Status, and small RAII helpers.
#pragma once

#include <sqlite3.h>

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "palm/base/error.h"

namespace palm::store::internal {

// The status for a failed SQLite call: "<context>: <sqlite message>". Locks and I/O are
// kUnavailable (retry or fix the disk), a file that is not a database kFailedPrecondition,
// corruption kDataLoss, constraint violations kInvalidArgument (the caller's rows were bad).
inline absl::Status SqliteStatus(sqlite3* db, int rc, std::string_view context) {
  std::string detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string message = absl::StrCat(std::string(context), ": ", detail);
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Error(absl::StatusCode::kUnavailable, "STORE_UNAVAILABLE", message,
                   "another process holds the database; is a second palm daemon running on "
                   "this data dir?");
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_AUTH:
      return Error(absl::StatusCode::kUnavailable, "STORE_UNAVAILABLE", message,
                   "check that the data dir exists, is writable and its disk is not full");
    case SQLITE_NOTADB:
      return Error(absl::StatusCode::kFailedPrecondition, "STORE_INVALID", message,
                   "the file is not a SQLite database: check --data-dir, or move the file "
                   "away so palm can create a new store");
    case SQLITE_CORRUPT:
      return Error(absl::StatusCode::kDataLoss, "STORE_CORRUPT", message,
                   "restore the data dir from a backup (palm restore)");
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
      return InvalidArgument(message);
    default:
      return Error(absl::StatusCode::kInternal, "INTERNAL", message);
  }
}

// Runs `sql` (one or more statements, no results).
inline absl::Status Exec(sqlite3* db, std::string_view sql, std::string_view context) {
  std::string text(sql);
  int rc = sqlite3_exec(db, text.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return SqliteStatus(db, rc, context);
  return absl::OkStatus();
}

// Resets a (cached) statement and its bindings when the scope ends.
class StmtScope {
 public:
  explicit StmtScope(sqlite3_stmt* s) : s_(s) {}
  ~StmtScope() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  StmtScope(const StmtScope&) = delete;
  StmtScope& operator=(const StmtScope&) = delete;

 private:
  sqlite3_stmt* s_;
};

}  // namespace palm::store::internal
