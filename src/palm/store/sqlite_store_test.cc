#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>

#include "absl/strings/str_cat.h"
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
  EXPECT_EQ(LatestSchemaVersion(), 5);
  EXPECT_TRUE(s->Healthy());
  EXPECT_EQ(Query("SELECT count(*) FROM schema_migrations"), "5");
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
  EXPECT_EQ(Query("SELECT count(*) FROM schema_migrations"), "5");
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
            "palm.db has schema version 7 but this palm knows up to 5: upgrade palm");
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

// Events 1..n: seq 3 in tenant "acme", odd seqs about deployment "web".
void PutEvents(Store& s, int n) {
  WriteBatch b;
  for (int i = 1; i <= n; ++i) {
    b.put_events.push_back({i, i == 3 ? "acme" : "default", i % 2 ? "web" : "",
                            Json{{"seq", i}, {"kind", "InstanceStarted"}}});
  }
  ASSERT_TRUE(s.Apply(b).ok());
}

TEST_F(StoreTest, EventsAreListedInOrderWithFiltersAndPruned) {
  auto s = Open();
  PutEvents(*s, 5);
  EXPECT_EQ(*s->LastEventSeq(), 5);
  auto all = s->ListEvents(0, 100, "", "", /*descending=*/false);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 5u);
  EXPECT_EQ((*all)[4].doc["seq"], 5);
  auto web = s->ListEvents(1, 100, "default", "web", /*descending=*/false);
  ASSERT_EQ(web->size(), 1u);  // seq 5 (3 is another tenant's, 1 is not after 1)
  EXPECT_EQ((*web)[0].seq, 5);
  EXPECT_EQ(s->ListEvents(0, 2, "", "", /*descending=*/false)->size(), 2u);
  WriteBatch prune;
  prune.delete_events_through = 3;
  ASSERT_TRUE(s->Apply(prune).ok());
  EXPECT_EQ(s->ListEvents(0, 100, "", "", /*descending=*/false)->front().seq, 4);
  EXPECT_EQ(*s->LastEventSeq(), 5);
  WriteBatch dup;
  dup.put_events.push_back({5, "default", "", Json::object()});
  EXPECT_FALSE(s->Apply(dup).ok()) << "a seq is written once";
}

