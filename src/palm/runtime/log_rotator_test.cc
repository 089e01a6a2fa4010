#include "palm/runtime/log_rotator.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"

namespace palm::runtime {
namespace {

namespace fs = std::filesystem;

std::string Read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A fresh directory for one test, unique even across concurrent runs of this binary.
std::filesystem::path MakeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/palm_runtime_test_XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

class LogRotatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    log_ = (dir_ / "agent.log").string();
    // The agent's view: one O_APPEND fd held for its whole life.
    fd_ = open(log_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    ASSERT_GE(fd_, 0);
  }
  void TearDown() override {
    close(fd_);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void Append(const std::string& s) {
    ASSERT_EQ(write(fd_, s.data(), s.size()), static_cast<ssize_t>(s.size()));
  }
  fs::path dir_;
  std::string log_;
  int fd_ = -1;
};

TEST_F(LogRotatorTest, SmallOrMissingFileIsLeftAlone) {
  Append("0123456789");
  EXPECT_EQ(*RotateLogIfLarger(log_, 10, 3), false);
  EXPECT_EQ(Read(log_), "0123456789");
  EXPECT_FALSE(fs::exists(log_ + ".1"));
  EXPECT_EQ(*RotateLogIfLarger((dir_ / "missing.log").string(), 0, 3), false);
}

TEST_F(LogRotatorTest, CopyTruncateShiftsAndDropsTheOldest) {
  Append("first-generation\n");
  ASSERT_EQ(*RotateLogIfLarger(log_, 10, 2), true);
  EXPECT_EQ(Read(log_), "");
  EXPECT_EQ(Read(log_ + ".1"), "first-generation\n");

  // The agent keeps writing through its O_APPEND fd: the data lands at the new start.
  Append("second-generation\n");
  EXPECT_EQ(Read(log_), "second-generation\n");
  EXPECT_EQ(fs::file_size(log_), 18u);
  ASSERT_EQ(*RotateLogIfLarger(log_, 10, 2), true);
  EXPECT_EQ(Read(log_ + ".1"), "second-generation\n");
  EXPECT_EQ(Read(log_ + ".2"), "first-generation\n");

  Append("third-generation\n");
  ASSERT_EQ(*RotateLogIfLarger(log_, 10, 2), true);
  EXPECT_EQ(Read(log_ + ".1"), "third-generation\n");
  EXPECT_EQ(Read(log_ + ".2"), "second-generation\n");
  EXPECT_FALSE(fs::exists(log_ + ".3"));
  EXPECT_FALSE(fs::exists(log_ + ".1.tmp"));
  EXPECT_EQ((fs::status(log_ + ".1").permissions() & fs::perms::all),
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
}

TEST_F(LogRotatorTest, KeepZeroOnlyTruncates) {
  Append("some output that is too long\n");
  ASSERT_EQ(*RotateLogIfLarger(log_, 5, 0), true);
  EXPECT_EQ(Read(log_), "");
  EXPECT_FALSE(fs::exists(log_ + ".1"));
  Append("more\n");
  EXPECT_EQ(Read(log_), "more\n");
}

TEST_F(LogRotatorTest, LargeFileCopiedCompletely) {
  std::string big(3 * 1024 * 1024 + 17, 'x');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + (i / 4096) % 26);
  Append(big);
  ASSERT_EQ(*RotateLogIfLarger(log_, 1024, 1), true);
  EXPECT_EQ(Read(log_ + ".1"), big);
  EXPECT_EQ(fs::file_size(log_), 0u);
}

TEST_F(LogRotatorTest, FailureIsReportedAndLiveFileKept) {
  Append("0123456789abcdef");
  // .1 cannot be created: a directory occupies its temporary name.
  fs::create_directories(log_ + ".1.tmp");
  absl::StatusOr<bool> r = RotateLogIfLarger(log_, 4, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(std::string(r.status().message()).find(".1.tmp"), std::string::npos);
  EXPECT_EQ(Read(log_), "0123456789abcdef");
}

}  // namespace
}  // namespace palm::runtime
