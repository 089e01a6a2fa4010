#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palm/base/error.h"
#include "palm/store/migrations.h"
#include "palm/store/store.h"

namespace palm::store {
namespace {

using ::testing::HasSubstr;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "palm-store-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/palm.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Store> Open() {
    absl::StatusOr<std::unique_ptr<Store>> s = OpenSqliteStore(path_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  // Runs `sql` on a separate raw connection and returns the first column of the first row.
  std::string Query(const std::string& sql) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0) != nullptr) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    } else {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return out;
  }

  void ExecRaw(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << err;
    sqlite3_free(err);
    sqlite3_close(db);
  }

  std::string dir_, path_;
};

Json InstanceDoc(const std::string& id, int n) {
  return {{"id", id},
          {"deployment", "buyer"},
          {"state", "Running"},
          {"pid", 1000 + n},
          {"ports", {{"http", 40000 + n}}},
          {"metrics", {{"orders", n}}},
          {"log_path", "/data/logs/" + id + ".log"},
          {"created_at", "2027-01-15T08:00:00.000Z"}};
}

WriteBatch Everything() {
  WriteBatch b;
  b.put_specs.push_back({"default", "buyer", "1.2.0",
                         {{"name", "buyer"}, {"version", "1.2.0"},
                          {"created_at", "2027-01-15T08:00:00.123Z"}},
                         false});
  b.put_specs.push_back({"acme", "buyer", "2.0.0", {{"name", "buyer"}}, true});
  b.put_deployments.push_back({"default", "fleet", {{"name", "fleet"}, {"replicas", 2}}});
  b.put_instances.push_back({"default", "fleet-001", "fleet", InstanceDoc("fleet-001", 1)});
  b.put_instances.push_back({"default", "fleet-002", "fleet", InstanceDoc("fleet-002", 2)});
  b.put_tokens.push_back({"aa11", "default", "admin", "", "2027-01-15T08:00:00.000Z"});
  b.put_tokens.push_back({"bb22", "default", "instance", "fleet-001", ""});
  return b;
}

void ExpectEverything(Store& s) {
  auto specs = s.ListSpecs();
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 2u);
  EXPECT_EQ((*specs)[0].tenant, "default");
  EXPECT_EQ((*specs)[0].name, "buyer");
  EXPECT_EQ((*specs)[0].version, "1.2.0");
  EXPECT_EQ((*specs)[0].doc["created_at"], "2027-01-15T08:00:00.123Z");
  EXPECT_FALSE((*specs)[0].deprecated);
  EXPECT_EQ((*specs)[1].tenant, "acme");
  EXPECT_TRUE((*specs)[1].deprecated);

  auto deps = s.ListDeployments();
  ASSERT_TRUE(deps.ok());
  ASSERT_EQ(deps->size(), 1u);
  EXPECT_EQ((*deps)[0].doc, Json({{"name", "fleet"}, {"replicas", 2}}));

  auto insts = s.ListInstances();
  ASSERT_TRUE(insts.ok());
  ASSERT_EQ(insts->size(), 2u);
  EXPECT_EQ((*insts)[0].id, "fleet-001");
  EXPECT_EQ((*insts)[0].deployment, "fleet");
  EXPECT_EQ((*insts)[0].doc, InstanceDoc("fleet-001", 1));
  EXPECT_EQ((*insts)[1].doc, InstanceDoc("fleet-002", 2));

  auto tokens = s.ListTokens();
  ASSERT_TRUE(tokens.ok());
  ASSERT_EQ(tokens->size(), 2u);
  EXPECT_EQ((*tokens)[0].hash, "aa11");
  EXPECT_EQ((*tokens)[0].role, "admin");
  EXPECT_EQ((*tokens)[0].created_at, "2027-01-15T08:00:00.000Z");
  EXPECT_EQ((*tokens)[1].instance_id, "fleet-001");
  EXPECT_FALSE((*tokens)[1].created_at.empty()) << "filled with the write time";
}