TEST_F(StoreTest, EventsAreListedNewestFirstWhenDescending) {
  auto s = Open();
  PutEvents(*s, 6);
  auto seqs = [&](int64_t cursor, size_t limit, const std::string& tenant,
                  const std::string& deployment) {
    std::vector<int64_t> out;
    auto rows = s->ListEvents(cursor, limit, tenant, deployment, /*descending=*/true);
    EXPECT_TRUE(rows.ok()) << rows.status();
    if (rows.ok()) {
      for (const auto& r : *rows) out.push_back(r.seq);
    }
    return out;
  };
  // Cursor 0 = from the newest; the limit keeps the newest, not the oldest.
  EXPECT_EQ(seqs(0, 2, "", ""), (std::vector<int64_t>{6, 5}));
  // A cursor means "older than": the next page starts below the last seq of this one.
  EXPECT_EQ(seqs(5, 2, "", ""), (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(seqs(3, 2, "", ""), (std::vector<int64_t>{2, 1}));
  EXPECT_TRUE(seqs(1, 2, "", "").empty());
  EXPECT_EQ(seqs(0, 100, "default", "web"), (std::vector<int64_t>{5, 1}));  // 3 is acme's
  EXPECT_EQ(seqs(5, 100, "default", ""), (std::vector<int64_t>{4, 2, 1}));
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

// ---- tasks ---------------------------------------------------------------------------

// A task row shaped like model::ToStored (about 600 bytes of JSON).
TaskRow Task(int64_t seq, std::string state = "Queued", std::string deployment = "support",
             std::string tenant = "default", std::string key = "") {
  char id[32];
  snprintf(id, sizeof id, "task-%08lld", static_cast<long long>(seq));
  Json delivery = {{"instance", state == "Queued" ? "" : deployment + "-001"},
                   {"revision", 1},
                   {"state", state},
                   {"attempts", state == "Queued" ? 0 : 1},
                   {"output", state == "Succeeded" ? Json{{"answer", "forty-two"}} : Json()},
                   {"error", ""},
                   {"assigned_at", "2027-01-15T08:00:00.100Z"},
                   {"lease_expires_at", "2027-01-15T08:01:00.100Z"},
                   {"completed_at", nullptr},
                   {"cost_usd", 0.0021}};
  Json doc = {{"id", id},
              {"tenant", tenant},
              {"seq", seq},
              {"deployment", deployment},
              {"input", {{"question", "what is the answer to everything?"}, {"n", seq}}},
              {"mode", "route"},
              {"target", ""},
              {"state", state},
              {"max_attempts", 3},
              {"timeout_s", 60},
              {"idempotency_key", key},
              {"deliveries", Json::array({delivery})},
              {"error", ""},
              {"created_at", "2027-01-15T08:00:00.000Z"},
              {"updated_at", "2027-01-15T08:00:00.100Z"},
              {"completed_at", nullptr}};
  return {tenant, id, deployment, seq, state, key, doc};
}

TaskQuery Q(std::string tenant, std::string deployment = "", std::string state = "",
            int64_t after_seq = 0, bool descending = false, size_t limit = 100) {
  TaskQuery q;
  q.tenant = std::move(tenant);
  q.deployment = std::move(deployment);
  q.state = std::move(state);
  q.after_seq = after_seq;
  q.descending = descending;
  q.limit = limit;
  return q;
}

std::vector<int64_t> Seqs(const absl::StatusOr<std::vector<TaskRow>>& rows) {
  std::vector<int64_t> out;
  EXPECT_TRUE(rows.ok()) << rows.status();
  if (!rows.ok()) return out;
  for (const TaskRow& r : *rows) out.push_back(r.seq);
  return out;
}

TEST_F(StoreTest, TasksArePutAndReadBack) {
  auto s = Open();
  EXPECT_EQ(*s->LastTaskSeq(), 0);
  WriteBatch b;
  b.put_tasks.push_back(Task(1, "Queued", "support", "default", "req-1"));
  b.put_tasks.push_back(Task(2, "Assigned"));
  EXPECT_FALSE(b.empty());
  ASSERT_TRUE(s->Apply(b).ok());

  auto got = s->GetTask("default", "task-00000001");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  const TaskRow& r = **got;
  EXPECT_EQ(r.tenant, "default");
  EXPECT_EQ(r.id, "task-00000001");
  EXPECT_EQ(r.deployment, "support");
  EXPECT_EQ(r.seq, 1);
  EXPECT_EQ(r.state, "Queued");
  EXPECT_EQ(r.idempotency_key, "req-1");
  EXPECT_EQ(r.doc, Task(1, "Queued", "support", "default", "req-1").doc);
  EXPECT_FALSE(s->GetTask("default", "task-00000009")->has_value());
  EXPECT_FALSE(s->GetTask("acme", "task-00000001")->has_value()) << "another tenant's";
  EXPECT_EQ(*s->LastTaskSeq(), 2);

  // Insert or replace: the same id again is an update of every column.
  WriteBatch update;
  TaskRow done = Task(1, "Succeeded", "support", "default", "req-1");
  done.doc["error"] = "none";
  update.put_tasks.push_back(done);
  ASSERT_TRUE(s->Apply(update).ok());
  auto after = *s->GetTask("default", "task-00000001");
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->state, "Succeeded");
  EXPECT_EQ(after->doc["error"], "none");
  EXPECT_EQ(Query("SELECT count(*) FROM tasks"), "2");
  EXPECT_EQ(Seqs(s->ListTasks(Q("default"))), (std::vector<int64_t>{1, 2}));

  // Identifying columns are replaced too, and their indexes follow.
  WriteBatch moved;
  moved.put_tasks.push_back(Task(5, "Queued", "sales", "default", "k9"));
  moved.put_tasks.back().id = "task-00000002";
  ASSERT_TRUE(s->Apply(moved).ok());
  auto two = *s->GetTask("default", "task-00000002");
  ASSERT_TRUE(two.has_value());
  EXPECT_EQ(two->deployment, "sales");
  EXPECT_EQ(two->seq, 5);
  EXPECT_EQ(two->idempotency_key, "k9");
  EXPECT_EQ(two->doc, moved.put_tasks[0].doc);
  EXPECT_EQ((**s->FindTaskByIdempotencyKey("default", "sales", "k9")).id, "task-00000002");
  EXPECT_EQ(Seqs(s->ListTasks(Q("default", "sales"))), std::vector<int64_t>{5});
  EXPECT_TRUE(s->ListTasks(Q("default", "support", "Assigned"))->empty());
  EXPECT_EQ(*s->LastTaskSeq(), 5);
  EXPECT_EQ(Query("SELECT count(*) FROM tasks"), "2");
  moved.put_tasks[0].seq = 2;
  moved.put_tasks[0].deployment = "support";
  moved.put_tasks[0].idempotency_key = "";
  ASSERT_TRUE(s->Apply(moved).ok());
  EXPECT_FALSE(s->FindTaskByIdempotencyKey("default", "sales", "k9")->has_value());
  EXPECT_EQ(*s->LastTaskSeq(), 2);

  // Reopening reads the same rows.
  s.reset();
  s = Open();
  EXPECT_EQ((*s->GetTask("default", "task-00000001"))->doc, done.doc);
  EXPECT_EQ(*s->LastTaskSeq(), 2);
}

TEST_F(StoreTest, TaskRowsAreChecked) {
  auto s = Open();
  ASSERT_TRUE(s->Apply([] {
                 WriteBatch b;
                 b.put_tasks.push_back(Task(1));
                 return b;
               }())
                  .ok());
  const std::pair<std::string, std::function<void(TaskRow&)>> breakers[] = {
      {"CHECK constraint failed", [](TaskRow& r) { r.state = "Done"; }},
      {"CHECK constraint failed", [](TaskRow& r) { r.tenant = ""; }},
      {"CHECK constraint failed", [](TaskRow& r) { r.deployment = ""; }},
      {"CHECK constraint failed", [](TaskRow& r) { r.id = ""; }},
      {"UNIQUE constraint failed: tasks.seq", [](TaskRow& r) { r.seq = 1; }},
  };
  for (const auto& [want, brk] : breakers) {
    WriteBatch b;
    b.put_deployments.push_back({"default", "support", {{"replicas", 1}}});
    b.put_tasks.push_back(Task(2));
    TaskRow bad = Task(3);
    brk(bad);
    b.put_tasks.push_back(bad);
    absl::Status st = s->Apply(b);
    ASSERT_FALSE(st.ok()) << want;
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr(want));
    EXPECT_THAT(std::string(st.message()), HasSubstr("task " + bad.id));
    EXPECT_EQ(Seqs(s->ListTasks(Q("default"))), std::vector<int64_t>{1})
        << "the whole batch was rolled back";
    EXPECT_TRUE(s->ListDeployments()->empty());
  }
}

TEST_F(StoreTest, IdempotencyKeysAreUniquePerDeployment) {
  auto s = Open();
  WriteBatch b;
  b.put_tasks.push_back(Task(1, "Queued", "support", "default", "k1"));
  b.put_tasks.push_back(Task(2, "Queued", "sales", "default", "k1"));  // other deployment
  b.put_tasks.push_back(Task(3, "Queued", "support", "acme", "k1"));   // other tenant
  b.put_tasks.push_back(Task(4, "Queued", "support", "default", ""));  // no key: any number
  b.put_tasks.push_back(Task(5, "Queued", "support", "default", ""));
  ASSERT_TRUE(s->Apply(b).ok());

  WriteBatch dup;
  dup.put_tasks.push_back(Task(6, "Queued", "support", "default", "k1"));
  absl::Status st = s->Apply(dup);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("UNIQUE constraint failed"));
  EXPECT_FALSE(s->GetTask("default", "task-00000006")->has_value());

  // Updating the task that holds the key is fine.
  WriteBatch update;
  update.put_tasks.push_back(Task(1, "Succeeded", "support", "default", "k1"));
  ASSERT_TRUE(s->Apply(update).ok());

  auto found = s->FindTaskByIdempotencyKey("default", "support", "k1");
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->seq, 1);
  EXPECT_EQ((*found)->state, "Succeeded");
  EXPECT_EQ((**s->FindTaskByIdempotencyKey("default", "sales", "k1")).seq, 2);
  EXPECT_EQ((**s->FindTaskByIdempotencyKey("acme", "support", "k1")).seq, 3);
  EXPECT_FALSE(s->FindTaskByIdempotencyKey("default", "support", "k2")->has_value());
  EXPECT_FALSE(s->FindTaskByIdempotencyKey("default", "support", "")->has_value())
      << "\"\" is no key, not a key shared by every task without one";
  EXPECT_FALSE(s->FindTaskByIdempotencyKey("default", "other", "k1")->has_value());
}

