#include <atomic>
#include <cstdlib>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palm/base/error.h"
#include "palm/cli/commands.h"
#include "palm/cli/main.h"
#include "palm/cli/output.h"
#include "palm/http/server.h"

namespace palm::cli {
namespace {

struct Parsed {
  int code;
  GlobalOptions globals;
  bool has_action;
};

Parsed Parse(std::vector<std::string> args) {
  Parsed p;
  Action action;
  p.code = ParseArgs(args, &p.globals, &action);
  p.has_action = static_cast<bool>(action);
  return p;
}

class FlagsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : {"PALM_ENDPOINT", "PALM_TOKEN", "PALM_DATA_DIR"}) unsetenv(v);
  }
};

TEST_F(FlagsTest, DefaultsAreDesignsDefaults) {
  Parsed p = Parse({"status"});
  EXPECT_EQ(p.code, -1);
  EXPECT_TRUE(p.has_action);
  EXPECT_EQ(p.globals.endpoint, "http://127.0.0.1:7070");
  EXPECT_EQ(p.globals.data_dir, ".palm");
  EXPECT_EQ(p.globals.output, "table");
  EXPECT_EQ(p.globals.tenant, "default");
  EXPECT_EQ(p.globals.token, "");
  EXPECT_FALSE(p.globals.yes);
}

TEST_F(FlagsTest, GlobalFlagsWorkBeforeAndAfterTheVerb) {
  Parsed before = Parse({"-o", "json", "--endpoint", "http://h:1", "instance", "list", "-d", "x"});
  Parsed after = Parse({"instance", "list", "-d", "x", "-o", "json", "--endpoint", "http://h:1"});
  for (const Parsed& p : {before, after}) {
    EXPECT_EQ(p.code, -1);
    EXPECT_EQ(p.globals.output, "json");
    EXPECT_EQ(p.globals.endpoint, "http://h:1");
  }
  Parsed mid = Parse({"deployment", "--tenant", "acme", "delete", "conf", "-y"});
  EXPECT_EQ(mid.code, -1);
  EXPECT_EQ(mid.globals.tenant, "acme");
  EXPECT_TRUE(mid.globals.yes);
}

TEST_F(FlagsTest, EnvironmentProvidesDefaultsAndFlagsWin) {
  setenv("PALM_ENDPOINT", "http://127.0.0.1:9999", 1);
  setenv("PALM_DATA_DIR", "/tmp/d", 1);
  setenv("PALM_TOKEN", "tok", 1);
  Parsed env = Parse({"status"});
  EXPECT_EQ(env.globals.endpoint, "http://127.0.0.1:9999");
  EXPECT_EQ(env.globals.data_dir, "/tmp/d");
  EXPECT_EQ(env.globals.token, "tok");
  Parsed flag = Parse({"status", "--endpoint", "http://x:1"});
  EXPECT_EQ(flag.globals.endpoint, "http://x:1");
}

TEST_F(FlagsTest, VerbFlagsParse) {
  EXPECT_EQ(Parse({"deploy", "conf@1.0.0", "--name", "conf", "--replicas", "2", "--config",
                   R"({"a":1})", "--env", "A=1", "--env", "B=2", "--strategy", "recreate",
                   "--wait", "--timeout", "30s"})
                .code,
            -1);
  EXPECT_EQ(Parse({"daemon", "start", "--foreground", "--listen", "127.0.0.1:1", "--data-dir",
                   "/tmp/x", "--examples", "examples"})
                .code,
            -1);
  EXPECT_EQ(Parse({"daemon", "stop", "--all"}).code, -1);
  EXPECT_EQ(Parse({"spec", "register", "-f", "-"}).code, -1);
  EXPECT_EQ(Parse({"deployment", "scale", "conf", "3", "--wait"}).code, -1);
  EXPECT_EQ(Parse({"instance", "logs", "conf-001", "-f", "--tail", "10"}).code, -1);
  EXPECT_EQ(Parse({"instances", "list"}).code, -1);  // alias
  EXPECT_EQ(Parse({"events"}).code, -1);
  EXPECT_EQ(Parse({"events", "-f", "-d", "conf", "--since", "0", "--limit", "5", "-o", "json"})
                .code,
            -1);
  EXPECT_EQ(Parse({"events", "--follow", "--deployment", "conf"}).code, -1);
  EXPECT_EQ(Parse({"health", "summary", "-o", "json"}).code, -1);
  EXPECT_EQ(Parse({"health", "unhealthy"}).code, -1);
  EXPECT_EQ(Parse({"health", "check", "conf-001"}).code, -1);
  EXPECT_EQ(Parse({"deployment", "apply", "-f", "d.yaml", "--wait", "--timeout", "1m"}).code, -1);
}

