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
  auto listed = log.List(*store_, "default", "", 0, 100);
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
    auto from_store = log.List(*store_, "default", "web", 0, 100);
    ASSERT_TRUE(from_store.ok());
    ASSERT_EQ(from_store->size(), 4u);  // not "B": another deployment
    EXPECT_EQ((*from_store)[0]["kind"], "A");
    auto from_tail = log.List(*store_, "default", "", 3, 100);
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
  auto rows = store_->ListEvents(0, 10000, "", "");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->front().seq, 1501);
  EXPECT_EQ(rows->back().seq, 2000);
}

}  // namespace
}  // namespace palm::events