TEST_F(StoreTest, ListTasksFiltersOrdersAndPages) {
  auto s = Open();
  WriteBatch b;
  // seq: 1..12; deployment a for odd, b for even; every third Succeeded; 13, 14 another tenant.
  for (int64_t i = 1; i <= 12; ++i) {
    b.put_tasks.push_back(Task(i, i % 3 == 0 ? "Succeeded" : "Queued", i % 2 ? "a" : "b"));
  }
  b.put_tasks.push_back(Task(13, "Queued", "a", "acme"));
  b.put_tasks.push_back(Task(14, "Succeeded", "a", "acme"));
  // Written out of order: listing is by seq, not by insertion.
  b.put_tasks.push_back(Task(20, "Queued", "a"));
  b.put_tasks.push_back(Task(15, "Queued", "a"));
  ASSERT_TRUE(s->Apply(b).ok());

  using V = std::vector<int64_t>;
  EXPECT_EQ(Seqs(s->ListTasks(Q("default"))), (V{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 20}));
  EXPECT_EQ(Seqs(s->ListTasks(Q("acme"))), (V{13, 14}));
  EXPECT_EQ(Seqs(s->ListTasks(Q("nobody"))), V{});
  EXPECT_EQ(Seqs(s->ListTasks(Q("default", "a"))), (V{1, 3, 5, 7, 9, 11, 15, 20}));
  EXPECT_EQ(Seqs(s->ListTasks(Q("default", "", "Succeeded"))), (V{3, 6, 9, 12}));
  EXPECT_EQ(Seqs(s->ListTasks(Q("default", "b", "Succeeded"))), (V{6, 12}));
  EXPECT_EQ(Seqs(s->ListTasks(Q("default", "", "Failed"))), V{});
  // Pages.
  EXPECT_EQ(Seqs(s->ListTasks(Q("default", "", "", 0, false, 3))), (V{1, 2, 3}));
  EXPECT_EQ(Seqs(s->ListTasks(Q("default", "", "", 3, false, 3))), (V{4, 5, 6}));
  EXPECT_EQ(Seqs(s->ListTasks(Q("default", "", "", 12, false, 3))), (V{15, 20}));
  EXPECT_EQ(Seqs(s->ListTasks(Q("default", "", "", 20))), V{});
  EXPECT_EQ(Seqs(s->ListTasks(Q("default", "a", "", 5, false, 2))), (V{7, 9}));
  EXPECT_EQ(Seqs(s->ListTasks(Q("default", "", "Succeeded", 3, false, 2))), (V{6, 9}));
  EXPECT_EQ(Seqs(s->ListTasks(Q("default", "", "", 0, false, 0))), V{}) << "at most limit";
  // Descending: newest first, the cursor counts down.
  EXPECT_EQ(Seqs(s->ListTasks(Q("default", "", "", 0, true, 3))), (V{20, 15, 12}));
  EXPECT_EQ(Seqs(s->ListTasks(Q("default", "", "", 12, true, 3))), (V{11, 10, 9}));
  EXPECT_EQ(Seqs(s->ListTasks(Q("default", "", "", 2, true))), (V{1}));
  EXPECT_EQ(Seqs(s->ListTasks(Q("default", "b", "", 0, true))), (V{12, 10, 8, 6, 4, 2}));
  EXPECT_EQ(Seqs(s->ListTasks(Q("default", "", "Succeeded", 9, true))), (V{6, 3}));
  EXPECT_EQ(Seqs(s->ListTasks(Q("default", "a", "Queued", 15, true, 2))), (V{11, 7}));

  auto no_tenant = s->ListTasks(TaskQuery());
  ASSERT_FALSE(no_tenant.ok());
  EXPECT_EQ(no_tenant.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, ActiveTasksAreListedAcrossTenantsInSeqOrder) {
  auto s = Open();
  WriteBatch b;
  const char* states[] = {"Succeeded", "Queued",    "Failed", "Assigned",
                          "TimedOut",  "Cancelled", "Queued"};
  for (int64_t i = 0; i < 7; ++i) {
    b.put_tasks.push_back(Task(10 - i, states[i], "a", i % 2 ? "acme" : "default"));
  }
  ASSERT_TRUE(s->Apply(b).ok());
  auto active = s->ListActiveTasks();
  EXPECT_EQ(Seqs(active), (std::vector<int64_t>{4, 7, 9}));
  ASSERT_EQ(active->size(), 3u);
  EXPECT_EQ((*active)[0].state, "Queued");
  EXPECT_EQ((*active)[1].state, "Assigned");
  EXPECT_EQ((*active)[1].tenant, "acme");
  // Finishing one takes it off the list.
  WriteBatch done;
  done.put_tasks.push_back(Task(7, "Succeeded", "a", "acme"));
  ASSERT_TRUE(s->Apply(done).ok());
  EXPECT_EQ(Seqs(s->ListActiveTasks()), (std::vector<int64_t>{4, 9}));
}

TEST_F(StoreTest, PruningKeepsTheNewestFinishedAndEveryActiveTask) {
  auto s = Open();
  WriteBatch b;
  // 1..20: every fourth is active (4, 8, 12, 16, 20), the rest finished (15 tasks).
  for (int64_t i = 1; i <= 20; ++i) {
    const char* state =
        i % 4 == 0 ? (i % 8 == 0 ? "Assigned" : "Queued") : (i % 2 ? "Succeeded" : "Failed");
    b.put_tasks.push_back(Task(i, state, i % 2 ? "a" : "b", i % 3 ? "default" : "acme"));
  }
  ASSERT_TRUE(s->Apply(b).ok());

  auto none = s->PruneFinishedTasks(100);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, 0);
  EXPECT_EQ(*s->PruneFinishedTasks(15), 0) << "exactly 15 finished";

  auto pruned = s->PruneFinishedTasks(5);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, 10);
  // Finished: 1 2 3 5 6 7 9 10 11 13 14 15 17 18 19 -> the newest five are 13 14 15 17 18 19
  // minus one: 14 15 17 18 19.
  EXPECT_EQ(Query("SELECT group_concat(seq) FROM (SELECT seq FROM tasks ORDER BY seq)"),
            "4,8,12,14,15,16,17,18,19,20");
  EXPECT_EQ(Seqs(s->ListActiveTasks()), (std::vector<int64_t>{4, 8, 12, 16, 20}));
  EXPECT_EQ(*s->PruneFinishedTasks(5), 0) << "idempotent";

  EXPECT_EQ(*s->PruneFinishedTasks(0), 5);
  EXPECT_EQ(Query("SELECT count(*) FROM tasks"), "5");
  EXPECT_EQ(Seqs(s->ListActiveTasks()), (std::vector<int64_t>{4, 8, 12, 16, 20}));

  auto negative = s->PruneFinishedTasks(-1);
  ASSERT_FALSE(negative.ok());
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, LastTaskSeqNeverGoesBackAfterPruning) {
  auto s = Open();
  WriteBatch b;
  b.put_tasks.push_back(Task(1, "Queued"));
  b.put_tasks.push_back(Task(2, "Succeeded"));
  b.put_tasks.push_back(Task(3, "Failed"));
  ASSERT_TRUE(s->Apply(b).ok());
  EXPECT_EQ(*s->LastTaskSeq(), 3);
  EXPECT_EQ(*s->PruneFinishedTasks(0), 2);
  EXPECT_EQ(Query("SELECT max(seq) FROM tasks"), "1");
  EXPECT_EQ(*s->LastTaskSeq(), 3) << "task-00000003 is never handed out again";
  s.reset();
  s = Open();
  EXPECT_EQ(*s->LastTaskSeq(), 3) << "durable";
  WriteBatch more;
  more.put_tasks.push_back(Task(9, "Succeeded"));
  ASSERT_TRUE(s->Apply(more).ok());
  EXPECT_EQ(*s->LastTaskSeq(), 9);
  // An older prune mark does not lower a newer one.
  WriteBatch old;
  old.put_tasks.push_back(Task(5, "Succeeded"));
  ASSERT_TRUE(s->Apply(old).ok());
  EXPECT_EQ(*s->PruneFinishedTasks(1), 1);  // deletes 5, keeps 9
  EXPECT_EQ(Query("SELECT value FROM meta WHERE key = 'tasks_pruned_through'"), "5");
  EXPECT_EQ(*s->PruneFinishedTasks(0), 1);
  EXPECT_EQ(*s->LastTaskSeq(), 9);
}

