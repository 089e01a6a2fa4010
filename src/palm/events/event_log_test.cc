#include "palm/events/event_log.h"

#include <stdlib.h>

#include <filesystem>

#include "gtest/gtest.h"

namespace palm::events {
namespace {

class EventLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/palm-events-XXXXXX";
    dir_ = mkdtemp(tmpl);
    store_ = std::move(*store::OpenSqliteStore(dir_ + "/palm.db"));
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  Event E(const std::string& kind, const std::string& deployment = "web") {
    Event e;
    e.kind = kind;
    e.object_type = "instance";
    e.object_name = deployment + "-001";
    e.deployment = deployment;
    e.message = kind;
    return e;
  }
  // Appends and commits like the supervisor does.
  void Commit(EventLog& log, std::vector<Event> events) {
    store::WriteBatch b;
    for (auto& e : events) log.Append(e, absl::FromUnixSeconds(1800000000), &b);
    log.Seal(&b);
    ASSERT_TRUE(store_->Apply(b).ok());
    log.Publish(b);
  }
  std::string dir_;
  std::unique_ptr<store::Store> store_;
};

TEST_F(EventLogTest, PublishesOnlyDurableEventsToSubscribersInOrder) {
  EventLog log;
  ASSERT_TRUE(log.Load(*store_).ok());
  std::vector<int64_t> seen;
  uint64_t sub = log.Subscribe([&](const Json& e) { seen.push_back(e["seq"]); });
  store::WriteBatch b;
  log.Append(E("InstanceStarted"), absl::Now(), &b);
  log.Seal(&b);
  EXPECT_TRUE(seen.empty()) << "not before the batch is durable";
  // The batch failed: it is never published.
  Commit(log, {E("InstanceExited"), E("BackOff")});
  EXPECT_EQ(seen, (std::vector<int64_t>{2, 3}));  // seq 1 is a gap, never published
  log.Unsubscribe(sub);
  Commit(log, {E("InstanceStarted")});
  EXPECT_EQ(seen.size(), 2u);
  auto listed = log.List(*store_, "default", "", 0, 100, /*descending=*/false);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 3u);
  EXPECT_EQ((*listed)[0]["kind"], "InstanceExited");
  EXPECT_EQ((*listed)[0]["object"]["type"], "instance");
  EXPECT_EQ((*listed)[0]["time"], "2027-01-15T08:00:00.000Z");
}

TEST_F(EventLogTest, ListsFromTheStoreWhenTheTailIsTooShortAndAfterRestart) {
  {
    EventLog log(/*retention=*/100000, /*tail=*/2);
    ASSERT_TRUE(log.Load(*store_).ok());
    Commit(log, {E("A"), E("B", "other"), E("C"), E("D"), E("E")});
    auto from_store = log.List(*store_, "default", "web", 0, 100, /*descending=*/false);
    ASSERT_TRUE(from_store.ok());
    ASSERT_EQ(from_store->size(), 4u);  // not "B": another deployment
    EXPECT_EQ((*from_store)[0]["kind"], "A");
    auto from_tail = log.List(*store_, "default", "", 3, 100, /*descending=*/false);
    ASSERT_EQ(from_tail->size(), 2u);
    EXPECT_EQ((*from_tail)[0]["seq"], 4);
  }
  EventLog again;
  ASSERT_TRUE(again.Load(*store_).ok());
  EXPECT_EQ(again.last_seq(), 5);
  store::WriteBatch b;
  again.Append(E("F"), absl::Now(), &b);
  again.Seal(&b);
  EXPECT_EQ(b.put_events[0].seq, 6) << "seqs continue after a restart";
}

// The seqs of `log.List(...)`, or {-1} when it fails.
std::vector<int64_t> ListedSeqs(const EventLog& log, store::Store& store,
                                const std::string& deployment, int64_t cursor, size_t limit,
                                bool descending) {
  auto listed = log.List(store, "default", deployment, cursor, limit, descending);
  EXPECT_TRUE(listed.ok()) << listed.status();
  if (!listed.ok()) return {-1};
  std::vector<int64_t> seqs;
  for (const Json& e : *listed) seqs.push_back(e["seq"]);
  return seqs;
}

