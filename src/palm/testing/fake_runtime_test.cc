#include "palm/testing/fake_runtime.h"

#include <signal.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace palm::testing {
namespace {

using runtime::ExitStatus;
using runtime::ProcessId;
using runtime::SpawnRequest;
using ::testing::ElementsAre;

SpawnRequest Req(const std::string& id, const std::string& cmd = "agent") {
  SpawnRequest r;
  r.instance_id = id;
  r.argv = {cmd, "--flag"};
  r.log_path = "/logs/" + id + ".log";
  return r;
}

struct Exited {
  std::string id;
  ExitStatus status;
};

class FakeRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rt_.SetExitCallback([this](const std::string& id, ExitStatus st) {
      exits_.push_back({id, st});
    });
  }
  FakeRuntime rt_;
  std::vector<Exited> exits_;
};

TEST_F(FakeRuntimeTest, SpawnAssignsPidsAndRecords) {
  auto a = rt_.Spawn(Req("a-001"));
  auto b = rt_.Spawn(Req("a-002"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->pid, 1000);
  EXPECT_EQ(b->pid, 1001);
  EXPECT_NE(a->start_time, b->start_time);
  EXPECT_EQ(rt_.Watched(), 2u);
  EXPECT_TRUE(rt_.IsRunning("a-001"));
  EXPECT_THAT(rt_.Running(), ElementsAre("a-001", "a-002"));
  ASSERT_EQ(rt_.spawns().size(), 2u);
  EXPECT_EQ(rt_.spawns()[1].request.argv[1], "--flag");
  EXPECT_EQ(rt_.ProcessOf("a-002")->pid, 1001);
  EXPECT_EQ(rt_.Spawn(Req("a-001")).status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(FakeRuntimeTest, ScriptedSpawnFailures) {
  rt_.FailNextSpawn(absl::InternalError("boom"));
  rt_.FailSpawnsFor("broken", absl::NotFoundError("command \"broken\" not found"));
  EXPECT_EQ(rt_.Spawn(Req("a-001")).status().code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(rt_.Spawn(Req("a-001")).ok());
  EXPECT_EQ(rt_.Spawn(Req("b-001", "broken")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(rt_.Spawn(Req("b-001", "broken")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(rt_.IsRunning("b-001"));
  EXPECT_EQ(rt_.spawns().size(), 4u);
  EXPECT_EQ(rt_.spawned().size(), 1u);
  rt_.ClearSpawnFailures();
  EXPECT_TRUE(rt_.Spawn(Req("b-001", "broken")).ok());
}

TEST_F(FakeRuntimeTest, ExitRunsTheCallbackSynchronously) {
  ASSERT_TRUE(rt_.Spawn(Req("a-001")).ok());
  rt_.Exit("a-001", {.code = 3});
  ASSERT_EQ(exits_.size(), 1u);
  EXPECT_EQ(exits_[0].id, "a-001");
  EXPECT_EQ(exits_[0].status.code, 3);
  EXPECT_FALSE(rt_.IsRunning("a-001"));
  EXPECT_EQ(rt_.Signal("a-001", SIGTERM).code(), absl::StatusCode::kNotFound);
}

TEST_F(FakeRuntimeTest, ExitCallbackMayRespawn) {
  rt_.SetExitCallback(
      [this](const std::string& id, ExitStatus) { ASSERT_TRUE(rt_.Spawn(Req(id)).ok()); });
  ASSERT_TRUE(rt_.Spawn(Req("a-001")).ok());
  rt_.Exit("a-001", {.signal = SIGKILL});
  EXPECT_TRUE(rt_.IsRunning("a-001"));
  EXPECT_EQ(rt_.ProcessOf("a-001")->pid, 1001);
}

TEST_F(FakeRuntimeTest, SignalsAreRecorded) {
  ASSERT_TRUE(rt_.Spawn(Req("a-001")).ok());
  ASSERT_TRUE(rt_.Spawn(Req("a-002")).ok());
  ASSERT_TRUE(rt_.Signal("a-002", SIGTERM).ok());
  ASSERT_TRUE(rt_.Signal("a-002", SIGKILL).ok());
  EXPECT_THAT(rt_.signals(), ElementsAre(FakeRuntime::SignalCall{"a-002", SIGTERM},
                                         FakeRuntime::SignalCall{"a-002", SIGKILL}));
  EXPECT_THAT(rt_.SignalsFor("a-002"), ElementsAre(SIGTERM, SIGKILL));
  EXPECT_TRUE(rt_.SignalsFor("a-001").empty());
  EXPECT_TRUE(rt_.IsRunning("a-002"));  // signals are never delivered by themselves
}

TEST_F(FakeRuntimeTest, AdoptionFollowsTheAliveSet) {
  rt_.SetAlive({42, 43});
  rt_.AddAlive(ProcessId{44, 900});
  EXPECT_TRUE(rt_.Adopt("a-001", {42, 1}, "/l").ok());
  EXPECT_EQ(rt_.Adopt("a-001", {43, 1}, "/l").code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(rt_.Adopt("a-002", {44, 901}, "/l").code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(rt_.Adopt("a-002", {44, 900}, "/l").ok());
  rt_.MarkGone(43);
  EXPECT_EQ(rt_.Adopt("a-003", {43, 1}, "/l").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(rt_.adopts().size(), 5u);
  EXPECT_EQ(rt_.Watched(), 2u);
}

TEST_F(FakeRuntimeTest, ForgottenProcessesCanBeAdoptedAgainButExitedOnesCannot) {
  auto pid = rt_.Spawn(Req("a-001"));
  auto gone = rt_.Spawn(Req("a-002"));
  ASSERT_TRUE(pid.ok() && gone.ok());
  rt_.Forget("a-001");
  rt_.Exit("a-002", {});
  EXPECT_EQ(rt_.Watched(), 0u);
  EXPECT_THAT(rt_.forgotten(), ElementsAre("a-001"));
  EXPECT_TRUE(rt_.Adopt("a-001", *pid, "/l").ok());
  EXPECT_EQ(rt_.Adopt("a-002", *gone, "/l").code(), absl::StatusCode::kNotFound);
}

TEST(FakeRuntimeDeathTest, ExitOfAnUnknownInstanceAborts) {
  FakeRuntime rt;
  EXPECT_DEATH(rt.Exit("nope", {}), "not running");
}

}  // namespace
}  // namespace palm::testing