TEST_F(StoreTest, TaskQueriesUseTheirIndexes) {
  { Open(); }
  auto plan = [&](const std::string& sql) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    std::string out;
    EXPECT_EQ(sqlite3_prepare_v2(db, ("EXPLAIN QUERY PLAN " + sql).c_str(), -1, &s, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db);
    while (sqlite3_step(s) == SQLITE_ROW) {
      absl::StrAppend(&out, reinterpret_cast<const char*>(sqlite3_column_text(s, 3)), "; ");
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return out;
  };
  const std::pair<std::string, std::string> cases[] = {
      {"SELECT * FROM tasks WHERE tenant = ?1 AND seq > ?4 ORDER BY seq LIMIT ?5",
       "tasks_by_tenant"},
      {"SELECT * FROM tasks WHERE tenant = ?1 AND deployment = ?2 AND seq < ?4 "
       "ORDER BY seq DESC LIMIT ?5",
       "tasks_by_deployment"},
      {"SELECT * FROM tasks WHERE tenant = ?1 AND state = ?3 AND seq > ?4 ORDER BY seq LIMIT ?5",
       "tasks_by_state"},
      {"SELECT * FROM tasks WHERE tenant = ?1 AND deployment = ?2 AND idempotency_key = ?3 "
       "AND idempotency_key <> ''",
       "tasks_by_idempotency_key"},
      {"SELECT * FROM tasks WHERE state IN ('Queued', 'Assigned') ORDER BY seq", "tasks_active"},
      {"SELECT seq FROM tasks WHERE state NOT IN ('Queued', 'Assigned') "
       "ORDER BY seq DESC LIMIT 1 OFFSET ?1",
       "tasks_finished"},
      {"DELETE FROM tasks WHERE state NOT IN ('Queued', 'Assigned') AND seq <= ?1",
       "tasks_finished"},
  };
  for (const auto& [sql, index] : cases) {
    std::string p = plan(sql);
    EXPECT_THAT(p, HasSubstr(index)) << sql;
    EXPECT_THAT(p, ::testing::Not(HasSubstr("TEMP B-TREE"))) << sql;
  }
  // Writing a task must not build a temporary b-tree per row (a CHECK or partial-index
  // condition with an IN list of more than two values does; it doubled the cost of a write).
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "EXPLAIN INSERT INTO tasks (tenant, id, deployment, seq, state, "
                               "idempotency_key, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                               "ON CONFLICT (tenant, id) DO UPDATE SET state = excluded.state, "
                               "doc = excluded.doc",
                               -1, &s, nullptr),
            SQLITE_OK);
  int ops = 0;
  while (sqlite3_step(s) == SQLITE_ROW) {
    ++ops;
    EXPECT_STRNE(reinterpret_cast<const char*>(sqlite3_column_text(s, 1)), "OpenEphemeral");
  }
  EXPECT_GT(ops, 10);
  sqlite3_finalize(s);
  sqlite3_close(db);
}