TEST_F(FlagsTest, TaskAndFleetFlagsParse) {
  EXPECT_EQ(Parse({"task", "submit", "support", "--input", R"({"q": "hi"})"}).code, -1);
  EXPECT_EQ(Parse({"task", "submit", "support", "--input-file", "in.json", "--broadcast",
                   "--target", "canary", "--idempotency-key", "k1", "--max-attempts", "5",
                   "--lease", "30s", "--wait", "--timeout", "2m"})
                .code,
            -1);
  Parsed waited = Parse({"task", "submit", "support", "--input", "1", "--wait"});
  EXPECT_EQ(waited.code, -1);
  EXPECT_TRUE(waited.globals.wait);
  EXPECT_EQ(Parse({"task", "submit", "s", "--input", "1", "--target", "support-002"}).code, -1);
  EXPECT_EQ(Parse({"task", "list"}).code, -1);
  EXPECT_EQ(Parse({"task", "list", "-d", "support", "--state", "Failed", "--limit", "5",
                   "--after", "task-00000001", "-o", "json"})
                .code,
            -1);
  EXPECT_EQ(Parse({"tasks", "get", "task-00000042"}).code, -1);  // alias
  EXPECT_EQ(Parse({"task", "cancel", "task-00000042"}).code, -1);
  EXPECT_EQ(Parse({"fleet", "deploy", "trading", "buy low, sell high"}).code, -1);
  EXPECT_EQ(Parse({"fleet", "run", "trading", "--timeout", "30s"}).code, -1);
  EXPECT_EQ(Parse({"fleet", "list"}).code, -1);
  EXPECT_EQ(Parse({"fleet", "show", "trading", "-o", "yaml"}).code, -1);
  EXPECT_EQ(Parse({"fleet", "health", "trading"}).code, -1);
  EXPECT_EQ(Parse({"instance", "drain", "trading-001"}).code, -1);
  EXPECT_EQ(Parse({"deployment", "drain", "trading"}).code, -1);
  EXPECT_EQ(Parse({"deployment", "resume", "trading"}).code, -1);
}

TEST_F(FlagsTest, TaskAndFleetUsageErrorsExitTwo) {
  EXPECT_EQ(Parse({"task"}).code, kExitUsage);
  EXPECT_EQ(Parse({"task", "submit"}).code, kExitUsage);  // no deployment
  EXPECT_EQ(Parse({"task", "submit", "s", "--input", "1", "--max-attempts", "0"}).code,
            kExitUsage);
  EXPECT_EQ(Parse({"task", "submit", "s", "--input", "1", "--max-attempts", "101"}).code,
            kExitUsage);
  EXPECT_EQ(Parse({"task", "submit", "s", "--input", "1", "--lease", "soon"}).code, kExitUsage);
  EXPECT_EQ(Parse({"task", "submit", "s", "--input"}).code, kExitUsage);
  EXPECT_EQ(Parse({"task", "list", "--limit", "0"}).code, kExitUsage);
  EXPECT_EQ(Parse({"task", "get"}).code, kExitUsage);
  EXPECT_EQ(Parse({"task", "cancel"}).code, kExitUsage);
  EXPECT_EQ(Parse({"task", "retry", "x"}).code, kExitUsage);
  EXPECT_EQ(Parse({"fleet"}).code, kExitUsage);
  EXPECT_EQ(Parse({"fleet", "deploy", "trading"}).code, kExitUsage);  // no task text
  EXPECT_EQ(Parse({"fleet", "run"}).code, kExitUsage);
  EXPECT_EQ(Parse({"fleet", "health"}).code, kExitUsage);
  EXPECT_EQ(Parse({"instance", "drain"}).code, kExitUsage);
  EXPECT_EQ(Parse({"deployment", "drain"}).code, kExitUsage);
  EXPECT_EQ(Parse({"deployment", "resume"}).code, kExitUsage);
}

