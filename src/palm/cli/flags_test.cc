#include <cstdlib>

#include "gtest/gtest.h"
#include "palm/cli/main.h"

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
}

// The conformance hook probes `palm health --help` to decide which areas exist: verbs that
// are not implemented must not answer it.
TEST_F(FlagsTest, UnimplementedVerbsAreNotRegistered) {
  for (const char* verb : {"task", "rollout", "policy", "kill"}) {
    EXPECT_NE(Parse({verb, "--help"}).code, 0) << verb;
  }
  EXPECT_NE(Parse({"deployment", "history", "--help"}).code, 0);
}

}  // namespace
}  // namespace palm::cli