TEST_F(StoreTest, MigratesAVersion2StoreToTasks) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  std::vector<Migration> v2(Migrations().begin(), Migrations().begin() + 2);
  absl::StatusOr<int> v = Migrate(db, "palm.db", v2);
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_EQ(*v, 2);
  ASSERT_EQ(sqlite3_exec(db,
                         "INSERT INTO deployments VALUES ('default', 'fleet', '{\"replicas\":2}');"
                         "INSERT INTO events VALUES (7, 'default', 'fleet', '{\"seq\":7}');",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);

  auto s = Open();
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->SchemaVersion(), LatestSchemaVersion());
  EXPECT_EQ(Query("SELECT group_concat(version) FROM schema_migrations"), "1,2,3,4,5");
  EXPECT_EQ(Query("SELECT count(*) FROM sqlite_master WHERE name IN ('tasks', "
                  "'tasks_by_idempotency_key', 'tasks_by_tenant', 'tasks_by_deployment', "
                  "'tasks_by_state', 'tasks_active', 'tasks_finished')"),
            "7");
  ASSERT_EQ(s->ListDeployments()->size(), 1u);
  EXPECT_EQ((*s->ListDeployments())[0].doc["replicas"], 2);
  EXPECT_EQ(*s->LastEventSeq(), 7);
  EXPECT_EQ(*s->LastTaskSeq(), 0);
  EXPECT_TRUE(s->ListActiveTasks()->empty());
  WriteBatch b;
  b.put_tasks.push_back(Task(1));
  ASSERT_TRUE(s->Apply(b).ok());
  EXPECT_EQ(s->ListActiveTasks()->size(), 1u);
}

RevisionRow Rev(const std::string& tenant, const std::string& deployment, int64_t n,
               const std::string& spec = "buyer@1.0.0") {
  return {tenant, deployment, n, Json{{"revision", n}, {"spec", spec}}};
}

