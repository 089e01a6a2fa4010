// The daemon's HTTP server under idle-connection pressure, end to end: a real daemon, real
// agents (an HTTP-probed one and a task agent on the Python SDK), thousands of idle TCP
// connections from this process. Agents connect from 127.0.0.1 like the idle connections, so
// nothing here may be told apart by address.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/harness.h"

namespace palm::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

int PortOf(const std::string& endpoint) { return std::stoi(endpoint.substr(endpoint.rfind(':') + 1)); }

// `n` TCP connections to the daemon that send nothing (or, with `used`, one GET /healthz
// whose answer is read), then sit idle. Closed by the destructor.
class IdleConnections {
 public:
  IdleConnections(int port, int n, bool used) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const std::string req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < n; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) break;
      if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        break;
      }
      fds_.push_back(fd);
      if (!used) continue;
      timeval tv{5, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      (void)::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
      std::string got;
      char buf[1024];
      while (got.find("\"ok\"}") == std::string::npos) {
        ssize_t r = ::recv(fd, buf, sizeof buf, 0);
        if (r <= 0) break;
        got.append(buf, static_cast<size_t>(r));
      }
      if (got.find(" 200 ") != std::string::npos) ++answered_;
    }
  }
  ~IdleConnections() {
    for (int fd : fds_) ::close(fd);
  }
  size_t opened() const { return fds_.size(); }
  size_t answered() const { return answered_; }
  // Connections the daemon closed (EOF or reset seen), without waiting.
  size_t ClosedByPeer() const {
    std::vector<pollfd> p;
    for (int fd : fds_) p.push_back({fd, POLLIN, 0});
    ::poll(p.data(), p.size(), 0);
    size_t closed = 0;
    for (const auto& q : p) closed += (q.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
    return closed;
  }

 private:
  std::vector<int> fds_;
  size_t answered_ = 0;
};

// Raises this process's soft descriptor limit to the hard one; returns the hard limit.
rlim_t RaiseOwnFdLimit() {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &rl);
  ::getrlimit(RLIMIT_NOFILE, &rl);
  return rl.rlim_cur;
}

Json ProbedSpec() {
  return {{"name", "probed"},
          {"version", "1.0.0"},
          {"command", {"python3", SourceDir() + "/tests/agents/probe_agent.py"}},
          {"ports", {"http"}},
          {"health_check",
           {{"startup", {{"tcp", {{"port", "http"}}}, {"period_s", 0.1}, {"failure_threshold", 100}}},
            {"liveness", {{"http", {{"port", "http"}, {"path", "/healthz"}}},
                          {"period_s", 0.2}, {"timeout_s", 1}, {"failure_threshold", 2}}}}},
          {"stop", {{"signal", "SIGTERM"}, {"grace_s", 2}}}};
}

Json TaskAgentSpec() {
  return {{"name", "worker"},
          {"version", "1.0.0"},
          {"command", {"python3", SourceDir() + "/tests/agents/task_agent.py"}},
          {"env", {{"PYTHONPATH", SourceDir() + "/sdk/python"}}},
          {"config", {{"heartbeat_s", 1}, {"wait_s", 2}}},
          {"stop", {{"signal", "SIGTERM"}, {"grace_s", 2}}}};
}

class HardeningHttpTest : public ::testing::Test {
 protected:
  void TearDown() override {
    daemon_.StopWithAgents();
  }

  std::string DaemonLog() {
    std::ifstream f(daemon_.data_dir() + "/daemon.out");
    return std::string(std::istreambuf_iterator<char>(f), {});
  }

  bool Healthy(const std::string& instance) {
    return daemon_.Call("GET", "/v1/instances/" + instance).body["health"]["status"] ==
           "Healthy";
  }

  int ProbeFailures(const std::string& deployment) {
    auto r = daemon_.Call("GET", "/v1/events?limit=10000&deployment=" + deployment);
    int n = 0;
    for (const Json& e : r.body["items"]) n += e["kind"] == "ProbeFailed";
    return n;
  }

  double ProbesRun() {
    return daemon_.Call("GET", "/v1/health/summary").body["probes"]["count"].get<double>();
  }

  // Submits a task to `deployment` and waits (long polls) for its answer.
  Json RoundTrip(const std::string& deployment, int n) {
    auto r = daemon_.Call("POST", "/v1/tasks", {{"deployment", deployment}, {"input", {{"n", n}}}});
    EXPECT_EQ(r.status, 201u) << r.raw;
    std::string id = r.body.value("id", "");
    Json t;
    absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (!id.empty() && absl::Now() < deadline) {
      t = daemon_.Call("GET", "/v1/tasks/" + id + "?wait_s=5").body;
      std::string state = t.value("state", "");
      if (state != "Queued" && state != "Assigned") break;
    }
    return t;
  }

