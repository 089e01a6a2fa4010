#include "palm/runtime/proc.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "palm/runtime/process_runtime.h"

namespace palm::runtime {
namespace {

// A fresh directory for one test, unique even across concurrent runs of this binary.
std::filesystem::path MakeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/palm_runtime_test_XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

std::string StatLine(const std::string& comm, uint64_t start) {
  // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
  // stime cutime cstime priority nice threads itrealvalue starttime vsize ...
  return "4242 (" + comm + ") S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 " +
         std::to_string(start) + " 2400000 200 18446744073709551615 1 1 0 0 0 0 0\n";
}

TEST(ParseStatStartTime, PlainComm) {
  EXPECT_EQ(ParseStatStartTime(StatLine("sleep", 123456)), 123456u);
}

TEST(ParseStatStartTime, CommWithSpacesAndParentheses) {
  EXPECT_EQ(ParseStatStartTime(StatLine("a) b (c) 9 9", 777)), 777u);
  EXPECT_EQ(ParseStatStartTime(StatLine(")", 1)), 1u);
  EXPECT_EQ(ParseStatStartTime(StatLine("", 5)), 5u);
}

TEST(ParseStatStartTime, Malformed) {
  EXPECT_EQ(ParseStatStartTime(""), std::nullopt);
  EXPECT_EQ(ParseStatStartTime("4242 sleep S 1"), std::nullopt);
  EXPECT_EQ(ParseStatStartTime("4242 (sleep) S 1 2 3"), std::nullopt);
  std::string bad = StatLine("x", 1);
  bad.replace(bad.find(" 1 2400000"), 2, " z");
  EXPECT_EQ(ParseStatStartTime(bad), std::nullopt);
}

TEST(ProcStartTime, SelfAndMissing) {
  const std::optional<uint64_t> self = ProcStartTime(getpid());
  ASSERT_TRUE(self.has_value());
  EXPECT_EQ(ProcStartTime(0), std::nullopt);
  EXPECT_EQ(ProcStartTime(-1), std::nullopt);
  EXPECT_EQ(ProcStartTime(0x3ffffff), std::nullopt);  // above any pid_max
}

// A real process whose comm contains ") (" and spaces: exec'd through such a symlink.
TEST(ProcStartTime, RealProcessWithHostileComm) {
  const auto dir = MakeTempDir();
  const auto link = dir / "x) (y z";
  std::filesystem::create_symlink("/bin/sleep", link);
  const std::string link_str = link.string();
  char arg0[] = "sleep";
  char arg1[] = "5";
  char* argv[] = {arg0, arg1, nullptr};
  char* envp[] = {nullptr};
  pid_t pid;
  ASSERT_EQ(posix_spawn(&pid, link_str.c_str(), nullptr, nullptr, argv, envp), 0);
  // posix_spawn returns after the exec, so the comm is already the hostile one.
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(comm, name);
  EXPECT_EQ(name, "x) (y z");
  const std::optional<uint64_t> self = ProcStartTime(getpid());
  const std::optional<uint64_t> child = ProcStartTime(pid);
  ASSERT_TRUE(child.has_value());
  EXPECT_GE(*child, *self);
  kill(pid, SIGKILL);
  int st;
  waitpid(pid, &st, 0);
  EXPECT_EQ(ProcStartTime(pid), std::nullopt);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace palm::runtime

namespace palm::runtime {
namespace {

TEST(ParseEnviron, SplitsEntriesAndKeepsTheFirstDuplicate) {
  std::string blob("A=1\0B=x=y\0NOEQ\0A=2\0=bad\0", 24);
  auto env = ParseEnviron(blob);
  EXPECT_EQ(env.size(), 2u);
  EXPECT_EQ(env["A"], "1");
  EXPECT_EQ(env["B"], "x=y");
}

TEST(ScanProcessesWithEnvKey, FindsALiveProcessByItsEnvironment) {
  std::string key = "PALM_SCAN_TEST_" + std::to_string(::getpid());
  std::string entry = key + "=yes";
  char* argv[] = {const_cast<char*>("/bin/sleep"), const_cast<char*>("30"), nullptr};
  char* envp[] = {entry.data(), nullptr};
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, "/bin/sleep", nullptr, nullptr, argv, envp), 0);
  // posix_spawn returns while the kernel may still be setting up the new image, whose
  // environment only then becomes readable: poll, with a deadline.
  std::vector<FoundProcess> found;
  for (int i = 0; i < 2000 && found.empty(); ++i) {
    found = ScanProcessesWithEnvKey(key);
    if (found.empty()) ::usleep(1000);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].pid.pid, pid);
  EXPECT_EQ(found[0].env.at(key), "yes");
  EXPECT_GT(found[0].pid.start_time, 0u);
  EXPECT_TRUE(ScanProcessesWithEnvKey(key).empty());  // gone (and reaped) now
}

}  // namespace
}  // namespace palm::runtime