std::vector<std::string> RevisionKeys(Store& s) {
  std::vector<std::string> keys;
  absl::StatusOr<std::vector<RevisionRow>> rows = s.ListRevisions();
  EXPECT_TRUE(rows.ok()) << rows.status();
  if (!rows.ok()) return keys;
  for (const RevisionRow& r : *rows) {
    EXPECT_EQ(r.doc["revision"], r.revision);
    keys.push_back(absl::StrCat(r.tenant, "/", r.deployment, "/", r.revision));
  }
  return keys;
}

TEST_F(StoreTest, RevisionsArePutListedByKeyAndDeleted) {
  auto s = Open();
  EXPECT_TRUE(s->ListRevisions()->empty());
  WriteBatch b;
  for (const auto& r : {Rev("default", "web", 10), Rev("default", "web", 2), Rev("acme", "web", 1),
                        Rev("default", "api", 1), Rev("default", "web", 9)}) {
    b.put_revisions.push_back(r);
  }
  EXPECT_FALSE(b.empty());
  ASSERT_TRUE(s->Apply(b).ok());
  EXPECT_THAT(RevisionKeys(*s),
              ::testing::ElementsAre("acme/web/1", "default/api/1", "default/web/2",
                                     "default/web/9", "default/web/10"))
      << "by tenant, deployment, then revision as a number";

  WriteBatch update;
  update.put_revisions.push_back(Rev("default", "web", 2, "buyer@2.0.0"));  // replaces
  update.delete_revisions.push_back(Rev("default", "web", 9));
  update.delete_revisions.push_back(Rev("default", "web", 77));  // absent: nothing to do
  EXPECT_FALSE(update.empty());
  ASSERT_TRUE(s->Apply(update).ok());
  auto rows = *s->ListRevisions();
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[2].doc["spec"], "buyer@2.0.0");
  EXPECT_THAT(RevisionKeys(*s), ::testing::ElementsAre("acme/web/1", "default/api/1",
                                                        "default/web/2", "default/web/10"));

  WriteBatch only_deletes;
  only_deletes.delete_revisions.push_back(Rev("default", "api", 1));
  EXPECT_FALSE(only_deletes.empty()) << "a batch of revision deletes is applied";
  ASSERT_TRUE(s->Apply(only_deletes).ok());
  EXPECT_EQ(s->ListRevisions()->size(), 3u);

  // The same key deleted and put in one batch ends up put.
  WriteBatch both;
  both.delete_revisions.push_back(Rev("default", "web", 10));
  both.put_revisions.push_back(Rev("default", "web", 10, "buyer@3.0.0"));
  ASSERT_TRUE(s->Apply(both).ok());
  EXPECT_EQ(s->ListRevisions()->back().doc["spec"], "buyer@3.0.0");
}

TEST_F(StoreTest, DeletingADeploymentDeletesItsRevisionsOnly) {
  auto s = Open();
  WriteBatch b;
  b.put_deployments.push_back({"default", "web", {{"name", "web"}}});
  b.put_deployments.push_back({"acme", "web", {{"name", "web"}}});
  for (const auto& r : {Rev("default", "web", 1), Rev("default", "web", 2), Rev("acme", "web", 1),
                        Rev("default", "webby", 1)}) {
    b.put_revisions.push_back(r);
  }
  ASSERT_TRUE(s->Apply(b).ok());
  WriteBatch del;
  del.delete_deployments.push_back({"default", "web"});
  ASSERT_TRUE(s->Apply(del).ok());
  EXPECT_THAT(RevisionKeys(*s), ::testing::ElementsAre("acme/web/1", "default/webby/1"))
      << "another tenant's deployment of the same name keeps its revisions";
  // A deployment deleted and created again in one batch keeps the revisions put with it.
  WriteBatch again;
  again.delete_deployments.push_back({"acme", "web"});
  again.put_deployments.push_back({"acme", "web", {{"name", "web"}}});
  again.put_revisions.push_back(Rev("acme", "web", 1, "buyer@9.0.0"));
  ASSERT_TRUE(s->Apply(again).ok());
  auto rows = *s->ListRevisions();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].doc["spec"], "buyer@9.0.0");
}

TEST_F(StoreTest, RevisionRowsAreCheckedAndABadOneRollsTheBatchBack) {
  auto s = Open();
  const std::pair<std::string, RevisionRow> bad[] = {
      {"writing revision 0 of web", Rev("default", "web", 0)},
      {"writing revision 1 of ", Rev("default", "", 1)},
      {"writing revision 1 of web", Rev("", "web", 1)},
  };
  for (const auto& [want, row] : bad) {
    WriteBatch b;
    b.put_deployments.push_back({"default", "web", {{"name", "web"}}});
    b.put_revisions.push_back(Rev("default", "web", 5));
    b.put_revisions.push_back(row);
    absl::Status st = s->Apply(b);
    ASSERT_FALSE(st.ok()) << want;
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr(want));
    EXPECT_TRUE(s->ListRevisions()->empty());
    EXPECT_TRUE(s->ListDeployments()->empty());
  }
}