TEST_F(FlagsTest, UsageErrorsExitTwo) {
  EXPECT_EQ(Parse({}).code, kExitUsage);
  EXPECT_EQ(Parse({"frobnicate"}).code, kExitUsage);
  EXPECT_EQ(Parse({"status", "-o", "xml"}).code, kExitUsage);
  EXPECT_EQ(Parse({"status", "--timeout", "soon"}).code, kExitUsage);
  EXPECT_EQ(Parse({"deploy"}).code, kExitUsage);
  EXPECT_EQ(Parse({"deploy", "x@1.0.0", "--replicas", "-1"}).code, kExitUsage);
  EXPECT_EQ(Parse({"deploy", "x@1.0.0", "--strategy", "yolo"}).code, kExitUsage);
  EXPECT_EQ(Parse({"spec", "register"}).code, kExitUsage);
  EXPECT_EQ(Parse({"spec"}).code, kExitUsage);
  EXPECT_EQ(Parse({"deployment", "scale", "conf", "many"}).code, kExitUsage);
  EXPECT_EQ(Parse({"health"}).code, kExitUsage);
  EXPECT_EQ(Parse({"health", "check"}).code, kExitUsage);
  EXPECT_EQ(Parse({"health", "sick"}).code, kExitUsage);
  EXPECT_EQ(Parse({"events", "--since", "-1"}).code, kExitUsage);
  EXPECT_EQ(Parse({"events", "--limit", "0"}).code, kExitUsage);
}

TEST_F(FlagsTest, HelpExitsZero) {
  EXPECT_EQ(Parse({"--help"}).code, 0);
  EXPECT_EQ(Parse({"deploy", "--help"}).code, 0);
  EXPECT_EQ(Parse({"deployment", "scale", "--help"}).code, 0);
  EXPECT_EQ(Parse({"health", "--help"}).code, 0);  // the conformance hook's probe
  EXPECT_EQ(Parse({"events", "--help"}).code, 0);
  EXPECT_EQ(Parse({"task", "--help"}).code, 0);
  EXPECT_EQ(Parse({"task", "submit", "--help"}).code, 0);
  EXPECT_EQ(Parse({"fleet", "--help"}).code, 0);
  EXPECT_EQ(Parse({"fleet", "run", "--help"}).code, 0);
}

// The conformance hook probes `palm health --help` to decide which areas exist: verbs that
// are not implemented must not answer it.
TEST_F(FlagsTest, UnimplementedVerbsAreNotRegistered) {
  for (const char* verb : {"rollout", "policy", "kill"}) {
    EXPECT_NE(Parse({verb, "--help"}).code, 0) << verb;
  }
  EXPECT_NE(Parse({"deployment", "history", "--help"}).code, 0);
  // Only deploy, run, list, show and health of the fleet verbs exist so far.
  for (const char* verb : {"create", "scale", "add-member", "delete", "export"}) {
    EXPECT_NE(Parse({"fleet", verb, "--help"}).code, 0) << verb;
  }
}


// ---- Pure helpers of the task and fleet verbs ----

using ::testing::HasSubstr;
using ::testing::Not;

TEST(TaskViewTest, ParseJsonFlagAcceptsAnyJsonValue) {
  EXPECT_EQ(*ParseJsonFlag("--input", R"({"b": 1, "a": [true]})"),
            Doc::parse(R"({"b": 1, "a": [true]})"));
  EXPECT_EQ(*ParseJsonFlag("--input", R"("hello")"), Doc("hello"));
  EXPECT_EQ(*ParseJsonFlag("--input", "42"), Doc(42));
  // Key order is the user's.
  EXPECT_EQ(ParseJsonFlag("--input", R"({"z": 1, "a": 2})")->dump(), R"({"z":1,"a":2})");
}

TEST(TaskViewTest, ParseJsonFlagRefusesBrokenJsonAsUsageError) {
  for (const char* bad : {"{a", "hello", "{\"a\": 1", "", "   ", "[1,]"}) {
    auto r = ParseJsonFlag("--input", bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(ExitCodeFor(r.status()), kExitUsage) << bad;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("--input")) << bad;
    EXPECT_THAT(FormatError(r.status()), HasSubstr("hint: ")) << bad;
  }
  auto r = ParseJsonFlag("--input", "{a");
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("not valid JSON"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("line 1, column 2"));
  EXPECT_THAT(std::string(r.status().message()), Not(HasSubstr("json.exception")));
}

TEST(TaskViewTest, FormatMillis) {
  EXPECT_EQ(FormatMillis(Doc(0.84)), "0.8ms");
  EXPECT_EQ(FormatMillis(Doc(12.54)), "12.5ms");
  EXPECT_EQ(FormatMillis(Doc(12)), "12ms");
  EXPECT_EQ(FormatMillis(Doc(340.4)), "340ms");
  EXPECT_EQ(FormatMillis(Doc(1250)), "1.25s");
  EXPECT_EQ(FormatMillis(Doc(60000)), "60s");
  EXPECT_EQ(FormatMillis(Doc()), "-");
}

