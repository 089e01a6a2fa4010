#include "palm/model/objects.h"

#include <csignal>

#include "gtest/gtest.h"

namespace palm::model {
namespace {

TEST(ObjectsTest, InstanceStatesRoundTripWithDesignSpelling) {
  const std::pair<InstanceState, std::string_view> cases[] = {
      {InstanceState::kPending, "Pending"},   {InstanceState::kStarting, "Starting"},
      {InstanceState::kRunning, "Running"},   {InstanceState::kDraining, "Draining"},
      {InstanceState::kStopping, "Stopping"}, {InstanceState::kStopped, "Stopped"},
      {InstanceState::kFailed, "Failed"},     {InstanceState::kBackOff, "BackOff"},
      {InstanceState::kKilled, "Killed"}};
  for (const auto& [state, name] : cases) {
    EXPECT_EQ(ToString(state), name);
    InstanceState parsed = InstanceState::kPending;
    ASSERT_TRUE(ParseInstanceState(name, &parsed)) << name;
    EXPECT_EQ(parsed, state);
  }
  InstanceState s;
  EXPECT_FALSE(ParseInstanceState("running", &s));  // exact spelling only
  EXPECT_FALSE(ParseInstanceState("", &s));
}

TEST(ObjectsTest, HealthAndRestartModes) {
  HealthStatus h;
  ASSERT_TRUE(ParseHealthStatus("Unhealthy", &h));
  EXPECT_EQ(h, HealthStatus::kUnhealthy);
  EXPECT_EQ(ToString(HealthStatus::kDegraded), "Degraded");
  EXPECT_FALSE(ParseHealthStatus("healthy", &h));
  RestartMode m;
  ASSERT_TRUE(ParseRestartMode("on_failure", &m));
  EXPECT_EQ(m, RestartMode::kOnFailure);
  EXPECT_EQ(ToString(RestartMode::kNever), "never");
  EXPECT_FALSE(ParseRestartMode("OnFailure", &m));
}

TEST(ObjectsTest, Signals) {
  EXPECT_EQ(SignalName(SIGKILL), "SIGKILL");
  EXPECT_EQ(SignalName(SIGTERM), "SIGTERM");
  EXPECT_EQ(SignalName(SIGSEGV), "SIGSEGV");
  EXPECT_EQ(SignalName(40), "SIG40");
  int s = 0;
  ASSERT_TRUE(ParseSignal("SIGTERM", &s));
  EXPECT_EQ(s, SIGTERM);
  ASSERT_TRUE(ParseSignal("term", &s));
  EXPECT_EQ(s, SIGTERM);
  ASSERT_TRUE(ParseSignal("9", &s));
  EXPECT_EQ(s, 9);
  ASSERT_TRUE(ParseSignal("SIGWINCH", &s));
  EXPECT_EQ(s, SIGWINCH);
  EXPECT_FALSE(ParseSignal("SIG", &s));
  EXPECT_FALSE(ParseSignal("SIGFOO", &s));
  EXPECT_FALSE(ParseSignal("0", &s));
  EXPECT_FALSE(ParseSignal("65", &s));
  EXPECT_FALSE(ParseSignal("9x", &s));
}

}  // namespace
}  // namespace palm::model
