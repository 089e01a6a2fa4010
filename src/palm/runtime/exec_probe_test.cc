#include "palm/runtime/exec_probe.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include "boost/asio/steady_timer.hpp"
#include "palm/runtime/cgroup.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace palm::runtime {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::map<std::string, std::string> Env() {
  const char* p = std::getenv("PATH");
  return {{"PATH", p != nullptr ? p : "/usr/bin:/bin"}};
}

ExecResult RunProbe(std::vector<std::string> argv, absl::Duration timeout = absl::Seconds(5),
               std::string workdir = "", std::map<std::string, std::string> env = Env()) {
  boost::asio::io_context io;
  std::optional<ExecResult> result;
  int calls = 0;
  RunExecProbe(io, ExecProbeOptions{}, std::move(argv), std::move(env), std::move(workdir), timeout,
               [&](ExecResult r) {
                 ++calls;
                 result = std::move(r);
               });
  EXPECT_EQ(calls, 0) << "done must not run inside RunExecProbe";
  io.run_for(std::chrono::seconds(10));
  EXPECT_EQ(calls, 1);
  return result.value_or(ExecResult{false, "no result", absl::ZeroDuration()});
}

bool Alive(int pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

// Alive and not a zombie.
bool Running(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return false;
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

class ExecProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("palm_exec_probe_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(ExecProbeTest, ExitZeroIsSuccess) {
  ExecResult r = RunProbe({"true"});
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_GT(r.latency, absl::ZeroDuration());
}

TEST_F(ExecProbeTest, ExitCodeAndOutputInMessage) {
  ExecResult r = RunProbe({"sh", "-c", "echo 'db down'; echo second >&2; exit 3"});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.message, "exit code 3: db down second");
}

TEST_F(ExecProbeTest, OutputIsCappedAndAChattyProbeDoesNotBlock) {
  // 1 MiB of output: more than a pipe holds, so the probe would block if we stopped reading.
  ExecResult r = RunProbe({"sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' x; exit 1"},
                     absl::Seconds(5));
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(r.message, StartsWith("exit code 1: xxxx"));
  EXPECT_LE(r.message.size(), 220u);
}

TEST_F(ExecProbeTest, KilledBySignal) {
  ExecResult r = RunProbe({"sh", "-c", "kill -SEGV $$"});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.message, "killed by SIGSEGV");
}

TEST_F(ExecProbeTest, CommandNotFound) {
  ExecResult r = RunProbe({"palm-no-such-probe-command"});
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(r.message, StartsWith("command not found: "));
}

TEST_F(ExecProbeTest, BadWorkdir) {
  ExecResult r = RunProbe({"/bin/true"}, absl::Seconds(5), (dir_ / "missing").string());
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(r.message, HasSubstr("missing"));
}

TEST_F(ExecProbeTest, RunsInWorkdirWithGivenEnvOnly) {
  ExecResult r = RunProbe({"sh", "-c", "test \"$(pwd)\" = \"$WANT\" && test -z \"$HOME\""},
                     absl::Seconds(5), dir_.string(),
                     {{"PATH", "/usr/bin:/bin"}, {"WANT", dir_.string()}});
  EXPECT_TRUE(r.ok) << r.message;
}