TEST(TaskViewTest, TaskResultCell) {
  EXPECT_EQ(TaskResultCell(Doc::parse(R"({"state": "Succeeded", "output": {"a": 1}})")),
            R"({"a":1})");
  EXPECT_EQ(TaskResultCell(Doc::parse(R"({"state": "Succeeded", "output": "two\nlines"})")),
            "two\\nlines");
  EXPECT_EQ(TaskResultCell(Doc::parse(R"({"state": "Failed", "output": null, "error": "boom"})")),
            "error: boom");
  EXPECT_EQ(TaskResultCell(Doc::parse(R"({"state": "Queued", "output": null, "error": null})")),
            "-");
  EXPECT_EQ(TaskResultCell(Doc::parse(R"({"state": "TimedOut", "error": "lease expired"})")),
            "error: lease expired");
}

TEST(TaskViewTest, TaskOutcomeSaysWhatFailedWhere) {
  EXPECT_TRUE(TaskOutcome(Doc::parse(R"({"id": "t1", "state": "Succeeded"})")).ok());
  EXPECT_TRUE(TaskOutcome(Doc::parse(R"({"id": "t1", "state": "Assigned"})")).ok());
  absl::Status failed = TaskOutcome(Doc::parse(
      R"({"id": "t1", "mode": "route", "state": "Failed", "instance": "s-002", "error": "boom"})"));
  EXPECT_EQ(ExitCodeFor(failed), kExitFailure);
  EXPECT_EQ(failed.message(), "task t1 Failed on s-002: boom");
  EXPECT_THAT(ErrorHint(failed), HasSubstr("palm instance logs s-002"));
  absl::Status timed_out = TaskOutcome(Doc::parse(
      R"({"id": "t1", "mode": "route", "state": "TimedOut", "attempts": 3, "max_attempts": 3,
          "instance": null, "error": "lease expired"})"));
  EXPECT_EQ(ExitCodeFor(timed_out), kExitFailure);
  EXPECT_EQ(ErrorCode(timed_out), "TASK_TIMED_OUT");
  EXPECT_THAT(std::string(timed_out.message()), HasSubstr("after 3/3 attempts"));
  absl::Status cancelled = TaskOutcome(Doc::parse(R"({"id": "t1", "state": "Cancelled"})"));
  EXPECT_EQ(ErrorCode(cancelled), "TASK_CANCELLED");
  absl::Status broadcast = TaskOutcome(Doc::parse(
      R"({"id": "t2", "mode": "broadcast", "state": "Failed", "deliveries": [
          {"instance": "f-001", "state": "Succeeded"},
          {"instance": "f-002", "state": "Failed", "error": "no stock"}]})"));
  EXPECT_EQ(broadcast.message(),
            "task t2 Failed: 1 of 2 deliveries did not succeed (f-002 Failed: no stock)");
}

TEST(TaskViewTest, TaskMetricsTable) {
  const Doc tasks = Doc::parse(R"({"queued": 3, "assigned": 1, "waiting_agents": 2,
      "revisions": {"1": {
        "window_60s": {"window_s": 60, "count": 50, "succeeded": 48, "failed": 1, "timed_out": 1,
                       "error_rate": 0.04, "success_rate": 0.96, "p50_ms": 12.5, "p90_ms": 40,
                       "p99_ms": 1250},
        "window_300s": {"count": 0, "succeeded": 0, "failed": 0, "timed_out": 0,
                        "error_rate": 0, "success_rate": 0, "p50_ms": 0, "p90_ms": 0, "p99_ms": 0},
        "totals": {"count": 200, "succeeded": 190, "failed": 5, "timed_out": 5}}}})");
  EXPECT_EQ(TaskQueueLine(tasks), "3 queued | 1 assigned | 2 agents waiting");
  EXPECT_EQ(TaskMetricsTable(tasks),
            "REVISION   WINDOW   COUNT   OK    FAIL   TIMEOUT   ERR%   P50      P90    P99\n"
            "1          60s      50      48    1      1         4%     12.5ms   40ms   1.25s\n"
            "1          300s     0       0     0      0         0%     -        -      -\n"
            "1          total    200     190   5      5         5%     -        -      -\n");
  EXPECT_EQ(TaskQueueLine(Doc()), "");
  EXPECT_EQ(TaskMetricsTable(Doc()), "");
  EXPECT_EQ(TaskMetricsTable(Doc::parse(R"({"queued": 0, "revisions": {}})")), "");
}

// ---- The verbs against a fake daemon ----

