#include "palm/runtime/process_runtime.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "boost/asio/io_context.hpp"
#include "boost/asio/steady_timer.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palm/runtime/test_util.h"

namespace palm::runtime {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr auto kDeadline = std::chrono::seconds(10);

std::string Read(const fs::path& p) { return testing::ReadFile(p); }
using testing::Exit;
using testing::Running;

// Waits for a condition that does not depend on the io_context (e.g. another process).
bool Eventually(const std::function<bool()>& pred) { return testing::WaitFor(pred, kDeadline); }

// Live log services (their command line says so) that are our children.
std::set<int> OurLogServices() {
  std::set<int> pids;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = Read(e.path() / "cmdline");  // empty for a zombie
    if (cmdline.find("__log-service") == std::string::npos) continue;
    const std::string stat = Read(e.path() / "stat");
    int ppid = 0;
    if (const size_t paren = stat.rfind(')'); paren != std::string::npos) {
      std::sscanf(stat.c_str() + paren + 2, "%*c %d", &ppid);
    }
    if (ppid == getpid()) pids.insert(std::stoi(name));
  }
  return pids;
}

// The pid of the log service reading `agent`'s stdout (it holds the pipe's other end, once
// it has received it), or 0 when none does by the deadline.
int FindLogService(int agent) {
  std::error_code ec;
  const std::string out =
      fs::read_symlink("/proc/" + std::to_string(agent) + "/fd/1", ec).string();
  if (ec || !out.starts_with("pipe:")) return 0;
  int found = 0;
  Eventually([&] {
    for (const int pid : OurLogServices()) {
      for (const auto& fd : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
        if (fs::read_symlink(fd.path(), ec).string() == out) found = pid;
      }
    }
    return found != 0;
  });
  return found;
}

// A fresh directory for one test, unique even across concurrent runs of this binary.
std::filesystem::path MakeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/palm_runtime_test_XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

class ProcessRuntimeTest : public testing::RuntimeFixture {
 protected:
  ProcessRuntimeTest() : RuntimeFixture(kDeadline) {}
  void SetUp() override {
    dir_ = MakeTempDir();
    NewRuntime({});
  }

