// Cgroups for real: each test creates its own parent group below this process's cgroup and
// skips (saying why) where that is impossible (no cgroupfs, not root, a v2 cgroup with
// processes in it). As root on a machine with cgroups they all run.
#include "palm/runtime/cgroup.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "boost/asio/io_context.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palm/runtime/process_runtime.h"
#include "palm/runtime/test_util.h"

namespace palm::runtime {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr auto kDeadline = std::chrono::seconds(20);
constexpr char kPython[] = "/usr/bin/python3";

TEST(CgroupNameTest, KeepsNamesAndEscapesTheRest) {
  EXPECT_EQ(CgroupName("buyer-001"), "buyer-001");
  EXPECT_EQ(CgroupName("default/buyer-001"), "default.buyer-001");
  EXPECT_EQ(CgroupName("a_b.c%"), "a%5fb%2ec%25");
  EXPECT_EQ(ProbeCgroupName(3).rfind("_probe-", 0), 0u);
}

TEST(CgroupDetectTest, DisabledMeansNone) {
  std::shared_ptr<Cgroups> cg = Cgroups::Detect({.enabled = false});
  EXPECT_FALSE(cg->available());
  EXPECT_EQ(cg->reason(), "disabled");
  EXPECT_EQ(ToString(cg->version()), "none");
}

TEST(CgroupDetectTest, NoCgroupMountsMeansNone) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("palm_cg_" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "cgroup") << "0::/\n";
  std::ofstream(dir / "mountinfo") << "22 1 0:21 / /proc rw - proc proc rw\n";
  std::shared_ptr<Cgroups> cg = Cgroups::Detect(
      {.proc_self_cgroup = (dir / "cgroup").string(), .proc_self_mountinfo = (dir / "mountinfo").string()});
  EXPECT_FALSE(cg->available());
  EXPECT_THAT(cg->reason(), HasSubstr("no memory hierarchy mounted"));
  fs::remove_all(dir);
}

std::string Read(const fs::path& p) { return testing::ReadFile(p); }
using testing::Exit;
using testing::Running;
bool Eventually(const std::function<bool()>& pred) { return testing::WaitFor(pred, kDeadline); }

int ReadPid(const fs::path& file) {
  int pid = 0;
  Eventually([&] {
    std::ifstream in(file);
    return static_cast<bool>(in >> pid) && pid > 0;
  });
  return pid;
}

class CgroupRuntimeTest : public testing::RuntimeFixture {
 protected:
  CgroupRuntimeTest() : RuntimeFixture(kDeadline) {}
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/palm_cgroup_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    parent_ = "palm-test-" + std::to_string(getpid()) + "-" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name();
    cgroups_ = Cgroups::Detect({.parent = parent_});
    if (!cgroups_->available()) {
      GTEST_SKIP() << "cannot create cgroups here: " << cgroups_->reason();
    }
    NewRuntime();
  }

  void TearDown() override {
    for (int pid : to_kill_) kill(-pid, SIGKILL), kill(pid, SIGKILL);
    rt_.reset();
    for (int pid : to_kill_) waitpid(pid, nullptr, 0);
    if (cgroups_ && cgroups_->available()) {
      // Whatever a failed test left, then the parent itself.
      for (const std::string& dir : cgroups_->Dirs("")) {
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(dir, ec)) {
          if (!e.is_directory()) continue;
          const std::string name = e.path().filename().string();
          (void)cgroups_->Kill(name);
          Eventually([&] { return !cgroups_->Populated(name); });
          (void)cgroups_->Remove(name);
        }
        ::rmdir(dir.c_str());
      }
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void NewRuntime(bool cgroups = true) {
    rt_.reset();
    ProcessRuntimeOptions options;
    options.limits_shim_path = PALM_LIMITS_SHIM;
    options.cgroups = cgroups ? CgroupUse::kAll : CgroupUse::kOff;
    options.cgroup_parent = parent_;
    options.exec_probes_use_cgroups = false;
    options.log_max_bytes = 0;  // agents write their logs themselves: no log shim
    Use(NewProcessRuntime(io_, options));
  }

  SpawnRequest Request(const std::string& id, std::vector<std::string> argv) {
    return MakeRequest(id, std::move(argv), dir_);
  }

  fs::path dir_;
  std::string parent_;
  std::shared_ptr<Cgroups> cgroups_;
};

