// Agent logs end to end: a real daemon, a real agent writing bursts through the daemon's log
// service, and a kill -9 of the daemon in the middle. The size cap holds before and after,
// the agent never stops logging, and the adopted agent keeps its one writer (the old
// daemon's service, which serves on until the agent is gone).
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/harness.h"

namespace palm::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr uint64_t kDaemonLogCap = 10 << 20;  // the daemon's default log_max_bytes
constexpr int kDaemonLogKeep = 3;

// Prints "tick N" every 10 ms; for each file burst-NAME that appears in its directory,
// writes 30 MiB of "NAME ..." lines as fast as it can, then creates done-NAME.
constexpr char kAgent[] = R"py(
import os, sys, time
d = sys.argv[1]
n = 0
done = set()
while True:
    n += 1
    sys.stdout.write("tick %d\n" % n)
    sys.stdout.flush()
    for name in sorted(os.listdir(d)):
        if name.startswith("burst-") and name not in done:
            line = (name + " " + "x" * 100 + "\n").encode()
            block = line * (65536 // len(line))
            for _ in range(30 * 1024 * 1024 // len(block)):
                sys.stdout.buffer.write(block)
            sys.stdout.flush()
            done.add(name)
            open(os.path.join(d, "done-" + name), "w").close()
    time.sleep(0.01)
)py";

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The agent's stdout ("pipe:[inode]"), or "" when it is not a pipe.
std::string StdoutPipe(int pid) {
  std::error_code ec;
  const std::string out = fs::read_symlink(absl::StrCat("/proc/", pid, "/fd/1"), ec).string();
  return !ec && out.starts_with("pipe:") ? out : "";
}

// Pids of the live log services holding `pipe` (an agent's stdout, see StdoutPipe).
std::vector<int> LogWriters(const std::string& pipe) {
  std::vector<int> pids;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = Read(e.path().string() + "/cmdline");
    if (cmdline.find("__log-service") == std::string::npos || !ProcessAlive(std::stoi(name))) {
      continue;
    }
    std::error_code ec;
    for (const auto& fd : fs::directory_iterator(e.path() / "fd", ec)) {
      if (fs::read_symlink(fd.path(), ec).string() == pipe) {
        pids.push_back(std::stoi(name));
        break;
      }
    }
  }
  return pids;
}

// The last "tick N" in the live log, or 0.
int LastTick(const std::string& log_path) {
  const std::string log = Read(log_path);
  const size_t at = log.rfind("tick ");
  return at == std::string::npos ? 0 : std::atoi(log.c_str() + at + 5);
}

class LogsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    triggers_ = dir_.path() + "/triggers";
    fs::create_directories(triggers_);
    daemon_.Start();
  }
  void TearDown() override {
    daemon_.StopWithAgents();
  }

  // Makes the agent write a 30 MiB burst and waits until it has.
  bool Burst(const std::string& name) {
    std::ofstream(triggers_ + "/burst-" + name).close();
    return WaitFor([&] { return fs::exists(triggers_ + "/done-burst-" + name); },
                   absl::Seconds(60));
  }

  // The log was rotated, every file of it is within the cap (10 % slack), and there are at
  // most keep + 1 files.
  void ExpectWithinTheCap(const std::string& log_path) {
    EXPECT_TRUE(fs::exists(log_path + ".1"));
    EXPECT_FALSE(fs::exists(absl::StrCat(log_path, ".", kDaemonLogKeep + 1)));
    for (int i = 0; i <= kDaemonLogKeep; ++i) {
      const std::string path = i == 0 ? log_path : absl::StrCat(log_path, ".", i);
      if (fs::exists(path)) {
        EXPECT_LE(fs::file_size(path), kDaemonLogCap + kDaemonLogCap / 10) << path;
      }
    }
  }

  TempDir dir_;
  Daemon daemon_{dir_.path()};
  std::string triggers_;
};

TEST_F(LogsTest, TheCapHoldsThroughBurstsAndADaemonKill9) {
  daemon_.RegisterSpec({{"kind", "AgentSpec"},
                        {"name", "chatty"},
                        {"version", "1.0.0"},
                        {"command", {"python3", "-c", kAgent, triggers_}},
                        {"stop", {{"signal", "SIGTERM"}, {"grace_s", 2}}}});
  daemon_.CreateDeployment({{"name", "chatty"}, {"spec", "chatty@1.0.0"}, {"replicas", 1}});
  ASSERT_TRUE(daemon_.WaitRunning("chatty", 1));
  const Json inst = daemon_.Instances("chatty")[0];
  const std::string id = inst["id"];
  const int pid = inst["pid"];
  const std::string log_path = inst["log_path"];

  ASSERT_TRUE(Burst("one"));
  ExpectWithinTheCap(log_path);
  const std::string pipe = StdoutPipe(pid);
  ASSERT_NE(pipe, "");
  const std::vector<int> shims = LogWriters(pipe);
  ASSERT_EQ(shims.size(), 1u);

  daemon_.Kill9();
  // Agent and service run on without the daemon, and the agent keeps logging.
  EXPECT_TRUE(ProcessAlive(pid));
  EXPECT_TRUE(ProcessAlive(shims[0]));
  const int before = LastTick(log_path);
  EXPECT_TRUE(WaitFor([&] { return LastTick(log_path) > before + 5; }));

  daemon_.Start();
  ASSERT_TRUE(daemon_.WaitRunning("chatty", 1));
  EXPECT_EQ(daemon_.Instances("chatty")[0]["pid"], pid);  // adopted, not restarted
  EXPECT_EQ(LogWriters(pipe), shims);                     // and no second writer

  ASSERT_TRUE(Burst("two"));
  ExpectWithinTheCap(log_path);
  const int after_burst = LastTick(log_path);
  EXPECT_TRUE(WaitFor([&] { return LastTick(log_path) > after_burst; }));  // still logging

  // The API serves the live (renamed-into-place) file.
  const auto logs = daemon_.Call("GET", "/v1/instances/" + id + "/logs?tail=5");
  EXPECT_EQ(logs.status, 200u);
  EXPECT_THAT(logs.raw, HasSubstr("tick "));

  // Stopping the instance ends its stream (EOF once the agent is gone), and with it the old
  // daemon's service: its daemon is gone and it has no other stream left.
  ASSERT_EQ(daemon_.Call("DELETE", "/v1/deployments/chatty").status / 100, 2u);
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(pid) && !ProcessAlive(shims[0]); }));
}

}  // namespace
}  // namespace palm::testing