  // A probed agent, healthy, and a task agent that answers.
  void DeployFleet() {
    daemon_.RegisterSpec(ProbedSpec());
    daemon_.RegisterSpec(TaskAgentSpec());
    daemon_.CreateDeployment({{"name", "probed"}, {"spec", "probed@1.0.0"}, {"replicas", 1}});
    daemon_.CreateDeployment({{"name", "workers"}, {"spec", "worker@1.0.0"}, {"replicas", 1}});
    ASSERT_TRUE(daemon_.WaitRunning("probed", 1));
    ASSERT_TRUE(daemon_.WaitRunning("workers", 1));
    ASSERT_TRUE(WaitFor([&] { return Healthy("probed-001"); }))
        << daemon_.Call("GET", "/v1/instances/probed-001").raw;
    ASSERT_EQ(RoundTrip("workers", 0)["state"], "Succeeded");
    failures_before_ = ProbeFailures("probed");  // the startup probe's, while it came up
  }

  // With the idle connections open: the daemon still answers, probes keep passing, a new
  // deployment spawns and becomes healthy, and tasks still make the round trip.
  void ExpectNothingStarved() {
    auto h = daemon_.Call("GET", "/healthz");
    EXPECT_EQ(h.status, 200u) << h.raw;
    const double probes_before = ProbesRun();
    daemon_.CreateDeployment({{"name", "newcomer"}, {"spec", "probed@1.0.0"}, {"replicas", 1}});
    EXPECT_TRUE(daemon_.WaitRunning("newcomer", 1));
    EXPECT_TRUE(WaitFor([&] { return Healthy("newcomer-001"); }))
        << daemon_.Call("GET", "/v1/instances/newcomer-001").raw;
    for (int i = 1; i <= 5; ++i) {
      Json t = RoundTrip("workers", i);
      EXPECT_EQ(t["state"], "Succeeded") << t;
      EXPECT_EQ(t["output"]["echo"]["n"], i) << t;
    }
    EXPECT_TRUE(WaitFor([&] { return ProbesRun() >= probes_before + 5; }))
        << "probes stopped running";
    EXPECT_EQ(ProbeFailures("probed"), failures_before_);
    EXPECT_TRUE(Healthy("probed-001"));
  }

  TempDir dir_;
  Daemon daemon_{dir_.path()};
  int failures_before_ = 0;
};

TEST_F(HardeningHttpTest, TwoThousandIdleConnectionsStarveNeitherAgentsNorProbes) {
  if (RaiseOwnFdLimit() < 2300) GTEST_SKIP() << "needs 2300 descriptors (ulimit -Hn)";
  // The daemon starts with the usual default soft limit (1024) and must raise it itself.
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &rl), 0);
  daemon_.Start();
  RaiseOwnFdLimit();
  // The start log line says what the connection cap is and why.
  EXPECT_THAT(DaemonLog(), HasSubstr(" connections (RLIMIT_NOFILE "));
  DeployFleet();

  // Half never send a byte, half sent one request and sit in keep-alive.
  IdleConnections fresh(PortOf(daemon_.endpoint()), 1000, /*used=*/false);
  IdleConnections kept(PortOf(daemon_.endpoint()), 1000, /*used=*/true);
  ASSERT_EQ(fresh.opened(), 1000u);
  ASSERT_EQ(kept.answered(), 1000u);
  ExpectNothingStarved();
  EXPECT_EQ(kept.ClosedByPeer(), 0u);  // below the cap nothing is evicted
  // Never-used connections are closed after first_request_timeout (10 s), kept ones not.
  EXPECT_TRUE(WaitFor([&] { return fresh.ClosedByPeer() == 1000; }, absl::Seconds(30)));
  EXPECT_EQ(kept.ClosedByPeer(), 0u);
}

// Last in this file: it lowers this process's hard descriptor limit for good, so that the
// daemon it starts inherits a small one (1400 descriptors: a cap of 1050 connections).
TEST_F(HardeningHttpTest, AtTheConnectionCapIdleConnectionsMakeRoomForAgents) {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_max < 1400) GTEST_SKIP() << "needs a hard descriptor limit of 1400";
  rl.rlim_cur = rl.rlim_max = 1400;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &rl), 0);
  daemon_.Start();
  EXPECT_THAT(DaemonLog(), HasSubstr("up to 1050 connections (RLIMIT_NOFILE 1400"));
  DeployFleet();

  // More never-used connections than the cap: each beyond it evicts the oldest one.
  IdleConnections flood(PortOf(daemon_.endpoint()), 1200, /*used=*/false);
  ASSERT_EQ(flood.opened(), 1200u);
  EXPECT_TRUE(WaitFor([&] { return flood.ClosedByPeer() >= 1200 - 1050; }))
      << flood.ClosedByPeer() << " closed";
  ExpectNothingStarved();
}

}  // namespace
}  // namespace palm::testing