TEST_F(StoreTest, ACorruptRevisionDocumentIsDataLoss) {
  auto s = Open();
  ExecRaw("INSERT INTO revisions VALUES ('default', 'web', 3, '{not json')");
  absl::StatusOr<std::vector<RevisionRow>> rows = s->ListRevisions();
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(rows.status().message()),
              HasSubstr("palm.db: revisions row default/web/3: doc is not valid JSON"));
}

TEST_F(StoreTest, MigratesAVersion3StoreToRevisions) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  std::vector<Migration> v3(Migrations().begin(), Migrations().begin() + 3);
  absl::StatusOr<int> v = Migrate(db, "palm.db", v3);
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_EQ(*v, 3);
  ASSERT_EQ(sqlite3_exec(db,
                         "INSERT INTO deployments VALUES ('default', 'fleet', '{\"revision\":3}')",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);

  auto s = Open();
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->SchemaVersion(), LatestSchemaVersion());
  EXPECT_EQ(Query("SELECT group_concat(version) FROM schema_migrations"), "1,2,3,4,5");
  EXPECT_EQ(Query("SELECT count(*) FROM sqlite_master WHERE name = 'revisions'"), "1");
  ASSERT_EQ(s->ListDeployments()->size(), 1u);
  EXPECT_EQ((*s->ListDeployments())[0].doc["revision"], 3);
  EXPECT_TRUE(s->ListRevisions()->empty());
  WriteBatch b;
  b.put_revisions.push_back(Rev("default", "fleet", 3));
  ASSERT_TRUE(s->Apply(b).ok());
  EXPECT_THAT(RevisionKeys(*s), ::testing::ElementsAre("default/fleet/3"));
}

// Task writes run at ~15,000 rows/s in group-committed batches; this logs what a batch costs.
TEST_F(StoreTest, FifteenThousandTaskWritesInBatches) {
  auto s = Open();
  constexpr int kBatches = 15, kPerBatch = 1000;
  std::vector<WriteBatch> inserts(kBatches), finishes(kBatches);
  for (int b = 0; b < kBatches; ++b) {
    for (int i = 0; i < kPerBatch; ++i) {
      int64_t seq = b * kPerBatch + i + 1;
      inserts[b].put_tasks.push_back(
          Task(seq, "Queued", seq % 2 ? "a" : "b", "default", absl::StrCat("key-", seq)));
      finishes[b].put_tasks.push_back(
          Task(seq, "Succeeded", seq % 2 ? "a" : "b", "default", absl::StrCat("key-", seq)));
    }
  }
  // Wall and CPU time: under load the CPU time is the steadier figure.
  double cpu_ms = 0;
  auto time_ms = [&cpu_ms](auto f) {
    auto start = std::chrono::steady_clock::now();
    std::clock_t cpu = std::clock();
    f();
    cpu_ms = (std::clock() - cpu) * 1000.0 / CLOCKS_PER_SEC;
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
        .count();
  };
  double insert_ms = time_ms([&] {
    for (const WriteBatch& b : inserts) ASSERT_TRUE(s->Apply(b).ok());
  });
  double insert_cpu_ms = cpu_ms;
  double update_ms = time_ms([&] {
    for (const WriteBatch& b : finishes) ASSERT_TRUE(s->Apply(b).ok());
  });
  double update_cpu_ms = cpu_ms;
  absl::StatusOr<std::vector<TaskRow>> active;
  double active_ms = time_ms([&] { active = s->ListActiveTasks(); });
  ASSERT_TRUE(active.ok());
  EXPECT_TRUE(active->empty());
  absl::StatusOr<int64_t> pruned;
  double prune_ms = time_ms([&] { pruned = s->PruneFinishedTasks(10'000); });
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 5'000);
  EXPECT_EQ(*s->LastTaskSeq(), kBatches * kPerBatch);
  std::cout << "[ perf ] 15000 put_tasks in " << kBatches << " batches: insert " << insert_ms
            << " ms (cpu " << insert_cpu_ms << "), update " << update_ms << " ms (cpu "
            << update_cpu_ms << "); ListActiveTasks (none) " << active_ms
            << " ms; PruneFinishedTasks(10000) deleting 5000: " << prune_ms << " ms\n";
}

}  // namespace
// A document with a string that is not UTF-8 (a bug upstream: text is sanitized where it
// enters palm) fails neither its batch nor its row: it is stored with U+FFFD.
TEST_F(StoreTest, ADocumentThatIsNotUtf8FailsNeitherItsBatchNorItsRow) {
  auto s = Open();
  WriteBatch b = Everything();
  b.put_instances.push_back({"default", "x-001", "x", {{"health_reason", "probe said \xff\xfe!"}}});
  b.put_events.push_back({7, "default", "x", {{"message", "\xff" "bad"}}});
  TaskRow t = Task(9);
  t.doc["error"] = "\xc3";  // a truncated sequence
  b.put_tasks.push_back(t);
  b.put_revisions.push_back({"default", "x", 1, Json{{"x", "\xff"}}});
  ASSERT_TRUE(s->Apply(b).ok()) << "one bad string must not poison the batch";
  EXPECT_EQ(s->ListSpecs()->size(), 2u);
  EXPECT_EQ(s->ListTokens()->size(), 2u);
  auto instances = s->ListInstances();
  ASSERT_TRUE(instances.ok());
  bool found = false;
  for (const InstanceRow& r : *instances) {
    if (r.id != "x-001") continue;
    found = true;
    EXPECT_EQ(r.doc["health_reason"], "probe said \xef\xbf\xbd\xef\xbf\xbd!");
  }
  EXPECT_TRUE(found);
  auto events = s->ListEvents(0, 100, "default", "x", false);
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].doc["message"], "\xef\xbf\xbd" "bad");
  auto task = s->GetTask("default", t.id);
  ASSERT_TRUE(task.ok() && task->has_value());
  EXPECT_EQ((**task).doc["error"], "\xef\xbf\xbd");
}