TEST_F(CgroupRuntimeTest, SpawnPutsTheInstanceInItsOwnCgroupWithItsLimits) {
  SpawnRequest req = Request("default/a-001", {"sleep", "300"});
  req.limits.memory_mb = 64;
  req.limits.max_procs = 10;
  req.limits.cpu = 0.5;
  req.limits.max_open_files = 77;
  absl::StatusOr<Spawned> pid = Spawn(req);
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_EQ(pid->enforced_by, cgroups_->version() == CgroupVersion::kV2
                                  ? LimitsMechanism::kCgroupV2
                                  : LimitsMechanism::kCgroupV1);
  EXPECT_EQ(pid->enforced.memory_mb, 64);
  EXPECT_EQ(pid->enforced.max_procs, 10);
  EXPECT_EQ(pid->enforced.cpu, 0.5);
  EXPECT_EQ(pid->enforced.max_open_files, 77);
  const std::string name = CgroupName(req.instance_id);
  ASSERT_TRUE(Eventually([&] { return cgroups_->Contains(name, pid->pid); }));
  if (cgroups_->version() == CgroupVersion::kV1) {
    for (const std::string& dir : cgroups_->Dirs(name)) {
      if (fs::exists(dir + "/memory.limit_in_bytes")) {
        EXPECT_EQ(Read(dir + "/memory.limit_in_bytes"), std::to_string(64 << 20) + "\n");
      }
      if (fs::exists(dir + "/pids.max")) {
        EXPECT_EQ(Read(dir + "/pids.max"), "10\n");
      }
      if (fs::exists(dir + "/cpu.cfs_quota_us")) {
        EXPECT_EQ(Read(dir + "/cpu.cfs_quota_us"), "50000\n");
      }
    }
  }
  // The address space is not limited any more: only the open files are an rlimit.
  std::istringstream limits(Read("/proc/" + std::to_string(pid->pid) + "/limits"));
  for (std::string line; std::getline(limits, line);) {
    if (line.rfind("Max address space", 0) == 0) {
      EXPECT_THAT(line, HasSubstr("unlimited"));
    }
    if (line.rfind("Max open files", 0) == 0) {
      EXPECT_THAT(line, HasSubstr(" 77 "));
    }
  }
  ASSERT_TRUE(rt_->Signal(req.instance_id, SIGKILL).ok());
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_FALSE(cgroups_->Exists(name)) << "the group is removed once the instance is gone";
}

TEST_F(CgroupRuntimeTest, AnAgentAllocatingPastItsMemoryLimitIsOomKilled) {
  SpawnRequest req = Request("a-001", {kPython, "-c", "x = b'x' * (256 << 20); print('survived')"});
  req.limits.memory_mb = 64;
  ASSERT_TRUE(Spawn(req).ok());
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(exits_[0].status.signal, SIGKILL) << Read(req.log_path);
  EXPECT_THAT(Read(req.log_path), Not(HasSubstr("survived")));
}

TEST_F(CgroupRuntimeTest, ReservingAddressSpaceIsNotLimitedMemory) {
  // 4 GiB of PROT_NONE address space (what JVMs, Go and V8 reserve up front) and a lazily
  // touched 16 MiB: far past 64 MiB of address space, well within 64 MiB of memory.
  SpawnRequest req = Request(
      "a-001", {kPython, "-c",
                "import mmap\n"
                "m = mmap.mmap(-1, 4 << 30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=0)\n"
                "b = bytearray(16 << 20)\n"
                "print('ok')\n"});
  req.limits.memory_mb = 64;
  ASSERT_TRUE(Spawn(req).ok());
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(exits_[0].status.code, 0) << Read(req.log_path);
  EXPECT_EQ(Read(req.log_path), "ok\n");
}

// A fork bomb: forks until fork fails, prints how many children it got, keeps them.
constexpr char kForkBomb[] =
    "import os, sys, time\n"
    "n = 0\n"
    "while n < 200:\n"
    "    try:\n"
    "        pid = os.fork()\n"
    "    except OSError:\n"
    "        break\n"
    "    if pid == 0:\n"
    "        time.sleep(300)\n"
    "        os._exit(0)\n"
    "    n += 1\n"
    "print(n, flush=True)\n"
    "time.sleep(300)\n";