// An HTTP server on a loop thread answering with `route`; records every request as
// "METHOD TARGET" and its body.
class FakeDaemon {
 public:
  using Route = std::function<http::Response(const http::Request&)>;
  explicit FakeDaemon(Route route)
      : route_(std::move(route)),
        work_(boost::asio::make_work_guard(io_)),
        server_(io_, http::ServerOptions{},
                [this](http::Request req, std::shared_ptr<http::Exchange> ex) {
                  http::Response resp = route_(req);
                  {
                    std::lock_guard<std::mutex> l(mu_);
                    requests_.push_back(req.method + " " + req.target);
                    bodies_[req.method + " " + req.path] = req.body;
                  }
                  ex->Respond(std::move(resp));
                }) {
    EXPECT_TRUE(server_.Listen("127.0.0.1:0").ok());
    thread_ = std::thread([this] { io_.run(); });
  }
  ~FakeDaemon() {
    std::promise<void> stopped;
    server_.Stop([&stopped] { stopped.set_value(); });
    stopped.get_future().wait();
    work_.reset();
    io_.stop();
    thread_.join();
  }
  std::string endpoint() const {
    return "http://127.0.0.1:" + std::to_string(server_.port());
  }
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> l(mu_);
    return requests_;
  }
  // The body of the last "METHOD /path" request (without query), parsed.
  Doc body(const std::string& method_path) {
    std::lock_guard<std::mutex> l(mu_);
    return Doc::parse(bodies_[method_path], nullptr, false);
  }

 private:
  Route route_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  http::Server server_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> requests_;
  std::map<std::string, std::string> bodies_;
};

http::Response Json(unsigned status, const std::string& body) {
  http::Response r;
  r.status = status;
  r.body = body;
  return r;
}

struct CliRun {
  int code;
  std::string out;
  std::string err;
};

CliRun RunCli(const std::string& endpoint, std::vector<std::string> args) {
  args.insert(args.begin(), {"palm", "--endpoint", endpoint, "--token", "t"});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  CliRun r;
  r.code = Main(static_cast<int>(argv.size()), argv.data());
  std::cout.flush();
  std::cerr.flush();
  r.out = ::testing::internal::GetCapturedStdout();
  r.err = ::testing::internal::GetCapturedStderr();
  return r;
}

constexpr const char* kNoDaemon = "http://127.0.0.1:1";

TEST_F(FlagsTest, TaskSubmitRefusesBadInputBeforeCallingTheDaemon) {
  CliRun bad = RunCli(kNoDaemon, {"task", "submit", "s", "--input", "{question: hi}"});
  EXPECT_EQ(bad.code, kExitUsage);
  EXPECT_THAT(bad.err, HasSubstr("error: --input is not valid JSON: line 1, column 2"));
  EXPECT_THAT(bad.err, HasSubstr("hint: give one JSON value"));
  EXPECT_THAT(bad.err, Not(HasSubstr("daemon")));
  EXPECT_EQ(RunCli(kNoDaemon, {"task", "submit", "s"}).code, kExitUsage);
  EXPECT_EQ(RunCli(kNoDaemon, {"task", "submit", "s", "--input", "1", "--input-file", "f"}).code,
            kExitUsage);
  EXPECT_EQ(RunCli(kNoDaemon, {"task", "submit", "s", "--input", "1", "--lease", "0s"}).code,
            kExitUsage);
  EXPECT_EQ(RunCli(kNoDaemon, {"task", "submit", "s", "--input", "1", "--lease", "2d"}).code,
            kExitUsage);
  EXPECT_EQ(RunCli(kNoDaemon, {"task", "submit", "s", "--input-file", "/nonexistent/x"}).code,
            kExitNotFound);
  EXPECT_EQ(RunCli(kNoDaemon, {"task", "list", "--state", "Sleeping"}).code, kExitUsage);
  // Valid input: the daemon is asked (and is not there).
  EXPECT_EQ(RunCli(kNoDaemon, {"task", "submit", "s", "--input", "{}"}).code, kExitFailure);
}

