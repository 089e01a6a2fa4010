// Process runtime hardening end to end: a real daemon, real agents that misbehave the way
// real ones do (an exec probe that leaves a setsid'd child holding its output pipe, an agent
// that exits and leaves its workers and its listening port behind), and the limits report.
#include <signal.h>
#include <stdlib.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palm/http/client.h"
#include "tests/harness.h"

namespace palm::testing {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;

std::vector<int> ReadPids(const std::string& path) {
  std::vector<int> pids;
  std::ifstream in(path);
  for (int pid; in >> pid;) pids.push_back(pid);
  return pids;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class HardeningTest : public ::testing::Test {
 protected:
  void SetUp() override { daemon_.Start(); }
  void TearDown() override {
    daemon_.StopWithAgents();
    // Whatever a failed test (or a host without cgroups) left running.
    for (const std::string& file : pid_files_) {
      for (int pid : ReadPids(file)) ::kill(pid, SIGKILL);
    }
  }

  void ProbeLeavingASetsidChild();
  void AgentLeavingWorkersAndItsPort();

  // Restarts the daemon with PALM_CGROUPS=`use` (off | limited | all).
  void RestartWithCgroups(const char* use) {
    daemon_.Terminate();
    ::setenv("PALM_CGROUPS", use, 1);
    daemon_.Start();
    ::unsetenv("PALM_CGROUPS");
  }

  size_t LiveOf(const std::string& pid_file) {
    size_t n = 0;
    for (int pid : ReadPids(pid_file)) n += ProcessAlive(pid) ? 1 : 0;
    return n;
  }

  TempDir dir_;
  Daemon daemon_{dir_.path()};
  std::vector<std::string> pid_files_;
};

// An exec probe whose child calls setsid and keeps the probe's output pipe open: the
// daemon must keep answering (it used to block in a read of that pipe forever).
void HardeningTest::ProbeLeavingASetsidChild() {
  const std::string children = dir_.path() + "/probe-children";
  pid_files_.push_back(children);
  daemon_.RegisterSpec(
      {{"name", "probed"},
       {"version", "1.0.0"},
       {"command", {"sleep", "1000"}},
       {"health_check",
        {{"liveness",
          {{"exec",
            {"sh", "-c",
             "setsid sh -c 'echo $$ >> " + children + "; exec sleep 600' & echo x; exit 1"}},
           {"period_s", 0.2},
           {"timeout_s", 1},
           {"failure_threshold", 1000}}}}}});
  daemon_.CreateDeployment({{"name", "probed"}, {"spec", "probed@1.0.0"}, {"replicas", 1}});
  ASSERT_TRUE(daemon_.WaitRunning("probed", 1));
  // Probe after probe ends with its child still holding the output pipe; every API call
  // meanwhile answers within the probe's timeout.
  http::Client client(daemon_.endpoint(), daemon_.token(), absl::Seconds(1));
  const absl::Time start = absl::Now();
  int calls = 0;
  int64_t probe_runs = 0;
  while (absl::Now() - start < absl::Seconds(3) || probe_runs < 5) {
    ASSERT_LT(absl::Now() - start, absl::Seconds(30)) << "the probe never ran 5 times";
    auto r = client.Do("GET", "/healthz");
    ASSERT_TRUE(r.ok()) << "after " << calls << " calls and " << probe_runs
                        << " probe runs: " << r.status();
    ASSERT_EQ(r->status, 200u);
    auto in = client.Do("GET", "/v1/instances/probed-001");
    ASSERT_TRUE(in.ok()) << "after " << probe_runs << " probe runs: " << in.status();
    const Json doc = Json::parse(in->body);
    probe_runs = doc["probes"]["liveness"].value("consecutive_failures", int64_t{0});
    if (probe_runs > 0) {
      EXPECT_EQ(doc["probes"]["liveness"]["last_message"], "exit code 1: x");
    }
    ++calls;
  }
  const Json in = daemon_.Call("GET", "/v1/instances/probed-001").body;
  // With cgroups each run's leftovers are killed with it (a probe still running may have
  // one child alive); without, they escape (and are killed in TearDown).
  if (in["limits"]["enforced_by"].get<std::string>().starts_with("cgroup")) {
    EXPECT_TRUE(WaitFor([&] { return LiveOf(children) <= 1; }))
        << LiveOf(children) << " of " << ReadPids(children).size() << " probe children live";
  }
}

TEST_F(HardeningTest, AnExecProbeLeavingASetsidChildDoesNotFreezeTheDaemon) {
  RestartWithCgroups("all");  // every instance in a cgroup, not only limited ones
  ProbeLeavingASetsidChild();
}

TEST_F(HardeningTest, AnExecProbeLeavingASetsidChildDoesNotFreezeTheDaemonWithoutCgroups) {
  // Without a cgroup nothing kills the child before the probe's output is read.
  RestartWithCgroups("off");
  ProbeLeavingASetsidChild();
}

// The agent starts 50 workers and a listener on its port, then exits: the way a wrapper
// script that forgot `exec` or `wait` behaves.
void HardeningTest::AgentLeavingWorkersAndItsPort() {
  const std::string pids = dir_.path() + "/worker-pids";
  pid_files_.push_back(pids);
  const std::string script = dir_.path() + "/agent.sh";
  std::ofstream(script)
      << "#!/bin/sh\n"
         "for i in $(seq 50); do sleep 300 & echo $! >> \"$PIDS\"; done\n"
         "marker=\"$PIDS.$$\"\n"
         "/usr/bin/python3 -c 'import socket, sys, time\n"
         "s = socket.socket()\n"
         "try:\n"
         "    s.bind((\"127.0.0.1\", int(sys.argv[1]))); s.listen()\n"
         "except OSError as e:\n"
         "    print(\"bind failed:\", e, flush=True); sys.exit(1)\n"
         "print(\"bound\", flush=True); open(sys.argv[2], \"w\").close(); time.sleep(300)' "
         "\"$PALM_PORT_HTTP\" \"$marker\" &\n"
         "echo $! >> \"$PIDS\"\n"
         "for i in $(seq 200); do [ -e \"$marker\" ] && exit 1; sleep 0.02; done\n"
         "exit 2\n";
  ::chmod(script.c_str(), 0755);
  daemon_.RegisterSpec({{"name", "leaky"},
                        {"version", "1.0.0"},
                        {"command", {script}},
                        {"ports", {"http"}},
                        {"env", {{"PIDS", pids}}}});
  daemon_.CreateDeployment(
      {{"name", "leaky"},
       {"spec", "leaky@1.0.0"},
       {"replicas", 1},
       {"restart_policy",
        {{"policy", "always"}, {"backoff_initial_s", 0.05}, {"backoff_max_s", 0.2}}}});
  ASSERT_TRUE(WaitFor([&] {
    auto items = daemon_.Instances("leaky");
    return !items.empty() && items[0]["restarts"].get<int>() >= 3;
  })) << daemon_.Call("GET", "/v1/instances?deployment=leaky").raw;
  const std::string log = daemon_.Instances("leaky")[0]["log_path"];
  // Every run got its port: no orphan of an earlier run held it.
  EXPECT_THAT(ReadAll(log), Not(HasSubstr("bind failed"))) << ReadAll(log);
  const auto events = daemon_.Call("GET", "/v1/events?limit=10000&deployment=leaky").body;
  EXPECT_THAT(events.dump(), Not(HasSubstr("exit code 2")));
  // At most one run's workers live at a time (51), never the sum of all runs.
  EXPECT_LE(LiveOf(pids), 51u) << ReadPids(pids).size() << " started";
  EXPECT_GE(ReadPids(pids).size(), 3u * 51);
  // Deleting the deployment leaves nothing behind.
  ASSERT_EQ(daemon_.Call("DELETE", "/v1/deployments/leaky").status, 200u);
  ASSERT_TRUE(WaitFor([&] { return daemon_.Call("GET", "/v1/deployments/leaky").status == 404; }));
  EXPECT_TRUE(WaitFor([&] { return LiveOf(pids) == 0; }))
      << LiveOf(pids) << " of " << ReadPids(pids).size() << " workers still live";
}

TEST_F(HardeningTest, AnAgentsWorkersAndItsPortDieWithIt) {
  RestartWithCgroups("all");
  AgentLeavingWorkersAndItsPort();
}

TEST_F(HardeningTest, AnAgentsWorkersAndItsPortDieWithItWithoutCgroups) {
  RestartWithCgroups("off");  // process groups alone
  AgentLeavingWorkersAndItsPort();
}

TEST_F(HardeningTest, AnAgentWithoutLimitsGetsNoCgroupByDefault) {
  daemon_.RegisterSpec({{"name", "plain"}, {"version", "1.0.0"}, {"command", {"sleep", "1000"}}});
  daemon_.CreateDeployment({{"name", "plain"}, {"spec", "plain@1.0.0"}, {"replicas", 1}});
  ASSERT_TRUE(daemon_.WaitRunning("plain", 1));
  const Json in = daemon_.Call("GET", "/v1/instances/plain-001").body;
  EXPECT_EQ(in["limits"]["enforced_by"], "none") << in.dump();
}

TEST_F(HardeningTest, TheInstanceSaysWhatEnforcesItsLimitsAndKeepsItAcrossARestart) {
  daemon_.RegisterSpec({{"name", "limited"},
                        {"version", "1.0.0"},
                        {"command", {"sleep", "1000"}},
                        {"resources", {{"memory_mb", 64}, {"max_procs", 32}, {"cpu", 0.5}}}});
  daemon_.CreateDeployment({{"name", "limited"}, {"spec", "limited@1.0.0"}, {"replicas", 1}});
  ASSERT_TRUE(daemon_.WaitRunning("limited", 1));
  Json in = daemon_.Call("GET", "/v1/instances/limited-001").body;
  const Json limits = in["limits"];
  ASSERT_TRUE(limits.is_object()) << in.dump(1);
  const std::string by = limits["enforced_by"];
  EXPECT_THAT(by, AnyOf("cgroup v1", "cgroup v2", "rlimit"));
  EXPECT_EQ(limits["memory_mb"], 64);
  EXPECT_EQ(limits["max_procs"], 32);
  EXPECT_EQ(limits["cpu"], by == "rlimit" ? Json(nullptr) : Json(0.5));
  // palm instance get shows it.
  const std::string cmd = absl::StrCat("PALM_ENDPOINT=", daemon_.endpoint(), " PALM_TOKEN=",
                                       daemon_.token(), " ", PalmBin(),
                                       " instance get limited-001 2>&1");
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  EXPECT_EQ(::pclose(p), 0) << out;
  EXPECT_THAT(out, HasSubstr("enforced_by: " + by)) << out;
  // A killed daemon adopts the agent again: same process, same report.
  const int pid = in["pid"];
  daemon_.Kill9();
  daemon_.Start();
  ASSERT_TRUE(daemon_.WaitRunning("limited", 1));
  in = daemon_.Call("GET", "/v1/instances/limited-001").body;
  EXPECT_EQ(in["pid"], pid);
  EXPECT_EQ(in["restarts"], 0);
  EXPECT_EQ(in["limits"], limits);
}

}  // namespace
}  // namespace palm::testing