TEST_F(StoreTest, MigratesFromEmpty) {
  auto s = Open();
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->SchemaVersion(), LatestSchemaVersion());
  EXPECT_EQ(LatestSchemaVersion(), 2);
  EXPECT_TRUE(s->Healthy());
  EXPECT_EQ(Query("SELECT count(*) FROM schema_migrations"), "2");
  EXPECT_THAT(Query("SELECT applied_at FROM schema_migrations WHERE version = 1"),
              HasSubstr("T"));
  EXPECT_EQ(Query("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(Query("PRAGMA application_id"), std::to_string(kApplicationId));
  EXPECT_EQ(Query("SELECT count(*) FROM sqlite_master WHERE name IN "
                  "('specs','deployments','instances','tokens','meta',"
                  "'instances_by_deployment')"),
            "6");
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((path_ + "-wal").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the WAL holds the same data";
  auto empty = s->ListInstances();
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST_F(StoreTest, MigrationStepsAreVersionedWithoutGaps) {
  int expected = 1;
  for (const Migration& m : Migrations()) {
    EXPECT_EQ(m.version, expected++);
    EXPECT_FALSE(m.description.empty());
  }
}

TEST_F(StoreTest, ReopenKeepsDataAndSchemaVersion) {
  {
    auto s = Open();
    ASSERT_TRUE(s->Apply(Everything()).ok());
    ASSERT_TRUE(s->PutMeta("admin_token_hash", "abc").ok());
  }
  auto s = Open();
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->SchemaVersion(), LatestSchemaVersion());
  EXPECT_EQ(Query("SELECT count(*) FROM schema_migrations"), "2");
  ExpectEverything(*s);
  EXPECT_EQ(*s->GetMeta("admin_token_hash"), "abc");
}

TEST_F(StoreTest, RefusesADatabaseFromANewerPalm) {
  { Open(); }
  ExecRaw("INSERT INTO schema_migrations (version, applied_at) VALUES (7, 'x')");
  absl::StatusOr<std::unique_ptr<Store>> s = OpenSqliteStore(path_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.status().message(),
            "palm.db has schema version 7 but this palm knows up to 2: upgrade palm");
  EXPECT_EQ(ErrorCode(s.status()), "STORE_TOO_NEW");
  EXPECT_EQ(Query("SELECT max(version) FROM schema_migrations"), "7") << "left untouched";
}

TEST_F(StoreTest, AFailedMigrationStepIsRolledBack) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  std::vector<Migration> steps = {Migrations()[0]};
  steps.push_back({2, "broken", "CREATE TABLE half (x); INSERT INTO nowhere VALUES (1);"});
  absl::StatusOr<int> v = Migrate(db, "palm.db", steps);
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(std::string(v.status().message()),
              HasSubstr("palm.db: migration 2 (broken): no such table: nowhere"));
  sqlite3_close(db);
  EXPECT_EQ(Query("SELECT max(version) FROM schema_migrations"), "1");
  EXPECT_EQ(Query("SELECT count(*) FROM sqlite_master WHERE name = 'half'"), "0");
  // The real store opens it fine afterwards.
  auto s = Open();
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->SchemaVersion(), LatestSchemaVersion());
}

TEST_F(StoreTest, EventsAreListedInOrderWithFiltersAndPruned) {
  auto s = Open();
  WriteBatch b;
  for (int i = 1; i <= 5; ++i) {
    b.put_events.push_back({i, i == 3 ? "acme" : "default", i % 2 ? "web" : "",
                            Json{{"seq", i}, {"kind", "InstanceStarted"}}});
  }
  ASSERT_TRUE(s->Apply(b).ok());
  EXPECT_EQ(*s->LastEventSeq(), 5);
  auto all = s->ListEvents(0, 100, "", "");
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 5u);
  EXPECT_EQ((*all)[4].doc["seq"], 5);
  auto web = s->ListEvents(1, 100, "default", "web");
  ASSERT_EQ(web->size(), 1u);  // seq 5 (3 is another tenant's, 1 is not after 1)
  EXPECT_EQ((*web)[0].seq, 5);
  EXPECT_EQ(s->ListEvents(0, 2, "", "")->size(), 2u);
  WriteBatch prune;
  prune.delete_events_through = 3;
  ASSERT_TRUE(s->Apply(prune).ok());
  EXPECT_EQ(s->ListEvents(0, 100, "", "")->front().seq, 4);
  EXPECT_EQ(*s->LastEventSeq(), 5);
  WriteBatch dup;
  dup.put_events.push_back({5, "default", "", Json::object()});
  EXPECT_FALSE(s->Apply(dup).ok()) << "a seq is written once";
}