TEST_F(FlagsTest, TaskSubmitSendsTheFieldsAndPrintsTheAnswer) {
  const std::string answer =
      R"({"id": "task-1", "deployment": "s", "mode": "route", "state": "Queued", "attempts": 0,)"
      R"( "max_attempts": 5, "instance": null, "output": null, "error": null})";
  FakeDaemon d([&](const http::Request& req) { return Json(201, answer); });
  CliRun r = RunCli(d.endpoint(), {"task", "submit", "s", "--input", R"({"q": "hi"})", "--target",
                                   "canary", "--idempotency-key", "k", "--max-attempts", "5",
                                   "--lease", "1m30s"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(d.body("POST /v1/tasks"),
            Doc::parse(R"({"deployment": "s", "input": {"q": "hi"}, "target": "canary",
                           "timeout_s": 90, "max_attempts": 5, "idempotency_key": "k"})"));
  EXPECT_THAT(r.out, HasSubstr("task-1"));
  EXPECT_THAT(r.out, HasSubstr("Queued"));
  // -o json: the API's document, pretty-printed, nothing else.
  CliRun j = RunCli(d.endpoint(), {"task", "submit", "s", "--input", "1", "--broadcast", "-o",
                                   "json"});
  EXPECT_EQ(j.code, 0);
  EXPECT_EQ(j.out, Doc::parse(answer).dump(2) + "\n");
  EXPECT_EQ(d.body("POST /v1/tasks")["mode"], "broadcast");
}

TEST_F(FlagsTest, TaskSubmitWaitLongPollsUntilFinished) {
  std::atomic<int> polls{0};
  FakeDaemon d([&](const http::Request& req) {
    if (req.method == "POST") {
      return Json(201, R"({"id": "task-7", "mode": "route", "state": "Queued"})");
    }
    if (++polls < 3) {
      return Json(200, R"({"id": "task-7", "mode": "route", "state": "Assigned", "attempts": 1,
                           "max_attempts": 3, "instance": "s-001"})");
    }
    return Json(200, R"({"id": "task-7", "mode": "route", "state": "Succeeded", "attempts": 1,
                         "max_attempts": 3, "instance": "s-001", "latency_ms": 12.5,
                         "output": {"answer": 42}, "error": null})");
  });
  CliRun r = RunCli(d.endpoint(), {"task", "submit", "s", "--input", "{}", "--wait"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Succeeded"));
  EXPECT_THAT(r.out, HasSubstr(R"({"answer":42})"));
  EXPECT_THAT(r.out, HasSubstr("12.5ms"));
  const auto reqs = d.requests();
  ASSERT_EQ(reqs.size(), 4u);
  EXPECT_EQ(reqs[1], "GET /v1/tasks/task-7?wait_s=25");
}

TEST_F(FlagsTest, TaskSubmitWaitExitsNonZeroWhenTheTaskFails) {
  FakeDaemon d([&](const http::Request& req) {
    if (req.method == "POST") return Json(201, R"({"id": "task-8", "state": "Queued"})");
    return Json(200, R"({"id": "task-8", "mode": "route", "state": "Failed", "attempts": 1,
                         "instance": "s-002", "output": null, "error": "boom"})");
  });
  CliRun r = RunCli(d.endpoint(), {"task", "submit", "s", "--input", "{}", "--wait"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("error: task task-8 Failed on s-002: boom"));
  EXPECT_THAT(r.out, HasSubstr("error: boom"));
}

TEST_F(FlagsTest, TaskSubmitWaitTimesOutWithExitFive) {
  FakeDaemon d([&](const http::Request& req) {
    if (req.method == "POST") return Json(201, R"({"id": "task-9", "state": "Queued"})");
    return Json(200, R"({"id": "task-9", "mode": "route", "state": "Queued"})");
  });
  CliRun r = RunCli(d.endpoint(),
                    {"task", "submit", "s", "--input", "{}", "--wait", "--timeout", "1s"});
  EXPECT_EQ(r.code, kExitTimeout);
  EXPECT_THAT(r.err, HasSubstr("error: task task-9: Queued after waiting 1s"));
  EXPECT_THAT(r.err, HasSubstr("palm task cancel task-9"));
}

TEST_F(FlagsTest, TaskSubmitBroadcastShowsOneRowPerDelivery) {
  FakeDaemon d([&](const http::Request& req) {
    return Json(201, R"({"id": "task-3", "mode": "broadcast", "state": "Succeeded",
        "max_attempts": 3, "deliveries": [
          {"instance": "f-001", "state": "Succeeded", "attempts": 1, "output": "done"},
          {"instance": "f-002", "state": "Succeeded", "attempts": 2, "output": {"n": 1}}]})");
  });
  CliRun r = RunCli(d.endpoint(), {"task", "submit", "f", "--input", "{}", "--broadcast"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "task task-3 Succeeded (broadcast to 2 instances)\n"
            "INSTANCE   STATE       ATTEMPTS   OUTPUT/ERROR\n"
            "f-001      Succeeded   1/3        done\n"
            "f-002      Succeeded   2/3        {\"n\":1}\n");
}

TEST_F(FlagsTest, TaskListGetCancel) {
  FakeDaemon d([&](const http::Request& req) {
    if (req.path == "/v1/tasks") {
      return Json(200, R"({"items": [{"id": "task-1", "deployment": "s", "mode": "route",
          "state": "Failed", "attempts": 1, "max_attempts": 3, "instance": "s-001",
          "latency_ms": 3}], "next": "task-1"})");
    }
    if (req.path == "/v1/tasks/task-1/cancel") {
      return Json(409, R"({"error": {"code": "TASK_ALREADY_FINISHED",
                          "message": "task task-1 is already Failed"}})");
    }
    if (req.path == "/v1/tasks/task-1") {
      return Json(200, R"({"id": "task-1", "deployment": "s", "mode": "broadcast",
          "state": "Failed", "max_attempts": 3, "input": {"q": 1}, "deliveries": [
          {"instance": "s-001", "revision": 1, "state": "Failed", "attempts": 1,
           "error": "boom"}]})");
    }
    return Json(404, R"({"error": {"code": "TASK_NOT_FOUND", "message": "no task"}})");
  });
  CliRun list = RunCli(d.endpoint(),
                       {"task", "list", "-d", "s", "--state", "failed", "--limit", "5"});
  EXPECT_EQ(list.code, 0) << list.err;
  EXPECT_EQ(d.requests().back(), "GET /v1/tasks?deployment=s&state=Failed&limit=5");
  EXPECT_THAT(list.out, HasSubstr("ID       DEPLOYMENT   MODE    STATE    ATTEMPTS   INSTANCE"));
  EXPECT_THAT(list.out, HasSubstr("3ms"));
  EXPECT_THAT(list.err, HasSubstr("palm task list --after task-1"));
  CliRun get = RunCli(d.endpoint(), {"task", "get", "task-1"});
  EXPECT_EQ(get.code, 0) << get.err;
  EXPECT_THAT(get.out, HasSubstr("1 Failed"));
  EXPECT_THAT(get.out, HasSubstr(R"({"q":1})"));
  EXPECT_THAT(get.out, HasSubstr("Deliveries:"));
  EXPECT_THAT(get.out, HasSubstr("error: boom"));
  EXPECT_EQ(RunCli(d.endpoint(), {"task", "get", "task-404"}).code, kExitNotFound);
  CliRun cancel = RunCli(d.endpoint(), {"task", "cancel", "task-1"});
  EXPECT_EQ(cancel.code, kExitFailure);
  EXPECT_THAT(cancel.err, HasSubstr("already Failed"));
}