// Deletes drop the batch's earlier puts of the same key, so a batch kept across calls (a
// failed commit retried with later changes) means what its changes meant in order.
TEST_F(StoreTest, ADeleteSupersedesEarlierPutsInTheSameBatch) {
  auto s = Open();
  WriteBatch b;
  b.put_deployments.push_back({"default", "web", {{"replicas", 1}}});
  b.put_revisions.push_back(Rev("default", "web", 1));
  b.put_revisions.push_back(Rev("default", "web", 2));
  b.put_instances.push_back({"default", "web-001", "web", {{"state", "Stopping"}}});
  b.put_instances.push_back({"default", "web-002", "web", {{"state", "Running"}}});
  b.DeleteInstance("default", "web-001");
  b.DeleteRevision(Rev("default", "web", 1));
  ASSERT_TRUE(s->Apply(b).ok());
  auto instances = s->ListInstances();
  ASSERT_EQ(instances->size(), 1u);
  EXPECT_EQ((*instances)[0].id, "web-002");
  ASSERT_EQ(s->ListRevisions()->size(), 1u);
  EXPECT_EQ((*s->ListRevisions())[0].revision, 2);

  WriteBatch gone;
  gone.put_deployments.push_back({"default", "web", {{"replicas", 5}}});
  gone.put_revisions.push_back(Rev("default", "web", 3));
  gone.DeleteDeployment("default", "web");
  gone.put_deployments.push_back({"default", "api", {{"replicas", 1}}});
  ASSERT_TRUE(s->Apply(gone).ok());
  auto deps = s->ListDeployments();
  ASSERT_EQ(deps->size(), 1u);
  EXPECT_EQ((*deps)[0].name, "api");
  EXPECT_TRUE(s->ListRevisions()->empty());

  // Deleted, then put again: put.
  WriteBatch again;
  again.DeleteInstance("default", "web-002");
  again.put_instances.push_back({"default", "web-002", "web", {{"state", "Pending"}}});
  ASSERT_TRUE(s->Apply(again).ok());
  ASSERT_EQ(s->ListInstances()->size(), 1u);
  EXPECT_EQ((*s->ListInstances())[0].doc["state"], "Pending");
}

// A broadcast task's deliveries live in rows of their own; reads assemble the task.
TEST_F(StoreTest, DeliveryRowsAreAssembledIntoTheirTaskAndPrunedWithIt) {
  auto s = Open();
  auto broadcast = [](int64_t seq, const char* state) {
    TaskRow t = Task(seq, state);
    t.doc.erase("deliveries");
    t.doc["delivery_rows"] = 2;
    return t;
  };
  WriteBatch b;
  b.put_tasks.push_back(broadcast(1, "Succeeded"));
  b.put_tasks.push_back(broadcast(2, "Assigned"));
  for (int64_t seq : {1, 2}) {
    for (int64_t i : {0, 1}) {
      // As a document (the store serializes it) and as text (written as given).
      b.put_deliveries.push_back(
          {seq, i, Json{{"instance", absl::StrCat("web-00", i + 1)}, {"output", seq}}, ""});
    }
  }
  ASSERT_TRUE(s->Apply(b).ok());
  // A delivery's result rewrites only its row.
  WriteBatch result;
  result.put_deliveries.push_back(
      {2, 1, nullptr, Json{{"instance", "web-002"}, {"output", "done"}}.dump()});
  ASSERT_TRUE(s->Apply(result).ok());

  auto got = s->GetTask("default", "task-00000002");
  ASSERT_TRUE(got.ok() && got->has_value()) << got.status();
  const Json& doc = (**got).doc;
  EXPECT_FALSE(doc.contains("delivery_rows"));
  ASSERT_EQ(doc["deliveries"].size(), 2u);
  EXPECT_EQ(doc["deliveries"][0]["output"], 2);
  EXPECT_EQ(doc["deliveries"][1]["output"], "done");
  auto active = s->ListActiveTasks();
  ASSERT_EQ(active->size(), 1u);
  EXPECT_EQ((*active)[0].doc["deliveries"].size(), 2u);
  auto listed = s->ListTasks(Q("default"));
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].doc["deliveries"][1]["output"], 1);

  EXPECT_EQ(*s->PruneFinishedTasks(0), 1);
  EXPECT_EQ(Query("SELECT group_concat(task_seq) FROM task_deliveries"), "2,2")
      << "the pruned task's deliveries went with it";

  // A missing delivery row is corruption, not a shorter task.
  ExecRaw("DELETE FROM task_deliveries WHERE task_seq = 2 AND idx = 0");
  auto broken = s->GetTask("default", "task-00000002");
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(broken.status().message()), HasSubstr("delivery rows"));
}

}  // namespace palm::store