// Follows `next` (the last seq of a full page) until a page comes back short.
std::vector<int64_t> AllPages(const EventLog& log, store::Store& store,
                              const std::string& deployment, size_t limit, bool descending) {
  std::vector<int64_t> all;
  int64_t cursor = 0;
  for (int pages = 0; pages < 100; ++pages) {
    std::vector<int64_t> page = ListedSeqs(log, store, deployment, cursor, limit, descending);
    EXPECT_LE(page.size(), limit);
    all.insert(all.end(), page.begin(), page.end());
    if (page.size() < limit) break;
    cursor = page.back();
  }
  return all;
}

TEST_F(EventLogTest, DescendingListsTheNewestFirstAcrossTailAndStore) {
  // Seqs 1..9; "B" (seqs 2, 5, 8) is another deployment. The tail holds only 7..9.
  EventLog log(/*retention=*/100000, /*tail=*/3);
  ASSERT_TRUE(log.Load(*store_).ok());
  for (int i = 0; i < 3; ++i) Commit(log, {E("A"), E("B", "other"), E("C")});
  using Seqs = std::vector<int64_t>;
  // The newest `limit`, newest first: from the tail alone, then reaching into the store.
  EXPECT_EQ(ListedSeqs(log, *store_, "", 0, 2, true), (Seqs{9, 8}));
  EXPECT_EQ(ListedSeqs(log, *store_, "", 0, 5, true), (Seqs{9, 8, 7, 6, 5}));
  // A cursor means "older than it", inside the tail and below it.
  EXPECT_EQ(ListedSeqs(log, *store_, "", 8, 3, true), (Seqs{7, 6, 5}));
  EXPECT_EQ(ListedSeqs(log, *store_, "", 4, 10, true), (Seqs{3, 2, 1}));
  EXPECT_TRUE(ListedSeqs(log, *store_, "", 1, 10, true).empty());
  EXPECT_EQ(ListedSeqs(log, *store_, "web", 0, 3, true), (Seqs{9, 7, 6}));
  // Paging with `next` visits every event once, either way.
  EXPECT_EQ(AllPages(log, *store_, "", 2, true), (Seqs{9, 8, 7, 6, 5, 4, 3, 2, 1}));
  EXPECT_EQ(AllPages(log, *store_, "", 2, false), (Seqs{1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(AllPages(log, *store_, "web", 4, true), (Seqs{9, 7, 6, 4, 3, 1}));
  EXPECT_EQ(AllPages(log, *store_, "web", 4, false), (Seqs{1, 3, 4, 6, 7, 9}));
  // After a restart (the tail reloaded from the store) the answers are the same.
  EventLog again(/*retention=*/100000, /*tail=*/3);
  ASSERT_TRUE(again.Load(*store_).ok());
  EXPECT_EQ(AllPages(again, *store_, "", 4, true), (Seqs{9, 8, 7, 6, 5, 4, 3, 2, 1}));
  // With every event in the tail the answers are the same.
  EventLog big;
  ASSERT_TRUE(big.Load(*store_).ok());
  EXPECT_EQ(ListedSeqs(big, *store_, "", 0, 3, true), (Seqs{9, 8, 7}));
  EXPECT_EQ(AllPages(big, *store_, "web", 4, true), (Seqs{9, 7, 6, 4, 3, 1}));
}

TEST_F(EventLogTest, SeqsFollowCommitOrderAcrossBatches) {
  EventLog log;
  ASSERT_TRUE(log.Load(*store_).ok());
  std::vector<int64_t> seen;
  log.Subscribe([&](const Json& e) { seen.push_back(e["seq"]); });
  store::WriteBatch first, second;
  log.Append(E("A"), absl::Now(), &first);   // filled first...
  log.Append(E("B"), absl::Now(), &second);
  for (store::WriteBatch* b : {&second, &first}) {  // ...committed second
    log.Seal(b);
    ASSERT_TRUE(store_->Apply(*b).ok());
    log.Publish(*b);
  }
  EXPECT_EQ(seen, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(second.put_events[0].doc["kind"], "B");
  EXPECT_EQ(second.put_events[0].seq, 1);
}

TEST_F(EventLogTest, RetentionPrunesTheOldest) {
  EventLog log(/*retention=*/500, /*tail=*/10);
  ASSERT_TRUE(log.Load(*store_).ok());
  std::vector<Event> many(2000, E("Tick"));
  Commit(log, many);
  auto rows = store_->ListEvents(0, 10000, "", "", /*descending=*/false);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->front().seq, 1501);
  EXPECT_EQ(rows->back().seq, 2000);
}

}  // namespace
}  // namespace palm::events