TEST_F(FlagsTest, FleetRunBroadcastsTheDeployedTask) {
  std::atomic<int> polls{0};
  FakeDaemon d([&](const http::Request& req) {
    if (req.path == "/v1/deployments/f") {
      return Json(200, R"({"name": "f", "last_deployed_task": "count the stock"})");
    }
    if (req.method == "POST") {
      return Json(201, R"({"id": "task-5", "mode": "broadcast", "state": "Queued",
          "deliveries": [{"instance": "f-001", "state": "Queued"},
                         {"instance": "f-002", "state": "Queued"},
                         {"instance": "f-003", "state": "Queued"}]})");
    }
    ++polls;
    return Json(200, R"({"id": "task-5", "mode": "broadcast", "state": "Failed",
        "max_attempts": 3, "deliveries": [
          {"instance": "f-001", "state": "Succeeded", "attempts": 1, "output": "12"},
          {"instance": "f-002", "state": "Succeeded", "attempts": 1, "output": "7"},
          {"instance": "f-003", "state": "Failed", "attempts": 1, "error": "no access"}]})");
  });
  CliRun r = RunCli(d.endpoint(), {"fleet", "run", "f"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_EQ(d.body("POST /v1/tasks"),
            Doc::parse(R"({"deployment": "f", "mode": "broadcast",
                           "input": {"task": "count the stock"}})"));
  EXPECT_EQ(r.out,
            "INSTANCE   DELIVERY    ATTEMPTS   RESULT/ERROR\n"
            "f-001      Succeeded   1/3        12\n"
            "f-002      Succeeded   1/3        7\n"
            "f-003      Failed      1/3        error: no access\n"
            "3/3 delivered, 2 succeeded, 1 failed\n");
  EXPECT_THAT(r.err, HasSubstr("error: fleet f: 1 of 3 deliveries did not succeed "
                               "(f-003 Failed: no access)"));
  EXPECT_EQ(polls.load(), 1);
}

TEST_F(FlagsTest, FleetRunWithoutDeployedTaskSaysWhatToDo) {
  FakeDaemon d([&](const http::Request& req) {
    return Json(200, R"({"name": "f", "last_deployed_task": null})");
  });
  CliRun r = RunCli(d.endpoint(), {"fleet", "run", "f"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("fleet f has no task to run"));
  EXPECT_THAT(r.err, HasSubstr("palm fleet deploy f \"TASK\""));
  EXPECT_EQ(d.requests().size(), 1u);  // nothing submitted
}

TEST_F(FlagsTest, FleetDeployListShowHealth) {
  const std::string dep = R"({"name": "f", "spec": "w@1.0.0", "replicas": 2,
      "last_deployed_task": "count the stock", "last_deployed_at": null,
      "status": {"phase": "Complete", "replicas": {"desired": 2, "current": 2, "ready": 2,
                 "available": 2}, "health": {"healthy": 1, "degraded": 1, "unhealthy": 0,
                 "unknown": 0}}})";
  FakeDaemon d([&](const http::Request& req) {
    if (req.path == "/v1/deployments/f/fleet-task") return Json(200, dep);
    if (req.path == "/v1/deployments/f") return Json(200, dep);
    if (req.path == "/v1/deployments") return Json(200, "{\"items\": [" + dep + "]}");
    if (req.path == "/v1/instances") {
      return Json(200, R"({"items": [{"id": "f-001", "state": "Running", "ready": true,
          "health": {"status": "Healthy"}, "restarts": 0}]})");
    }
    if (req.path == "/v1/health/unhealthy") {
      return Json(200, R"({"items": [{"id": "f-002", "deployment": "f", "state": "Running",
          "health": {"status": "Degraded", "reason": "slow"}, "ready": true}]})");
    }
    return Json(404, R"({"error": {"code": "NOT_FOUND", "message": "no"}})");
  });
  CliRun deploy = RunCli(d.endpoint(), {"fleet", "deploy", "f", "count the stock"});
  EXPECT_EQ(deploy.code, 0) << deploy.err;
  EXPECT_EQ(d.body("POST /v1/deployments/f/fleet-task"),
            Doc::parse(R"({"task": "count the stock"})"));
  EXPECT_THAT(deploy.out, HasSubstr(R"(fleet f: task recorded: "count the stock")"));
  CliRun list = RunCli(d.endpoint(), {"fleet", "list"});
  EXPECT_EQ(list.code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("count the stock"));
  CliRun show = RunCli(d.endpoint(), {"fleet", "show", "f"});
  EXPECT_EQ(show.code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr(R"("count the stock")"));
  EXPECT_THAT(show.out, HasSubstr("f-001"));
  CliRun health = RunCli(d.endpoint(), {"fleet", "health", "f"});
  EXPECT_EQ(health.code, 0) << health.err;
  EXPECT_THAT(health.out, HasSubstr("1 (50%)"));
  EXPECT_THAT(health.out, HasSubstr("slow"));
  CliRun json = RunCli(d.endpoint(), {"fleet", "show", "f", "-o", "json"});
  EXPECT_EQ(json.out, Doc::parse(dep).dump(2) + "\n");
}

