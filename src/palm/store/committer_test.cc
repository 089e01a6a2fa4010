// The committer's failure rule against a real SQLite store behind a FaultyStore: a failed
// batch is kept and retried with later changes, published once, and never half-applied.
#include "palm/store/committer.h"

#include <stdlib.h>

#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palm/base/error.h"
#include "palm/testing/faulty_store.h"

namespace palm::store {
namespace {

using ::testing::HasSubstr;

class CommitterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "palm-commit-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    auto s = OpenSqliteStore(dir_ + "/palm.db");
    ASSERT_TRUE(s.ok()) << s.status();
    sqlite_ = std::move(*s);
    faulty_ = std::make_unique<testing::FaultyStore>(*sqlite_);
  }
  void TearDown() override {
    faulty_.reset();
    sqlite_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::string dir_;
  std::unique_ptr<Store> sqlite_;
  std::unique_ptr<testing::FaultyStore> faulty_;
};

TEST_F(CommitterTest, AFailedBatchIsKeptAndRetriedWithLaterChanges) {
  int sealed = 0;
  std::vector<size_t> published;
  Committer c(*faulty_, "test",
              {[&](WriteBatch*) { ++sealed; },
               [&](const WriteBatch& b) { published.push_back(b.put_instances.size()); }});
  EXPECT_TRUE(c.Commit().ok()) << "nothing pending";
  EXPECT_EQ(sealed, 0);

  c.pending().put_instances.push_back({"default", "web-001", "web", {{"state", "Starting"}}});
  faulty_->FailNextApplies(2);
  absl::Status st = c.Commit();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(c.retrying());
  EXPECT_EQ(c.pending().put_instances.size(), 1u) << "kept";
  EXPECT_TRUE(published.empty()) << "nothing is published before it is durable";

  // A later change joins the kept batch; a delete drops the kept put of the same row.
  c.pending().put_instances.push_back({"default", "web-002", "web", {{"state", "Starting"}}});
  c.pending().DeleteInstance("default", "web-001");
  EXPECT_FALSE(c.Commit().ok());
  EXPECT_EQ(c.failures(), 2);
  ASSERT_TRUE(c.Commit().ok());
  EXPECT_FALSE(c.retrying());
  EXPECT_TRUE(c.pending().empty());
  EXPECT_EQ(sealed, 3) << "sealed again before every attempt";
  EXPECT_EQ(published, std::vector<size_t>{1});
  auto rows = sqlite_->ListInstances();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].id, "web-002");
}

TEST_F(CommitterTest, NotYetDurableSaysTheChangeIsKeptAndRetried) {
  absl::Status st = NotYetDurable(absl::UnavailableError("disk I/O error"), "scaling web to 5");
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorCode(st), "STORE_UNAVAILABLE");
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("scaling web to 5 is not yet durable: the store could not commit "
                        "(disk I/O error); the change is kept in the daemon and the write is "
                        "retried"));
  EXPECT_FALSE(ErrorHint(st).empty());
}

}  // namespace
}  // namespace palm::store