TEST_F(StoreTest, ApplyIsAllOrNothing) {
  auto s = Open();
  WriteBatch first;
  first.put_deployments.push_back({"default", "fleet", {{"replicas", 1}}});
  ASSERT_TRUE(s->Apply(first).ok());

  const std::pair<std::string, std::function<void(WriteBatch&)>> breakers[] = {
      {"writing a token", [](WriteBatch& b) { b.put_tokens.push_back({"cc", "default", "god", "", ""}); }},
      {"writing instance", [](WriteBatch& b) { b.put_instances.push_back({"default", "", "fleet", {}}); }},
      {"writing a token",
       [](WriteBatch& b) { b.put_tokens.push_back({"dd", "default", "instance", "", ""}); }},
      {"document cannot be stored",
       [](WriteBatch& b) {
         b.put_instances.push_back({"default", "x-001", "x", {{"bad", "\xff\xfe"}}});
       }},
  };
  for (const auto& [want, brk] : breakers) {
    WriteBatch b = Everything();
    b.put_deployments.push_back({"default", "fleet", {{"replicas", 99}}});  // an update
    b.delete_instances.push_back({"default", "nothing-here"});
    brk(b);
    absl::Status st = s->Apply(b);
    ASSERT_FALSE(st.ok()) << want;
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr(want));
    EXPECT_TRUE(s->ListSpecs()->empty());
    EXPECT_TRUE(s->ListInstances()->empty());
    EXPECT_TRUE(s->ListTokens()->empty());
    auto deps = s->ListDeployments();
    ASSERT_EQ(deps->size(), 1u);
    EXPECT_EQ((*deps)[0].doc["replicas"], 1) << "the update was rolled back";
  }
  // The store is still usable after failed batches.
  ASSERT_TRUE(s->Apply(Everything()).ok());
  ExpectEverything(*s);
}

TEST_F(StoreTest, PutsUpsertDeletesRemoveAndOrderIsCreationOrder) {
  auto s = Open();
  ASSERT_TRUE(s->Apply(Everything()).ok());
  EXPECT_TRUE(s->Apply(WriteBatch()).ok());

  WriteBatch b;
  b.put_instances.push_back({"default", "fleet-003", "fleet", InstanceDoc("fleet-003", 3)});
  Json updated = InstanceDoc("fleet-001", 1);
  updated["state"] = "Stopped";
  b.put_instances.push_back({"default", "fleet-001", "fleet", updated});
  b.delete_instances.push_back({"default", "fleet-002"});
  b.put_specs.push_back({"default", "buyer", "1.2.0", {{"name", "buyer"}}, true});  // deprecate
  b.delete_tokens.push_back("aa11");
  ASSERT_TRUE(s->Apply(b).ok());

  auto insts = *s->ListInstances();
  ASSERT_EQ(insts.size(), 2u);
  EXPECT_EQ(insts[0].id, "fleet-001") << "an update keeps its place";
  EXPECT_EQ(insts[0].doc["state"], "Stopped");
  EXPECT_EQ(insts[1].id, "fleet-003");
  auto specs = *s->ListSpecs();
  ASSERT_EQ(specs.size(), 2u);
  EXPECT_TRUE(specs[0].deprecated);
  EXPECT_EQ(Query("SELECT created_at FROM specs WHERE version = '1.2.0'"),
            "2027-01-15T08:00:00.123Z")
      << "created_at is kept by updates";
  EXPECT_EQ(s->ListTokens()->size(), 1u);

  // Deleting a deployment leaves its instances: the caller lists them.
  WriteBatch del;
  del.delete_deployments.push_back({"default", "fleet"});
  ASSERT_TRUE(s->Apply(del).ok());
  EXPECT_TRUE(s->ListDeployments()->empty());
  EXPECT_EQ(s->ListInstances()->size(), 2u);
  // Same key in two tenants are two rows.
  WriteBatch tenants;
  tenants.put_deployments.push_back({"a", "fleet", {{"t", "a"}}});
  tenants.put_deployments.push_back({"b", "fleet", {{"t", "b"}}});
  ASSERT_TRUE(s->Apply(tenants).ok());
  EXPECT_EQ(s->ListDeployments()->size(), 2u);
}