TEST_F(FlagsTest, DrainAndResumeCallTheirEndpoints) {
  FakeDaemon d([&](const http::Request& req) { return Json(202, R"({"name": "x"})"); });
  EXPECT_EQ(RunCli(d.endpoint(), {"instance", "drain", "x-001"}).code, 0);
  EXPECT_EQ(d.requests().back(), "POST /v1/instances/x-001/drain");
  CliRun drain = RunCli(d.endpoint(), {"deployment", "drain", "x"});
  EXPECT_EQ(drain.code, 0);
  EXPECT_EQ(d.requests().back(), "POST /v1/deployments/x/drain");
  EXPECT_THAT(drain.out, HasSubstr("palm deployment resume x"));
  EXPECT_EQ(RunCli(d.endpoint(), {"deployment", "resume", "x"}).code, 0);
  EXPECT_EQ(d.requests().back(), "POST /v1/deployments/x/resume");
}

TEST_F(FlagsTest, DeploymentGetShowsTaskMetrics) {
  FakeDaemon d([&](const http::Request& req) {
    return Json(200, R"({"name": "x", "spec": "w@1.0.0", "status": {"phase": "Complete",
        "tasks": {"queued": 4, "assigned": 1, "waiting_agents": 0, "revisions": {"2": {
          "window_60s": {"count": 10, "succeeded": 9, "failed": 1, "timed_out": 0,
                         "error_rate": 0.1, "p50_ms": 5, "p90_ms": 9, "p99_ms": 20}}}}}})");
  });
  CliRun r = RunCli(d.endpoint(), {"deployment", "get", "x"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("4 queued | 1 assigned | 0 agents waiting"));
  EXPECT_THAT(r.out, HasSubstr("Task metrics:\nREVISION   WINDOW"));
  EXPECT_THAT(r.out, HasSubstr("2          60s      10      9    1      0         10%"));
}

}  // namespace
}  // namespace palm::cli