TEST_F(ExecProbeTest, TimeoutKillsTheProbeAndItsGroup) {
  const std::string pidfile = (dir_ / "pids").string();
  const auto start = std::chrono::steady_clock::now();
  ExecResult r = RunProbe({"sh", "-c", "sleep 30 & echo $$ $! > " + pidfile + "; wait"},
                     absl::Milliseconds(300));
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(r.message, StartsWith("timed out after 300ms (killed)"));
  EXPECT_LT(took, std::chrono::seconds(3));
  std::ifstream in(pidfile);
  int sh = 0, sleeper = 0;
  in >> sh >> sleeper;
  ASSERT_GT(sh, 0);
  ASSERT_GT(sleeper, 0);
  EXPECT_FALSE(Alive(sh)) << "the probe was reaped, not left as a zombie";
  // The background sleep is not our child: it is dead once gone or a zombie (its reaper,
  // pid 1, may take a while to collect it).
  for (int i = 0; i < 100 && Running(sleeper); ++i) ::usleep(10'000);
  EXPECT_FALSE(Running(sleeper));
}

int ReadPidFile(const std::string& path, std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  int pid = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(path);
    if (in >> pid && pid > 0) return pid;
    ::usleep(5'000);
  }
  return 0;
}

// Runs a probe whose command leaves a setsid'd child holding the probe's stdout, with a
// 10 ms timer ticking on the same loop, the loop on its own thread so that a loop stuck in a
// read is seen as such (and then unstuck by killing the child) instead of hanging the test.
struct SetsidRun {
  std::optional<ExecResult> result;
  int ticks_before = 0;  // timer ticks while the probe ran
  int ticks_after = 0;   // and after its result came
  bool stuck = false;    // no result within 5 s
  int child = 0;
};

SetsidRun RunSetsidProbe(const ExecProbeOptions& options, const std::string& pidfile) {
  SetsidRun run;
  boost::asio::io_context io;
  std::atomic<bool> done{false};
  boost::asio::steady_timer tick(io);
  std::function<void()> arm = [&] {
    tick.expires_after(std::chrono::milliseconds(10));
    tick.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      if (!done) {
        ++run.ticks_before;
      } else if (++run.ticks_after >= 5) {
        return;  // enough: the loop is free after the result too
      }
      arm();
    });
  };
  arm();
  RunExecProbe(io, options,
               {"sh", "-c",
                "setsid sh -c 'echo $$ > " + pidfile + "; exec sleep 600' & sleep 0.2; echo x; exit 1"},
               Env(), "", absl::Seconds(3), [&](ExecResult r) {
                 run.result = std::move(r);
                 done = true;
               });
  std::thread loop([&] { io.run_for(std::chrono::seconds(20)); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done && std::chrono::steady_clock::now() < deadline) ::usleep(5'000);
  run.child = ReadPidFile(pidfile, std::chrono::seconds(2));
  if (!done) {
    run.stuck = true;
    if (run.child > 0) ::kill(run.child, SIGKILL);  // releases the pipe, and the loop
  }
  loop.join();
  return run;
}

TEST_F(ExecProbeTest, ASetsidChildHoldingTheOutputPipeBlocksNeitherTheLoopNorTheResult) {
  const std::string pidfile = (dir_ / "child.pid").string();
  SetsidRun run = RunSetsidProbe(ExecProbeOptions{}, pidfile);  // no cgroup: worst case
  if (run.child > 0 && Running(run.child)) ::kill(run.child, SIGKILL);  // it escapes here
  ASSERT_FALSE(run.stuck) << "the probe's result never came: the loop was blocked";
  ASSERT_TRUE(run.result.has_value());
  EXPECT_EQ(run.result->message, "exit code 1: x");
  EXPECT_LT(run.result->latency, absl::Seconds(3)) << "within its timeout";
  EXPECT_GT(run.ticks_before, 0) << "the loop kept ticking while the probe ran";
  EXPECT_EQ(run.ticks_after, 5) << "and after";
}

TEST_F(ExecProbeTest, WithACgroupWhatTheProbeLeftIsKilledAndTheGroupRemoved) {
  CgroupOptions cg_options;
  cg_options.parent = "palm-test-" + std::to_string(::getpid()) + "-probe";
  std::shared_ptr<Cgroups> cgroups = Cgroups::Detect(cg_options);
  if (!cgroups->available()) GTEST_SKIP() << "cannot create cgroups here: " << cgroups->reason();
  const std::string pidfile = (dir_ / "child.pid").string();
  SetsidRun run = RunSetsidProbe(ExecProbeOptions{cgroups, PALM_LIMITS_SHIM}, pidfile);
  ASSERT_FALSE(run.stuck);
  ASSERT_TRUE(run.result.has_value());
  EXPECT_EQ(run.result->message, "exit code 1: x");
  ASSERT_GT(run.child, 0);
  for (int i = 0; i < 200 && Running(run.child); ++i) ::usleep(10'000);
  EXPECT_FALSE(Running(run.child)) << "the setsid'd child survived its probe";
  if (Running(run.child)) ::kill(run.child, SIGKILL);
  // The run's group is gone too: only the (empty) parent is left, removed here.
  for (const std::string& dir : cgroups->Dirs("")) {
    EXPECT_EQ(::rmdir(dir.c_str()), 0) << dir << ": " << std::strerror(errno);
  }
}

TEST_F(ExecProbeTest, ManyConcurrentProbesOnOneLoop) {
  boost::asio::io_context io;
  int ok = 0, failed = 0;
  for (int i = 0; i < 20; ++i) {
    RunExecProbe(io, ExecProbeOptions{}, {"sh", "-c", i % 2 ? "exit 0" : "sleep 5"}, Env(), "",
                 absl::Milliseconds(200), [&](ExecResult r) { (r.ok ? ok : failed)++; });
  }
  io.run_for(std::chrono::seconds(5));
  EXPECT_EQ(ok, 10);
  EXPECT_EQ(failed, 10);
}

}  // namespace
}  // namespace palm::runtime
