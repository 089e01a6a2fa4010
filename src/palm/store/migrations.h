// Schema migrations of the SQLite store: an ordered list of SQL steps, applied by Open().
//
// Each step runs in its own IMMEDIATE transaction together with its row in
// schema_migrations(version, applied_at), so a crash leaves the schema at a whole step.
// Steps are append-only: a released step is never edited, a fix is a new step.
// docs/formats/store.md describes the resulting schema. Not thread-safe (takes the handle).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

struct sqlite3;

namespace palm::store {

struct Migration {
  int version;                   // 1, 2, 3, ... without gaps
  std::string_view description;  // one line, for humans
  std::string_view sql;          // one or more statements; no BEGIN/COMMIT
};

// `PRAGMA application_id` of a palm store ("palm" in ASCII).
inline constexpr int32_t kApplicationId = 0x70616c6d;

// The steps, ordered by version.
const std::vector<Migration>& Migrations();
// The highest version this binary knows.
int LatestSchemaVersion();

// Brings `db` up to the last of `steps` and returns the resulting version. `name` names the
// file in messages ("palm.db"). Fails with kFailedPrecondition when the database records a
// version newer than the last step (nothing is changed then), kUnavailable when it is locked
// or cannot be written; a failed step is rolled back and earlier steps stay applied.
absl::StatusOr<int> Migrate(sqlite3* db, std::string_view name,
                            const std::vector<Migration>& steps = Migrations());

}  // namespace palm::store