TEST_F(StoreTest, Meta) {
  auto s = Open();
  auto missing = s->GetMeta("nope");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
  ASSERT_TRUE(s->PutMeta("k", "v1").ok());
  ASSERT_TRUE(s->PutMeta("k", "v2").ok());
  ASSERT_TRUE(s->PutMeta("empty", "").ok());
  EXPECT_EQ(**s->GetMeta("k"), "v2");
  EXPECT_EQ(**s->GetMeta("empty"), "");
}

TEST_F(StoreTest, RefusesAFileThatIsNotADatabase) {
  std::string garbage(8192, 'x');
  garbage.replace(0, 30, "this is not a database at all");
  { std::ofstream(path_, std::ios::binary) << garbage; }
  absl::StatusOr<std::unique_ptr<Store>> s = OpenSqliteStore(path_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("palm.db"));
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("not a database"));
  EXPECT_THAT(ErrorHint(s.status()), HasSubstr("--data-dir"));
  std::ifstream in(path_, std::ios::binary);
  std::string after((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(after, garbage) << "the file is left as it was";
}

TEST_F(StoreTest, RefusesSomeoneElsesSqliteDatabase) {
  ExecRaw("CREATE TABLE photos (id INTEGER PRIMARY KEY)");
  absl::StatusOr<std::unique_ptr<Store>> s = OpenSqliteStore(path_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.status().message(), "palm.db: is a SQLite database but not a palm store");
  EXPECT_EQ(Query("SELECT count(*) FROM sqlite_master"), "1") << "nothing was added";
}

TEST_F(StoreTest, UnopenablePathIsUnavailable) {
  absl::StatusOr<std::unique_ptr<Store>> s = OpenSqliteStore(dir_ + "/missing/dir/palm.db");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("cannot open"));
}

TEST_F(StoreTest, TwoStoresOnOneFileSeeEachOthersWrites) {
  auto a = Open();
  auto b = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(a->Apply(Everything()).ok());
  ExpectEverything(*b);
}

TEST_F(StoreTest, AThousandInstancesInOneBatch) {
  auto s = Open();
  WriteBatch b;
  for (int i = 1; i <= 1000; ++i) {
    char id[32];
    snprintf(id, sizeof id, "fleet-%03d", i);
    Json doc = InstanceDoc(id, i);
    doc["token_hash"] = std::string(64, 'f');
    doc["health"] = {{"status", "Unknown"}, {"reason", nullptr}, {"since", "2027-01-15T08:00:00.000Z"}};
    b.put_instances.push_back({"default", id, "fleet", std::move(doc)});
  }
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(s->Apply(b).ok());
  auto insert_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  start = std::chrono::steady_clock::now();
  ASSERT_TRUE(s->Apply(b).ok());  // the same rows again: 1000 updates
  auto update_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  start = std::chrono::steady_clock::now();
  auto rows = s->ListInstances();
  auto list_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1000u);
  EXPECT_EQ(rows->back().id, "fleet-1000");
  std::cout << "[ perf ] 1000 put_instances in one Apply batch: insert " << insert_ms
            << " ms, update " << update_ms << " ms; ListInstances " << list_ms << " ms\n";
}

}  // namespace
}  // namespace palm::store
