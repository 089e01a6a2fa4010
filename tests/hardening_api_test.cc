// API input hardening against a real daemon: deep JSON through every endpoint that takes
// JSON, numbers and JSON edge cases, media types, and the declared query of every route.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/harness.h"

namespace palm::testing {
namespace {

using ::testing::HasSubstr;

std::string Deep(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// The value of `name` in the environment of process `pid`, or "".
std::string EnvOf(int pid, const std::string& name) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/environ"), std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  for (absl::string_view kv : absl::StrSplit(ss.str(), '\0')) {
    if (absl::StartsWith(kv, name + "=")) return std::string(kv.substr(name.size() + 1));
  }
  return "";
}

class HardeningApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_.Start();
    daemon_.RegisterSpec({{"kind", "AgentSpec"},
                          {"name", "sleeper"},
                          {"version", "1.0.0"},
                          {"command", {"/bin/sleep", "3600"}},
                          {"stop", {{"signal", "SIGTERM"}, {"grace_s", 1}}}});
    daemon_.CreateDeployment({{"name", "agents"}, {"spec", "sleeper@1.0.0"}, {"replicas", 1}});
    ASSERT_TRUE(daemon_.WaitRunning("agents", 1));
    auto inst = daemon_.Instances("agents");
    ASSERT_EQ(inst.size(), 1u);
    instance_ = inst[0]["id"];
    // The agent's own token, as the agent would read it.
    agent_token_ = EnvOf(inst[0]["pid"].get<int>(), "PALM_TOKEN");
    ASSERT_FALSE(agent_token_.empty());
  }
  void TearDown() override {
    daemon_.StopWithAgents();
  }

  Daemon::Reply Admin(const std::string& method, const std::string& target,
                      const std::string& body = "") {
    return daemon_.CallRaw(method, target, body, daemon_.token());
  }
  Daemon::Reply Agent(const std::string& method, const std::string& target,
                      const std::string& body = "") {
    return daemon_.CallRaw(method, target, body, agent_token_);
  }

  // One request on its own connection with the given Content-Type; returns the status.
  unsigned WithContentType(const std::string& content_type, const std::string& body) {
    auto [host, port] = HostPort();
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return 0;
    std::string req = absl::StrCat("POST /v1/specs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n",
                                   "Authorization: Bearer ", daemon_.token(), "\r\n",
                                   "Content-Type: ", content_type, "\r\n",
                                   "Content-Length: ", body.size(), "\r\n\r\n", body);
    ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    std::string got;
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) got.append(buf, static_cast<size_t>(n));
    ::close(fd);
    unsigned status = 0;
    if (got.size() > 12) status = static_cast<unsigned>(std::atoi(got.c_str() + 9));
    return status;
  }

  std::pair<std::string, uint16_t> HostPort() const {
    std::string hp = daemon_.endpoint().substr(std::string("http://").size());
    size_t colon = hp.rfind(':');
    return {hp.substr(0, colon), static_cast<uint16_t>(std::stoi(hp.substr(colon + 1)))};
  }

  // What the store holds: deployment names and the number of tasks.
  std::pair<std::vector<std::string>, size_t> Stored() {
    std::vector<std::string> names;
    // Held in a variable: a range-for over a member of a temporary reads freed memory.
    const Json deployments = daemon_.Call("GET", "/v1/deployments").body;
    for (const Json& d : deployments["items"]) names.push_back(d["name"]);
    return {names, daemon_.Call("GET", "/v1/tasks").body["items"].size()};
  }

  TempDir dir_;
  Daemon daemon_{dir_.path()};
  std::string instance_;
  std::string agent_token_;
};