TEST_F(CgroupRuntimeTest, MaxProcsLimitsTheInstanceOnlyNotTheUser) {
  SpawnRequest req = Request("a-001", {kPython, "-c", kForkBomb});
  req.limits.max_procs = 20;
  absl::StatusOr<Spawned> pid = Spawn(req);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_TRUE(Eventually([&] { return !Read(req.log_path).empty(); })) << "no count printed";
  EXPECT_EQ(Read(req.log_path), "19\n");  // 20 tasks: the bomb and 19 children
  std::optional<Usage> usage = rt_->UsageOf("a-001");
  ASSERT_TRUE(usage.has_value());
  EXPECT_EQ(usage->procs, 20u);
  // Other processes of the same user still start: the limit is the instance's.
  for (int i = 0; i < 30; ++i) {
    char t[] = "true";
    char* argv[] = {t, nullptr};
    pid_t other;
    ASSERT_EQ(posix_spawn(&other, "/bin/true", nullptr, nullptr, argv, environ), 0);
    int st = 0;
    ASSERT_EQ(waitpid(other, &st, 0), other);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  // SIGKILL takes the bomb's children with it: the exit comes once they are all gone.
  ASSERT_TRUE(rt_->Signal("a-001", SIGKILL).ok());
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(exits_[0].status.signal, SIGKILL);
  EXPECT_FALSE(cgroups_->Exists(CgroupName("a-001")));
}

TEST_F(CgroupRuntimeTest, RlimitsWhenCgroupsAreDisabled) {
  NewRuntime(/*cgroups=*/false);
  SpawnRequest req = Request("a-001", {"sh", "-c", "ulimit -v; cat /proc/self/cgroup"});
  req.limits.memory_mb = 512;
  req.limits.max_procs = 10000;
  absl::StatusOr<Spawned> pid = Spawn(req);
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_EQ(pid->enforced_by, LimitsMechanism::kRlimit);
  EXPECT_EQ(pid->enforced.memory_mb, 512);
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(exits_[0].status.code, 0);
  EXPECT_THAT(Read(req.log_path), HasSubstr("524288\n"));
  EXPECT_THAT(Read(req.log_path), Not(HasSubstr(parent_)));
  EXPECT_FALSE(cgroups_->Exists(CgroupName("a-001")));
}

TEST_F(CgroupRuntimeTest, ASetsidGrandchildDiesWithTheWrapper) {
  const fs::path child = dir_ / "child.pid", grandchild = dir_ / "grandchild.pid";
  SpawnRequest req = Request(
      "a-001", {"sh", "-c",
                "sleep 300 & echo $! > " + child.string() + "; setsid sh -c 'echo $$ > " +
                    grandchild.string() + "; exec sleep 300' & sleep 0.2; exit 3"});
  ASSERT_TRUE(Spawn(req).ok());
  const int c = ReadPid(child), g = ReadPid(grandchild);
  ASSERT_GT(c, 0);
  ASSERT_GT(g, 0);
  to_kill_.push_back(c);
  to_kill_.push_back(g);
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(exits_[0].status.code, 3);
  // Reported only once the cgroup is empty: both are gone already (or zombies).
  EXPECT_FALSE(Running(c));
  EXPECT_FALSE(Running(g)) << "the setsid'd grandchild escaped";
  EXPECT_FALSE(cgroups_->Exists(CgroupName("a-001")));
}

TEST_F(CgroupRuntimeTest, SigkillStopReachesWhatLeftTheGroup) {
  const fs::path grandchild = dir_ / "grandchild.pid";
  SpawnRequest req = Request(
      "a-001", {"sh", "-c",
                "setsid sh -c 'echo $$ > " + grandchild.string() + "; exec sleep 300' & wait"});
  ASSERT_TRUE(Spawn(req).ok());
  const int g = ReadPid(grandchild);
  ASSERT_GT(g, 0);
  to_kill_.push_back(g);
  ASSERT_TRUE(rt_->Signal("a-001", SIGKILL).ok());
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_FALSE(Running(g));
}

TEST_F(CgroupRuntimeTest, AnAdoptedInstanceIsKilledByItsCgroup) {
  // The first runtime starts a wrapper whose child `inner` outlives it (and has a setsid'd
  // child of its own), then goes away as a daemon does; the wrapper's exit is never seen.
  const fs::path inner_file = dir_ / "inner.pid", grandchild = dir_ / "grandchild.pid";
  SpawnRequest req = Request(
      "a-001", {"sh", "-c",
                "sh -c \"setsid sh -c 'echo \\$\\$ > " + grandchild.string() +
                    "; exec sleep 300' & exec sleep 300\" & echo $! > " + inner_file.string() +
                    "; exit 0"});
  absl::StatusOr<Spawned> wrapper = Spawn(req);
  ASSERT_TRUE(wrapper.ok()) << wrapper.status();
  rt_.reset();
  const int inner = ReadPid(inner_file), g = ReadPid(grandchild);
  ASSERT_GT(inner, 0);
  ASSERT_GT(g, 0);
  to_kill_.push_back(inner);
  to_kill_.push_back(g);
  ASSERT_EQ(waitpid(wrapper->pid, nullptr, 0), wrapper->pid);  // now `inner` is init's
  ASSERT_TRUE(Eventually([&] { return Read("/proc/" + std::to_string(inner) + "/comm") == "sleep\n"; }));

  NewRuntime();  // the daemon restarted
  ASSERT_TRUE(rt_->Adopt("a-001", ProcessId{inner, ProcStartTime(inner).value(), ReadBootId()},
                         req.log_path)
                  .ok());
  kill(inner, SIGKILL);
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(exits_[0].status.code, std::nullopt);  // not our child
  EXPECT_FALSE(Running(g)) << "the adopted instance's setsid'd grandchild survived";
  EXPECT_FALSE(cgroups_->Exists(CgroupName("a-001")));
}

TEST_F(CgroupRuntimeTest, SpawnKillsLeftoversOfAnEarlierRunInTheSameGroup) {
  // A daemon lost track of an instance whose orphan still runs in its group: the next
  // start of that instance must not run beside it (same port, same work).
  const fs::path orphan_file = dir_ / "orphan.pid";
  SpawnRequest first = Request("a-001", {"sh", "-c", "setsid sh -c 'echo $$ > " + orphan_file.string() + "; exec sleep 300' & exec sleep 300"});
  absl::StatusOr<Spawned> pid = Spawn(first);
  ASSERT_TRUE(pid.ok());
  const int orphan = ReadPid(orphan_file);
  ASSERT_GT(orphan, 0);
  to_kill_.push_back(orphan);
  rt_->Forget("a-001");
  kill(pid->pid, SIGKILL);
  ASSERT_EQ(waitpid(pid->pid, nullptr, 0), pid->pid);
  ASSERT_TRUE(Running(orphan));
  ASSERT_TRUE(Spawn(Request("a-001", {"sleep", "300"})).ok());
  EXPECT_TRUE(Eventually([&] { return !Running(orphan); }));
  ASSERT_TRUE(rt_->Signal("a-001", SIGKILL).ok());
  ASSERT_TRUE(RunUntilExits(1));
}

TEST_F(CgroupRuntimeTest, UsageComesFromTheCgroup) {
  SpawnRequest req = Request(
      "a-001", {kPython, "-c",
                "import time\n"
                "x = b'x' * (48 << 20)\n"
                "t = time.time()\n"
                "while time.time() - t < 0.2: pass\n"
                "print('ready', flush=True)\n"
                "time.sleep(300)\n"});
  ASSERT_TRUE(Spawn(req).ok());
  ASSERT_TRUE(Eventually([&] { return Read(req.log_path) == "ready\n"; }));
  std::optional<Usage> u = rt_->UsageOf("a-001");
  ASSERT_TRUE(u.has_value());
  EXPECT_GE(u->memory_bytes, uint64_t{48} << 20);
  EXPECT_GE(u->cpu_ns, uint64_t{100'000'000});  // it spun for 0.2 s
  EXPECT_EQ(u->procs, 1u);
  EXPECT_EQ(rt_->UsageOf("a-002"), std::nullopt);
  ASSERT_TRUE(rt_->Signal("a-001", SIGKILL).ok());
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(rt_->UsageOf("a-001"), std::nullopt);
}

}  // namespace
}  // namespace palm::runtime