  void TearDown() override {
    // Leave no process behind, even when a test failed half-way.
    for (int pid : to_kill_) kill(-pid, SIGKILL), kill(pid, SIGKILL);
    const std::set<int> services = OurLogServices();
    rt_.reset();
    // SIGKILLed, so this returns promptly; ECHILD for those already reaped or not ours.
    for (int pid : to_kill_) waitpid(pid, nullptr, 0);
    // The log service outlives the runtime until its pipes close (the agents are dead).
    for (int pid : services) {
      if (!Eventually([&] { return waitpid(pid, nullptr, WNOHANG) != 0; })) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Without cgroups: these tests cover process groups and rlimits (cgroup_test.cc covers
  // cgroups).
  void NewRuntime(ProcessRuntimeOptions options) {
    options.limits_shim_path = PALM_LIMITS_SHIM;
    options.cgroups = CgroupUse::kOff;
    if (options.log_shim_path.empty()) options.log_shim_path = PALM_LOG_SHIM;
    Use(NewProcessRuntime(io_, options));
  }

  SpawnRequest Request(const std::string& id, std::vector<std::string> argv) {
    return MakeRequest(id, std::move(argv), dir_ / "logs");
  }

  fs::path dir_;
};

TEST_F(ProcessRuntimeTest, OutputGoesToLogAndExitCodeIsReported) {
  SpawnRequest req = Request("a-001", {"sh", "-c", "echo hi; echo err >&2; exit 3"});
  absl::StatusOr<ProcessId> pid = Spawn(req);
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_GT(pid->pid, 0);
  EXPECT_EQ(pid->start_time, ProcStartTime(pid->pid).value_or(0));
  EXPECT_EQ(rt_->Watched(), 1u);
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(exits_[0].instance_id, "a-001");
  EXPECT_EQ(exits_[0].status.code, 3);
  EXPECT_EQ(exits_[0].status.signal, std::nullopt);
  EXPECT_EQ(rt_->Watched(), 0u);
  EXPECT_EQ(Read(req.log_path), "hi\nerr\n");
  EXPECT_EQ(fs::status(req.log_path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  // The child was reaped by the runtime.
  EXPECT_EQ(waitpid(pid->pid, nullptr, WNOHANG), -1);
}

TEST_F(ProcessRuntimeTest, LogIsAppendedNotTruncated) {
  SpawnRequest req = Request("a-001", {"/bin/echo", "second"});
  fs::create_directories(fs::path(req.log_path).parent_path());
  std::ofstream(req.log_path) << "first\n";
  ASSERT_TRUE(Spawn(req).ok());
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(exits_[0].status.code, 0);
  EXPECT_EQ(Read(req.log_path), "first\nsecond\n");
}

TEST_F(ProcessRuntimeTest, StdinIsDevNull) {
  SpawnRequest req = Request("a-001", {"sh", "-c", "cat; echo done"});
  ASSERT_TRUE(Spawn(req).ok());
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(exits_[0].status.code, 0);
  EXPECT_EQ(Read(req.log_path), "done\n");
}

TEST_F(ProcessRuntimeTest, KilledBySignalIsReported) {
  absl::StatusOr<ProcessId> pid = Spawn(Request("a-001", {"sleep", "30"}));
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_TRUE(rt_->Signal("a-001", SIGTERM).ok());
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(exits_[0].status.signal, SIGTERM);
  EXPECT_EQ(exits_[0].status.code, std::nullopt);
  EXPECT_EQ(rt_->Signal("a-001", SIGTERM).code(), absl::StatusCode::kNotFound);
}

TEST_F(ProcessRuntimeTest, SignalDefaultsAreRestoredInTheChild) {
  // The daemon blocks and ignores signals; the agent must not inherit that.
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &block, &old), 0);
  struct sigaction ign = {}, old_int;
  ign.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGINT, &ign, &old_int), 0);
  absl::StatusOr<ProcessId> a = Spawn(Request("a-001", {"sleep", "30"}));
  absl::StatusOr<ProcessId> b = Spawn(Request("a-002", {"sleep", "30"}));
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  sigaction(SIGINT, &old_int, nullptr);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(rt_->Signal("a-001", SIGTERM).ok());
  ASSERT_TRUE(rt_->Signal("a-002", SIGINT).ok());
  ASSERT_TRUE(RunUntilExits(2));
  for (const Exit& e : exits_) {
    EXPECT_EQ(e.status.signal, e.instance_id == "a-001" ? SIGTERM : SIGINT) << e.instance_id;
  }
}

TEST_F(ProcessRuntimeTest, CommandNotFound) {
  absl::StatusOr<ProcessId> pid = Spawn(Request("a-001", {"palm-no-such-command", "x"}));
  ASSERT_EQ(pid.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(pid.status().message()),
            "command \"palm-no-such-command\" not found on PATH (/usr/bin:/bin)");
  EXPECT_EQ(rt_->Watched(), 0u);
  EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1);  // no child was created
  EXPECT_EQ(Spawn(Request("a-001", {"/nonexistent/bin/x"})).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ProcessRuntimeTest, PathComesFromTheRequestEnv) {
  SpawnRequest req = Request("a-001", {"sleep", "0"});
  req.env["PATH"] = dir_.string();  // no sleep there, though the daemon's PATH has one
  EXPECT_EQ(Spawn(req).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ProcessRuntimeTest, CommandNotExecutable) {
  const fs::path script = dir_ / "script.sh";
  std::ofstream(script) << "#!/bin/sh\necho hi\n";
  fs::permissions(script, fs::perms::owner_read | fs::perms::owner_write);
  absl::StatusOr<ProcessId> pid = Spawn(Request("a-001", {script.string()}));
  EXPECT_EQ(pid.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(pid.status().message()), HasSubstr("not executable"));
  EXPECT_EQ(rt_->Watched(), 0u);
}

TEST_F(ProcessRuntimeTest, BadWorkdir) {
  SpawnRequest req = Request("a-001", {"sleep", "0"});
  req.workdir = (dir_ / "missing").string();
  absl::StatusOr<ProcessId> pid = Spawn(req);
  ASSERT_EQ(pid.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(pid.status().message()), HasSubstr(req.workdir));
  EXPECT_EQ(rt_->Watched(), 0u);

  std::ofstream(dir_ / "file") << "x";
  req.workdir = (dir_ / "file").string();
  EXPECT_EQ(Spawn(req).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(ProcessRuntimeTest, WorkdirIsTheChildsCwd) {
  fs::create_directories(dir_ / "work");
  std::ofstream(dir_ / "work" / "run.sh") << "#!/bin/sh\npwd\n";
  fs::permissions(dir_ / "work" / "run.sh", fs::perms::owner_all);
  SpawnRequest req = Request("a-001", {"./run.sh"});  // relative to the workdir
  req.workdir = (dir_ / "work").string();
  absl::StatusOr<ProcessId> pid = Spawn(req);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(Read(req.log_path), fs::canonical(dir_ / "work").string() + "\n");
}

TEST_F(ProcessRuntimeTest, EachAgentHasItsOwnProcessGroup) {
  absl::StatusOr<ProcessId> pid = Spawn(Request("a-001", {"sleep", "30"}));
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_EQ(getpgid(pid->pid), pid->pid);
  EXPECT_NE(getpgid(pid->pid), getpgid(0));
  ASSERT_TRUE(rt_->Signal("a-001", SIGKILL).ok());
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(exits_[0].status.signal, SIGKILL);
}

TEST_F(ProcessRuntimeTest, SignalReachesTheWholeProcessGroup) {
  const fs::path child_file = dir_ / "child.pid";
  SpawnRequest req =
      Request("a-001", {"sh", "-c", "sleep 30 & echo $! > " + child_file.string() + "; wait"});
  absl::StatusOr<ProcessId> pid = Spawn(req);
  ASSERT_TRUE(pid.ok()) << pid.status();
  int child = 0;
  ASSERT_TRUE(Eventually([&] {
    std::ifstream in(child_file);
    return static_cast<bool>(in >> child) && child > 0;
  }));
  to_kill_.push_back(child);
  ASSERT_TRUE(Running(child));
  ASSERT_TRUE(rt_->Signal("a-001", SIGTERM).ok());
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(exits_[0].status.signal, SIGTERM);
  EXPECT_TRUE(Eventually([&] { return !Running(child); }));
}

// Reads a pid a test's script wrote to `file`, waiting for it.
int ReadPid(const fs::path& file) {
  int pid = 0;
  Eventually([&] {
    std::ifstream in(file);
    return static_cast<bool>(in >> pid) && pid > 0;
  });
  return pid;
}

TEST_F(ProcessRuntimeTest, TheRestOfTheProcessGroupDiesWithItsLeader) {
  const fs::path child_file = dir_ / "child.pid";
  // The wrapper starts a child and exits: an agent that leaves its workers behind.
  ASSERT_TRUE(Spawn(Request("a-001", {"sh", "-c",
                                      "sleep 300 & echo $! > " + child_file.string() +
                                          "; exit 0"}))
                  .ok());
  const int child = ReadPid(child_file);
  ASSERT_GT(child, 0);
  to_kill_.push_back(child);
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(exits_[0].status.code, 0);
  EXPECT_TRUE(Eventually([&] { return !Running(child); })) << "orphan " << child << " survived";
}

TEST_F(ProcessRuntimeTest, AnAdoptedLeadersGroupDiesWithIt) {
  // A group leader that is not our child (as after a daemon restart): setsid makes it a
  // leader, its parent shell exits so init adopts it; it has a worker in its group.
  const fs::path leader_file = dir_ / "leader.pid", child_file = dir_ / "child.pid";
  const std::string cmd = "setsid sh -c 'echo $$ > " + leader_file.string() + "; sleep 300 & echo $! > " +
                          child_file.string() + "; exec sleep 300' &";
  char sh[] = "sh", c[] = "-c";
  char* argv[] = {sh, c, const_cast<char*>(cmd.c_str()), nullptr};
  pid_t shell;
  ASSERT_EQ(posix_spawn(&shell, "/bin/sh", nullptr, nullptr, argv, environ), 0);
  ASSERT_EQ(waitpid(shell, nullptr, 0), shell);
  const int leader = ReadPid(leader_file), child = ReadPid(child_file);
  ASSERT_GT(leader, 0);
  ASSERT_GT(child, 0);
  to_kill_.push_back(leader);
  to_kill_.push_back(child);
  ASSERT_EQ(getpgid(child), leader);
  ASSERT_TRUE(Eventually([&] { return ProcStartTime(leader).has_value(); }));
  ASSERT_TRUE(
      rt_->Adopt("a-001", ProcessId{leader, *ProcStartTime(leader)}, (dir_ / "l").string()).ok());
  kill(leader, SIGKILL);
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_TRUE(Eventually([&] { return !Running(child); })) << "orphan " << child << " survived";
}

TEST_F(ProcessRuntimeTest, ARestartedInstanceGetsItsPortBackFromItsOwnOrphan) {
  // Find a free port, then let each run's child listen on it while the wrapper exits.
  int port = 0;
  {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
    close(fd);
  }
  const std::string marker = (dir_ / "bound.").string();
  const std::string script =
      "/usr/bin/python3 -c 'import socket,sys,time\n"
      "s = socket.socket(); s.bind((\"127.0.0.1\", " + std::to_string(port) + "))\n"
      "s.listen(); open(sys.argv[1], \"w\").close(); time.sleep(300)' " + marker + "$$ &\n"
      "for i in $(seq 200); do [ -e " + marker + "$$ ] && exit 1; sleep 0.02; done; exit 2\n";
  int runs = 0;
  rt_->SetExitCallback([&](const std::string& id, ExitStatus st) {
    exits_.push_back({id, st});
    if (++runs < 2) {
      ASSERT_TRUE(Spawn(Request(id, {"sh", "-c", script})).ok());
    }
  });
  SpawnRequest req = Request("a-001", {"sh", "-c", script});
  ASSERT_TRUE(Spawn(req).ok());
  ASSERT_TRUE(RunUntilExits(2));
  EXPECT_EQ(exits_[0].status.code, 1) << Read(req.log_path);
  EXPECT_EQ(exits_[1].status.code, 1) << "the second run could not bind: " << Read(req.log_path);
}

TEST_F(ProcessRuntimeTest, SpawnRecordsTheBootId) {
  absl::StatusOr<Spawned> pid = rt_->Spawn(Request("a-001", {"true"}));
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_FALSE(pid->boot_id.empty());
  EXPECT_EQ(pid->boot_id, ReadBootId());
  ASSERT_TRUE(RunUntilExits(1));
}

TEST_F(ProcessRuntimeTest, AdoptRefusesAProcessFromAnotherBoot) {
  ProcessRuntimeOptions options;
  options.boot_id = "boot-b";  // this boot
  NewRuntime(options);
  char sleep[] = "sleep", thirty[] = "30";
  char* argv[] = {sleep, thirty, nullptr};
  pid_t pid;
  ASSERT_EQ(posix_spawn(&pid, "/bin/sleep", nullptr, nullptr, argv, environ), 0);
  to_kill_.push_back(pid);
  const uint64_t start = ProcStartTime(pid).value();
  const std::string log = (dir_ / "l").string();
  // Same pid and start time, recorded in another boot: a stranger that happens to match.
  absl::Status st = rt_->Adopt("a-001", ProcessId{pid, start, "boot-a"}, log);
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(st.message()), HasSubstr("before a reboot (boot id boot-a, now boot-b)"));
  EXPECT_EQ(rt_->Watched(), 0u);
  EXPECT_TRUE(rt_->Adopt("a-001", ProcessId{pid, start, "boot-b"}, log).ok());
  rt_->Forget("a-001");
  // Recorded before boot ids were kept: the start time alone decides.
  EXPECT_TRUE(rt_->Adopt("a-001", ProcessId{pid, start, ""}, log).ok());
}

TEST_F(ProcessRuntimeTest, EnvironmentIsExactlyTheRequested) {
  SpawnRequest req = Request("a-001", {"env"});
  req.env = {{"PATH", "/usr/bin:/bin"}, {"PALM_INSTANCE_ID", "a-001"}, {"SPACEY", "a b=c"}};
  setenv("PALM_RUNTIME_TEST_LEAK", "1", 1);
  ASSERT_TRUE(Spawn(req).ok());
  unsetenv("PALM_RUNTIME_TEST_LEAK");
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(Read(req.log_path), "PALM_INSTANCE_ID=a-001\nPATH=/usr/bin:/bin\nSPACEY=a b=c\n");
}

TEST_F(ProcessRuntimeTest, NoDaemonFdsLeakIntoTheAgent) {
  SpawnRequest req = Request("a-001", {"sh", "-c", "ls /proc/self/fd"});
  ASSERT_TRUE(Spawn(req).ok());
  absl::StatusOr<ProcessId> other = Spawn(Request("a-002", {"sleep", "30"}));  // a pidfd open
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(RunUntilExits(1));
  // 0, 1, 2 and the fd ls opens for the directory itself: neither the pidfd nor whatever
  // the test binary inherited without O_CLOEXEC.
  EXPECT_EQ(Read(req.log_path), "0\n1\n2\n3\n");
}

TEST_F(ProcessRuntimeTest, LimitsAreAppliedThroughTheShim) {
  SpawnRequest req = Request("a-001", {"sh", "-c", "ulimit -n; ulimit -v; echo $0"});
  req.limits.max_open_files = 77;
  req.limits.memory_mb = 512;
  req.limits.max_procs = 10000;
  absl::StatusOr<ProcessId> pid = Spawn(req);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(exits_[0].status.code, 0) << Read(req.log_path);
  EXPECT_EQ(Read(req.log_path), "77\n524288\nsh\n");  // argv[0] kept as given
}

// The daemon raises its own soft RLIMIT_NOFILE for its connections; its agents get the one
// it was started with (child_nofile_soft), unless their spec sets max_open_files.
TEST_F(ProcessRuntimeTest, AgentsGetTheDaemonsOriginalDescriptorLimit) {
  auto soft_of = [](int pid) -> std::string {
    std::ifstream f("/proc/" + std::to_string(pid) + "/limits");
    for (std::string line; std::getline(f, line);) {
      if (line.rfind("Max open files", 0) == 0) {
        std::istringstream words(line.substr(strlen("Max open files")));
        std::string soft;
        words >> soft;
        return soft;
      }
    }
    return "?";
  };
  ProcessRuntimeOptions options;
  options.child_nofile_soft = 321;
  NewRuntime(options);
  absl::StatusOr<ProcessId> plain = Spawn(Request("a-001", {"sleep", "30"}));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(soft_of(plain->pid), "321");
  SpawnRequest own = Request("b-001", {"sleep", "30"});
  own.limits.max_open_files = 77;
  absl::StatusOr<ProcessId> limited = Spawn(own);
  ASSERT_TRUE(limited.ok()) << limited.status();
  EXPECT_TRUE(Eventually([&] { return soft_of(limited->pid) == "77"; }))  // the shim's exec
      << soft_of(limited->pid);
}

TEST_F(ProcessRuntimeTest, SpawnReportsWhatEnforcesTheLimits) {
  SpawnRequest req = Request("a-001", {"true"});
  absl::StatusOr<Spawned> plain = rt_->Spawn(req);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->enforced_by, LimitsMechanism::kNone);
  ASSERT_TRUE(RunUntilExits(1));
  req.limits.memory_mb = 512;
  req.limits.cpu = 0.5;
  absl::StatusOr<Spawned> limited = rt_->Spawn(req);
  ASSERT_TRUE(limited.ok()) << limited.status();
  EXPECT_EQ(limited->enforced_by, LimitsMechanism::kRlimit);
  EXPECT_EQ(limited->enforced.memory_mb, 512);
  EXPECT_EQ(limited->enforced.cpu, std::nullopt);  // no rlimit for CPU
  ASSERT_TRUE(RunUntilExits(2));
}

TEST_F(ProcessRuntimeTest, CommandNotFoundIsSynchronousWithLimitsToo) {
  SpawnRequest req = Request("a-001", {"palm-no-such-command"});
  req.limits.max_open_files = 77;
  EXPECT_EQ(Spawn(req).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(rt_->Watched(), 0u);
}

TEST_F(ProcessRuntimeTest, ShimFailureShowsInTheLog) {
  SpawnRequest req = Request("a-001", {"true"});
  req.limits.max_open_files = int64_t{1} << 40;  // above the hard limit: EPERM
  ASSERT_TRUE(Spawn(req).ok());
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(exits_[0].status.code, 127);
  EXPECT_THAT(Read(req.log_path), HasSubstr("setrlimit(RLIMIT_NOFILE"));
}

TEST_F(ProcessRuntimeTest, InvalidRequests) {
  EXPECT_EQ(Spawn(Request("a-001", {})).status().code(), absl::StatusCode::kInvalidArgument);
  SpawnRequest req = Request("a-001", {"true"});
  req.env["A=B"] = "x";
  EXPECT_EQ(Spawn(req).status().code(), absl::StatusCode::kInvalidArgument);
  req = Request("a-001", {"true"});
  req.limits.max_procs = 0;
  EXPECT_EQ(Spawn(req).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ProcessRuntimeTest, SecondSpawnOfARunningInstanceIsRefused) {
  ASSERT_TRUE(Spawn(Request("a-001", {"sleep", "30"})).ok());
  EXPECT_EQ(Spawn(Request("a-001", {"sleep", "30"})).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(rt_->Watched(), 1u);
}

TEST_F(ProcessRuntimeTest, ExitCallbackMayRespawnTheSameInstance) {
  int runs = 0;
  rt_->SetExitCallback([&](const std::string& id, ExitStatus st) {
    exits_.push_back({id, st});
    if (++runs < 3) {
      ASSERT_TRUE(Spawn(Request(id, {"sh", "-c", "echo run"})).ok());
    }
  });
  SpawnRequest req = Request("a-001", {"sh", "-c", "echo run"});
  ASSERT_TRUE(Spawn(req).ok());
  ASSERT_TRUE(RunUntilExits(3));
  EXPECT_EQ(Read(req.log_path), "run\nrun\nrun\n");
  EXPECT_EQ(rt_->Watched(), 0u);
}

TEST_F(ProcessRuntimeTest, ForgetStopsWatchingAndLeavesTheProcessRunning) {
  absl::StatusOr<ProcessId> pid = Spawn(Request("a-001", {"sleep", "30"}));
  ASSERT_TRUE(pid.ok());
  rt_->Forget("a-001");
  EXPECT_EQ(rt_->Watched(), 0u);
  EXPECT_EQ(rt_->Signal("a-001", SIGKILL).code(), absl::StatusCode::kNotFound);
  kill(pid->pid, SIGKILL);
  int st = 0;
  ASSERT_EQ(waitpid(pid->pid, &st, 0), pid->pid);  // still ours to reap: nobody else did
  io_.restart();
  io_.run_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(exits_.empty());
}

TEST_F(ProcessRuntimeTest, DestroyingTheRuntimeLeavesAgentsRunningAndCancelsWaits) {
  absl::StatusOr<ProcessId> running = Spawn(Request("a-001", {"sleep", "30"}));
  absl::StatusOr<ProcessId> exited = Spawn(Request("a-002", {"sh", "-c", "exit 0"}));
  ASSERT_TRUE(running.ok() && exited.ok());
  // The loop has not run: a-002's exit is pending in the reactor when the runtime goes.
  ASSERT_TRUE(Eventually([&] { return !Running(exited->pid); }));
  rt_.reset();
  EXPECT_TRUE(Running(running->pid));  // the agent outlives the runtime (daemon restart)
  kill(running->pid, SIGKILL);
  ASSERT_TRUE(Eventually([&] { return !Running(running->pid); }));
  io_.restart();
  io_.run_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(exits_.empty());
  EXPECT_EQ(waitpid(running->pid, nullptr, WNOHANG), running->pid);  // nobody reaped it
  EXPECT_EQ(waitpid(exited->pid, nullptr, WNOHANG), exited->pid);
}

TEST_F(ProcessRuntimeTest, AdoptWatchesAProcessThatIsNotOurChild) {
  // sh starts sleep in the background and exits: sleep is orphaned, not our child.
  const fs::path pid_file = dir_ / "orphan.pid";
  const std::string cmd = "sleep 30 & echo $! > " + pid_file.string();
  char sh[] = "sh", c[] = "-c";
  char* argv[] = {sh, c, const_cast<char*>(cmd.c_str()), nullptr};
  pid_t shell;
  ASSERT_EQ(posix_spawn(&shell, "/bin/sh", nullptr, nullptr, argv, environ), 0);
  ASSERT_EQ(waitpid(shell, nullptr, 0), shell);
  int orphan = 0;
  std::ifstream(pid_file) >> orphan;
  ASSERT_GT(orphan, 0);
  to_kill_.push_back(orphan);
  const std::optional<uint64_t> start = ProcStartTime(orphan);
  ASSERT_TRUE(start.has_value());

  const std::string log = (dir_ / "adopted.log").string();
  EXPECT_EQ(rt_->Adopt("a-001", ProcessId{orphan, *start + 1}, log).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(rt_->Watched(), 0u);

  ASSERT_TRUE(rt_->Adopt("a-001", ProcessId{orphan, *start}, log).ok());
  EXPECT_EQ(rt_->Watched(), 1u);
  EXPECT_EQ(rt_->Adopt("a-001", ProcessId{orphan, *start}, log).code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(rt_->Signal("a-001", SIGKILL).ok());
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(exits_[0].instance_id, "a-001");
  EXPECT_EQ(exits_[0].status.code, std::nullopt);  // not our child: unknowable
  EXPECT_EQ(exits_[0].status.signal, std::nullopt);
  EXPECT_EQ(rt_->Watched(), 0u);
}

TEST_F(ProcessRuntimeTest, AdoptOurOwnChildReportsItsStatus) {
  char sleep[] = "sleep", thirty[] = "30";
  char* argv[] = {sleep, thirty, nullptr};
  pid_t pid;
  ASSERT_EQ(posix_spawn(&pid, "/bin/sleep", nullptr, nullptr, argv, environ), 0);
  to_kill_.push_back(pid);
  ASSERT_TRUE(
      rt_->Adopt("a-001", ProcessId{pid, ProcStartTime(pid).value()}, (dir_ / "l").string()).ok());
  kill(pid, SIGKILL);
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_EQ(exits_[0].status.signal, SIGKILL);
}

TEST_F(ProcessRuntimeTest, AdoptAGoneProcess) {
  char t[] = "true";
  char* argv[] = {t, nullptr};
  pid_t pid;
  ASSERT_EQ(posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ), 0);
  const uint64_t start = ProcStartTime(pid).value();
  ASSERT_EQ(waitpid(pid, nullptr, 0), pid);
  absl::Status s = rt_->Adopt("a-001", ProcessId{pid, start}, (dir_ / "l").string());
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr(std::to_string(pid)));
  EXPECT_EQ(rt_->Watched(), 0u);
}

bool Exists(int pid) { return fs::exists("/proc/" + std::to_string(pid)); }

TEST_F(ProcessRuntimeTest, TheLogShimRotatesAtTheCap) {
  ProcessRuntimeOptions options;
  options.log_max_bytes = 16;
  options.log_keep = 1;
  NewRuntime(options);
  SpawnRequest req = Request("a-001", {"sh", "-c", "echo 0123456789abcdefghij"});
  ASSERT_TRUE(Spawn(req).ok());
  ASSERT_TRUE(RunUntilExits(1));
  // Split exactly at the cap (no newline near it), by the shim, before the exit was reported.
  EXPECT_EQ(Read(req.log_path + ".1"), "0123456789abcdef");
  EXPECT_EQ(Read(req.log_path), "ghij\n");
  // No rotation timer with shims, and the exited shim was reaped: the loop runs out of work.
  io_.restart();
  const auto begin = std::chrono::steady_clock::now();
  io_.run_for(std::chrono::seconds(2));
  EXPECT_LT(std::chrono::steady_clock::now() - begin, std::chrono::seconds(1));
}

TEST_F(ProcessRuntimeTest, WithoutAShimTheAgentsLogIsCopyTruncatedOffTheLoop) {
  ProcessRuntimeOptions options;
  options.log_max_bytes = 16;
  options.log_keep = 1;
  options.log_check_period = absl::Milliseconds(5);
  options.log_shim_path = (dir_ / "no-such-palm").string();  // the shim cannot start
  NewRuntime(options);
  SpawnRequest req = Request("a-001", {"sh", "-c", "echo 0123456789abcdefghij; sleep 30"});
  auto pid = Spawn(req);
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_EQ(fs::read_symlink("/proc/" + std::to_string(pid->pid) + "/fd/1"), req.log_path);
  ASSERT_TRUE(RunUntil([&] { return fs::exists(req.log_path + ".1"); }));
  EXPECT_EQ(Read(req.log_path + ".1"), "0123456789abcdefghij\n");
  EXPECT_EQ(fs::file_size(req.log_path), 0u);
  ASSERT_TRUE(rt_->Signal("a-001", SIGKILL).ok());
  ASSERT_TRUE(RunUntilExits(1));
  // With nothing watched the timer stops: the loop runs out of work.
  io_.restart();
  const auto begin = std::chrono::steady_clock::now();
  io_.run_for(std::chrono::seconds(2));
  EXPECT_LT(std::chrono::steady_clock::now() - begin, std::chrono::seconds(1));
}

TEST_F(ProcessRuntimeTest, WithoutACapTheAgentWritesItsLogItself) {
  ProcessRuntimeOptions options;
  options.log_max_bytes = 0;
  NewRuntime(options);
  SpawnRequest req = Request("a-001", {"sleep", "30"});
  auto pid = Spawn(req);
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_EQ(fs::read_symlink("/proc/" + std::to_string(pid->pid) + "/fd/1"), req.log_path);
  EXPECT_EQ(FindLogService(pid->pid), 0);
}

TEST_F(ProcessRuntimeTest, AnUnwritableLogIsASpawnError) {
  SpawnRequest req = Request("a-001", {"true"});
  fs::create_directories(req.log_path);  // a directory where the log should be
  const std::set<int> before = OurLogServices();
  auto pid = Spawn(req);
  ASSERT_FALSE(pid.ok());
  EXPECT_THAT(std::string(pid.status().message()), HasSubstr(req.log_path));
  const std::set<int> after = OurLogServices();
  EXPECT_TRUE(std::includes(before.begin(), before.end(), after.begin(), after.end()))
      << "a log service was started for a spawn that failed";
}

// The defect: a burst left one rotated file of its own size, and rotation (a copy on the
// event loop) stalled the daemon. Through the shim every file stays within the cap and the
// loop does no log I/O at all: a steady timer keeps ticking through the burst.
TEST_F(ProcessRuntimeTest, ABurstStaysWithinTheCapAndTheLoopKeepsTicking) {
  constexpr uint64_t kCap = 1 << 20;
  ProcessRuntimeOptions options;
  options.log_max_bytes = kCap;
  options.log_keep = 2;
  // Only for logs written directly: with the copy-truncate on the loop that this replaced,
  // a 100 ms check both broke the cap and stalled the loop for about half a second here.
  options.log_check_period = absl::Milliseconds(100);
  NewRuntime(options);
  SpawnRequest req = Request(
      "a-001", {"sh", "-c", "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 268435456; echo LAST"});
  auto agent = Spawn(req);
  ASSERT_TRUE(agent.ok()) << agent.status();
  const int shim = FindLogService(agent->pid);
  ASSERT_GT(shim, 0);

  boost::asio::steady_timer tick(io_);
  int ticks = 0;
  auto last = std::chrono::steady_clock::now();
  std::chrono::steady_clock::duration max_gap{};
  std::function<void()> arm = [&] {
    tick.expires_after(std::chrono::milliseconds(10));
    tick.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      const auto now = std::chrono::steady_clock::now();
      max_gap = std::max(max_gap, now - last);
      last = now;
      ++ticks;
      arm();
    });
  };
  arm();
  ASSERT_TRUE(RunUntilExits(1));
  tick.cancel();
  EXPECT_EQ(exits_[0].status.code, 0);

  for (const std::string suffix : {"", ".1", ".2"}) {
    EXPECT_LE(fs::file_size(req.log_path + suffix), kCap + kCap / 10) << suffix;
  }
  EXPECT_FALSE(fs::exists(req.log_path + ".3"));
  const std::string live = Read(req.log_path);
  EXPECT_TRUE(live.ends_with("LAST\n")) << live.substr(live.size() > 100 ? live.size() - 100 : 0);
  EXPECT_GT(ticks, 0);
  // Generous for a loaded 2-core CI box (the loop does no log I/O at all now).
  EXPECT_LT(max_gap, std::chrono::milliseconds(500))
      << std::chrono::duration_cast<std::chrono::milliseconds>(max_gap).count() << " ms";
  // The service lives on for the next spawn; once the runtime is gone it exits (its last
  // stream is closed) and the zombie is ours to reap here.
  rt_.reset();
  EXPECT_TRUE(Eventually([&] { return waitpid(shim, nullptr, WNOHANG) == shim; }));
}

// Stopping an instance kills its process group; the shim is not in it, so it still writes
// what the agent wrote before dying, then exits on its own.
TEST_F(ProcessRuntimeTest, KillingTheAgentsGroupLeavesTheShimToFlush) {
  SpawnRequest req = Request(
      "a-001", {"sh", "-c",
                "i=0; while [ $i -lt 1000 ]; do echo line-$i; i=$((i+1)); done; "
                "touch " + (dir_ / "written").string() + "; exec sleep 30"});
  auto pid = Spawn(req);
  ASSERT_TRUE(pid.ok()) << pid.status();
  const int shim = FindLogService(pid->pid);
  ASSERT_GT(shim, 0);
  EXPECT_EQ(getpgid(shim), shim);  // its own group ...
  EXPECT_NE(getpgid(shim), getpgid(pid->pid));  // ... not the agent's
  // Hold the shim back so the agent's last lines are still in the pipe when it dies.
  ASSERT_EQ(kill(shim, SIGSTOP), 0);
  ASSERT_TRUE(Eventually([&] { return fs::exists(dir_ / "written"); }));
  ASSERT_TRUE(rt_->Signal("a-001", SIGKILL).ok());
  ASSERT_TRUE(Eventually([&] { return !Running(pid->pid); }));
  EXPECT_TRUE(Running(shim));
  ASSERT_EQ(kill(shim, SIGCONT), 0);
  ASSERT_TRUE(RunUntilExits(1));
  // Reported once the shim had written everything.
  std::string want;
  for (int i = 0; i < 1000; ++i) want += "line-" + std::to_string(i) + "\n";
  EXPECT_EQ(Read(req.log_path), want);
  EXPECT_TRUE(Running(shim));  // the service serves on, for the next spawns
}

// One service for all agents; when it dies, the next spawn starts another (and the old one
// is reaped).
TEST_F(ProcessRuntimeTest, OneLogServiceForAllAgentsReplacedWhenItDies) {
  auto a = Spawn(Request("a-001", {"sleep", "30"}));
  auto b = Spawn(Request("a-002", {"sleep", "30"}));
  ASSERT_TRUE(a.ok() && b.ok());
  const int service = FindLogService(a->pid);
  ASSERT_GT(service, 0);
  EXPECT_EQ(FindLogService(b->pid), service);
  ASSERT_EQ(kill(service, SIGKILL), 0);
  ASSERT_TRUE(RunUntil([&] { return !Exists(service); }));  // reaped by the runtime
  SpawnRequest req = Request("a-003", {"sh", "-c", "echo hello; exec sleep 30"});
  auto c = Spawn(req);
  ASSERT_TRUE(c.ok()) << c.status();
  const int next = FindLogService(c->pid);
  EXPECT_GT(next, 0);
  EXPECT_NE(next, service);
  EXPECT_TRUE(RunUntil([&] { return Read(req.log_path) == "hello\n"; }));
}

// Idle (no stream open), the runtime does not watch the service; one that died meanwhile is
// found by the next spawn (sendmsg fails), replaced at once, and reaped.
TEST_F(ProcessRuntimeTest, ALogServiceThatDiedWhileIdleIsReplacedByTheNextSpawn) {
  auto a = Spawn(Request("a-001", {"sleep", "30"}));
  ASSERT_TRUE(a.ok()) << a.status();
  const int service = FindLogService(a->pid);
  ASSERT_GT(service, 0);
  ASSERT_TRUE(rt_->Signal("a-001", SIGKILL).ok());
  ASSERT_TRUE(RunUntilExits(1));  // its stream closed: idle now
  ASSERT_EQ(kill(service, SIGKILL), 0);
  ASSERT_TRUE(Eventually([&] { return !Running(service); }));
  SpawnRequest req = Request("a-002", {"sh", "-c", "echo again; exec sleep 30"});
  auto b = Spawn(req);
  ASSERT_TRUE(b.ok()) << b.status();
  const int next = FindLogService(b->pid);
  EXPECT_GT(next, 0);  // through a service, not written directly
  EXPECT_NE(next, service);
  EXPECT_TRUE(RunUntil([&] { return Read(req.log_path) == "again\n" && !Exists(service); }));
}

TEST_F(ProcessRuntimeTest, ExitIsObservedPromptly) {
  absl::StatusOr<ProcessId> pid = Spawn(Request("a-001", {"sleep", "30"}));
  ASSERT_TRUE(pid.ok());
  std::chrono::steady_clock::time_point observed;
  rt_->SetExitCallback([&](const std::string& id, ExitStatus st) {
    observed = std::chrono::steady_clock::now();
    exits_.push_back({id, st});
  });
  kill(pid->pid, SIGKILL);
  // Wait until the kernel has turned it into a zombie, then time the loop alone.
  ASSERT_TRUE(Eventually([&] { return !Running(pid->pid); }));
  const auto zombie = std::chrono::steady_clock::now();
  ASSERT_TRUE(RunUntilExits(1));
  EXPECT_LT(observed - zombie, std::chrono::milliseconds(50));  // generous for loaded CI
}

}  // namespace
}  // namespace palm::runtime