TEST_F(HardeningApiTest, DeepJsonThroughEveryEndpointIsRefusedAndChangesNothing) {
  const std::string deep = Deep(100'000);
  auto before = Stored();
  struct Case {
    bool agent;
    std::string method, target, body;
  };
  const std::vector<Case> cases = {
      {false, "POST", "/v1/deployments",
       R"({"name": "deep", "spec": "sleeper@1.0.0", "replicas": 0, "config": {"a": )" + deep +
           "}}"},
      {false, "PUT", "/v1/deployments/deep",
       R"({"spec": "sleeper@1.0.0", "replicas": 0, "config": {"a": )" + deep + "}}"},
      {false, "POST", "/v1/tasks", R"({"deployment": "agents", "input": )" + deep + "}"},
      {false, "POST", "/v1/specs", R"({"name": "x", "version": "1.0.0", "config": )" + deep + "}"},
      {true, "POST", "/v1/agent/tasks/task-00000001/result",
       R"({"ok": true, "output": )" + deep + "}"},
      {true, "POST", "/v1/agent/heartbeat", R"({"status": "ok", "metrics": {"m": )" + deep + "}}"},
      {false, "POST", "/v1/deployments", deep},
  };
  for (const Case& c : cases) {
    auto r = c.agent ? Agent(c.method, c.target, c.body) : Admin(c.method, c.target, c.body);
    EXPECT_EQ(r.status, 400u) << c.method << " " << c.target << ": " << r.raw.substr(0, 300);
    EXPECT_EQ(r.body["error"].value("code", ""), "MALFORMED_JSON") << c.target;
    EXPECT_THAT(r.body["error"].value("message", ""), HasSubstr("nesting deeper than 64 levels"))
        << c.target;
    ASSERT_EQ(daemon_.Call("GET", "/healthz").status, 200u) << "after " << c.target;
  }
  EXPECT_EQ(Stored(), before);
}

TEST_F(HardeningApiTest, NumbersDuplicateKeysAndMediaTypes) {
  auto before = Stored();
  auto r = Admin("POST", "/v1/deployments",
                 R"({"name": "big", "spec": "sleeper@1.0.0", "config": {"a": 1e400}})");
  EXPECT_EQ(r.status, 400u) << r.raw;
  EXPECT_THAT(r.body["error"].value("message", ""),
              HasSubstr("config.a: the number 1e400 is out of range"));
  r = Admin("POST", "/v1/tasks", R"({"deployment": "agents", "input": {"x": [-1e999]}})");
  EXPECT_EQ(r.status, 400u) << r.raw;
  EXPECT_THAT(r.body["error"].value("message", ""), HasSubstr("input.x[0]: the number -1e999"));
  r = Agent("POST", "/v1/agent/heartbeat", R"({"metrics": {"load": 1e400}})");
  EXPECT_EQ(r.status, 400u) << r.raw;
  EXPECT_THAT(r.body["error"].value("message", ""), HasSubstr("metrics.load"));
  r = Admin("POST", "/v1/deployments",
            R"({"name": "dup", "spec": "sleeper@1.0.0", "replicas": 0, "name": "dup2"})");
  EXPECT_EQ(r.status, 400u) << r.raw;
  EXPECT_THAT(r.body["error"].value("message", ""), HasSubstr("duplicate key \"name\""));
  EXPECT_EQ(Stored(), before);

  const std::string spec = R"({"name": "mt", "version": "1.0.0", "command": ["/bin/true"]})";
  EXPECT_EQ(WithContentType("application/jsonx", spec), 415u);
  EXPECT_EQ(WithContentType("text/plain", spec), 415u);
  EXPECT_EQ(WithContentType("application/json; charset=latin1", spec), 415u);
  EXPECT_EQ(WithContentType("Application/JSON; charset=utf-8", spec), 201u);
}

// Every route x bad queries: 400 INVALID_ARGUMENT naming the parameter, before anything is
// looked up or changed.
TEST_F(HardeningApiTest, EveryRouteRefusesABadQuery) {
  struct Route {
    bool agent;
    std::string method, path;
  };
  const std::string d = "/v1/deployments/agents";
  const std::string i = "/v1/instances/" + instance_;
  const std::vector<Route> routes = {
      {false, "GET", "/healthz"},
      {false, "GET", "/readyz"},
      {false, "GET", "/v1/specs"},
      {false, "POST", "/v1/specs"},
      {false, "GET", "/v1/specs/sleeper"},
      {false, "GET", "/v1/specs/sleeper/1.0.0"},
      {false, "POST", "/v1/specs/sleeper/1.0.0/deprecate"},
      {false, "GET", "/v1/deployments"},
      {false, "POST", "/v1/deployments"},
      {false, "GET", d},
      {false, "PUT", d},
      {false, "DELETE", d},
      {false, "POST", d + "/scale"},
      {false, "POST", d + "/drain"},
      {false, "POST", d + "/pause"},
      {false, "POST", d + "/resume"},
      {false, "POST", d + "/promote"},
      {false, "POST", d + "/abort"},
      {false, "POST", d + "/undo"},
      {false, "POST", d + "/restart"},
      {false, "GET", d + "/history"},
      {false, "POST", d + "/fleet-task"},
      {false, "GET", d + "/task-metrics"},
      {false, "GET", "/v1/instances"},
      {false, "GET", i},
      {false, "POST", i + "/check"},
      {false, "POST", i + "/drain"},
      {false, "POST", i + "/restart"},
      {false, "GET", i + "/logs"},
      {false, "GET", "/v1/events"},
      {false, "GET", "/v1/health/summary"},
      {false, "GET", "/v1/health/unhealthy"},
      {false, "GET", "/v1/status"},
      {false, "GET", "/v1/daemon"},
      {false, "POST", "/v1/daemon/stop"},
      {false, "GET", "/v1/tasks"},
      {false, "POST", "/v1/tasks"},
      {false, "GET", "/v1/tasks/task-00000001"},
      {false, "POST", "/v1/tasks/task-00000001/cancel"},
      {true, "GET", "/v1/agent/tasks/next"},
      {true, "POST", "/v1/agent/tasks/task-00000001/result"},
      {true, "POST", "/v1/agent/heartbeat"},
  };
  const std::vector<std::string> bad = {
      "bogus=1",       "limit=-1",       "limit=1&limit=2", "order=sideways", "tenant=../../x",
      "after=..%2Fx",  "wait_s=x",       "follow=maybe",    "tail=-5",        "since=-1",
      "state=Sleeping", "window_s=0",    "next_wait_s=61",  "deployment=No_Such",
  };
  for (const Route& r : routes) {
    for (const std::string& q : bad) {
      std::string target = r.path + "?" + q;
      auto reply = r.agent ? Agent(r.method, target, "{}") : Admin(r.method, target, "{}");
      EXPECT_EQ(reply.status, 400u) << r.method << " " << target << ": " << reply.raw;
      EXPECT_EQ(reply.body["error"].value("code", ""), "INVALID_ARGUMENT")
          << r.method << " " << target;
    }
  }
  // Nothing was changed by any of them: the daemon still runs, the deployment is there.
  EXPECT_EQ(daemon_.Call("GET", "/healthz").status, 200u);
  EXPECT_EQ(daemon_.Call("GET", d).status, 200u);
}

TEST_F(HardeningApiTest, CursorsTenantsAndGoodQueries) {
  for (const std::string& name : {"b1", "b2", "b3"}) {
    daemon_.CreateDeployment({{"name", name}, {"spec", "sleeper@1.0.0"}, {"replicas", 0}});
  }
  auto page = daemon_.Call("GET", "/v1/deployments?limit=2");
  ASSERT_EQ(page.status, 200u) << page.raw;
  EXPECT_EQ(page.body["next"], "b1");
  page = daemon_.Call("GET", "/v1/deployments?limit=2&after=b1");
  ASSERT_EQ(page.status, 200u) << page.raw;
  EXPECT_EQ(page.body["items"].size(), 2u);
  EXPECT_EQ(page.body["items"][0]["name"], "b2");
  // A cursor naming nothing is not page one again: 410, list again from the start.
  ASSERT_EQ(daemon_.Call("DELETE", "/v1/deployments/b2").status, 200u);
  page = daemon_.Call("GET", "/v1/deployments?limit=2&after=b2");
  EXPECT_EQ(page.status, 410u) << page.raw;
  EXPECT_EQ(page.body["error"].value("code", ""), "CURSOR_EXPIRED");
  // Task ids and event seqs are positional: a cursor past the end is an empty page.
  page = daemon_.Call("GET", "/v1/tasks?after=task-00000099");
  EXPECT_EQ(page.status, 200u) << page.raw;
  page = daemon_.Call("GET", "/v1/events?after=999999&order=asc&limit=5");
  EXPECT_EQ(page.status, 200u) << page.raw;
  EXPECT_EQ(page.body["items"].size(), 0u);
  // ?tenant= selects the admin's tenant; an agent may name only its own.
  page = daemon_.Call("GET", "/v1/deployments?tenant=acme");
  ASSERT_EQ(page.status, 200u) << page.raw;
  EXPECT_EQ(page.body["items"].size(), 0u);
  EXPECT_EQ(daemon_.Call("GET", "/v1/deployments?tenant=default").body["items"].size(), 3u);
  EXPECT_EQ(Agent("POST", "/v1/agent/heartbeat?tenant=acme", "{}").status, 403u);
  EXPECT_EQ(Agent("POST", "/v1/agent/heartbeat?tenant=default", "{}").status, 200u);
  // Accepted parameters still work.
  EXPECT_EQ(daemon_.Call("GET", "/v1/instances?deployment=agents&state=Running&limit=1").status,
            200u);
  EXPECT_EQ(daemon_.Call("GET", "/v1/instances/" + instance_ + "/logs?tail=5&follow=0").status,
            200u);
  EXPECT_EQ(Agent("GET", "/v1/agent/tasks/next?wait_s=0").status, 204u);
}

}  // namespace
}  // namespace palm::testing
