#include "palm/cli/health_view.h"

#include "gtest/gtest.h"

namespace palm::cli {
namespace {

TEST(FormatPercent, RoundsWithoutHidingAFewOrClaimingAll) {
  EXPECT_EQ(FormatPercent(90), "90%");
  EXPECT_EQ(FormatPercent(0), "0%");
  EXPECT_EQ(FormatPercent(100), "100%");
  EXPECT_EQ(FormatPercent(33.333), "33%");
  EXPECT_EQ(FormatPercent(66.7), "67%");
  EXPECT_EQ(FormatPercent(0.4), "<1%");    // 1 of 300 is not nothing
  EXPECT_EQ(FormatPercent(99.7), ">99%");  // 299 of 300 is not everything
  EXPECT_EQ(FormatPercent(-1), "-");
}

TEST(CountWithPercent, UsesTheApiShareElseComputesIt) {
  EXPECT_EQ(CountWithPercent(Doc(18), Doc(90.0), Doc(20)), "18 (90%)");
  EXPECT_EQ(CountWithPercent(Doc(1), Doc(), Doc(3)), "1 (33%)");
  EXPECT_EQ(CountWithPercent(Doc(0), Doc(), Doc(0)), "0");  // no instances: no share
  EXPECT_EQ(CountWithPercent(Doc(2), Doc(), Doc()), "2");
  EXPECT_EQ(CountWithPercent(Doc(), Doc(50), Doc(4)), "-");
}

TEST(FormatNumber, IntegersPlainOthersShort) {
  EXPECT_EQ(FormatNumber(1520), "1520");
  EXPECT_EQ(FormatNumber(230.5), "230.5");
  EXPECT_EQ(FormatNumber(1.0 / 3), "0.33");
  EXPECT_EQ(FormatNumber(76, true), "76.0");
  EXPECT_EQ(FormatNumber(11.5, true), "11.5");
  EXPECT_EQ(FormatNumber(2.25, true), "2.25");
  EXPECT_EQ(FormatNumber(-0.001), "0");
}

TEST(MetricsSummary, OneCompactLineInApiOrder) {
  Doc m = Doc::parse(R"({"orders": {"sum": 1520, "mean": 76, "count": 20},
                         "pnl": {"sum": 230.5, "mean": 11.556, "count": 20}})");
  EXPECT_EQ(MetricsSummary(m), "orders sum 1520 mean 76.0 · pnl sum 230.5 mean 11.56");
  EXPECT_EQ(MetricsSummary(Doc::object()), "");
  EXPECT_EQ(MetricsSummary(Doc()), "");
}

TEST(EventRow, ObjectAsTypeSlashNameAndTimeToTheSecond) {
  Doc e = Doc::parse(R"({"seq": 42, "time": "2025-03-01T12:00:01.123456Z", "severity": "warning",
      "kind": "ProbeFailed", "object": {"type": "instance", "name": "echo-001"},
      "tenant": "default", "deployment": "echo", "message": "liveness: HTTP 503",
      "correlation_id": null, "actor": {"kind": "system", "id": "supervisor"}})");
  EXPECT_EQ(EventRow(e),
            (std::vector<std::string>{"42", "2025-03-01T12:00:01Z", "warning", "ProbeFailed",
                                      "instance/echo-001", "liveness: HTTP 503"}));
  EXPECT_EQ(EventObject(Doc::object()), "-");
  EXPECT_EQ(EventTime(Doc::parse(R"({"time": "yesterday"})")), "yesterday");
}

TEST(StreamRow, PadsToFixedWidthsAndLetsLongCellsPush) {
  EXPECT_EQ(StreamRow({"1", "x", "msg"}, {3, 2}), "1     x    msg\n");
  EXPECT_EQ(StreamRow({"12345", "x", "msg"}, {3, 2}), "12345   x    msg\n");
  EXPECT_EQ(StreamRow({"1", ""}, {3}), "1\n");
}

Doc Deployment(const char* json) { return Doc::parse(json); }

TEST(ReadProgress, DoneOnlyWhenAvailableAndUpdatedMatchDesired) {
  auto p = ReadProgress(Deployment(R"({"replicas": 5, "status": {"phase": "Progressing",
      "replicas": {"desired": 5, "ready": 5, "available": 3, "updated": 5}}})"));
  EXPECT_EQ(p.desired, 5);
  EXPECT_EQ(p.ready, 3);  // available, not merely ready
  EXPECT_FALSE(p.done);
  EXPECT_EQ(p.phase, "Progressing");
  p = ReadProgress(Deployment(R"({"status": {"replicas":
      {"desired": 5, "available": 5, "updated": 4}}})"));
  EXPECT_FALSE(p.done);  // a rollout still replacing one
  p = ReadProgress(Deployment(R"({"status": {"replicas":
      {"desired": 1, "available": 3, "updated": 3}}})"));
  EXPECT_FALSE(p.done);  // scaling down: two still to stop
  // An older daemon: no available / updated fields.
  p = ReadProgress(Deployment(R"({"replicas": 2, "status": {"replicas": {"ready": 2}}})"));
  EXPECT_EQ(p.desired, 2);
  EXPECT_TRUE(p.done);
  p = ReadProgress(Deployment(R"({"replicas": 0, "status": {"replicas": {"desired": 0}}})"));
  EXPECT_TRUE(p.done);
}

TEST(ProgressLine, BarFillsWithReadyShare) {
  RolloutProgress p;
  p.desired = 5;
  p.ready = 3;
  EXPECT_EQ(ProgressLine(p), "ready 3/5 [############........]");
  p.ready = 0;
  EXPECT_EQ(ProgressLine(p), "ready 0/5 [....................]");
  p.ready = 7;  // more than desired (scaling down) never overflows the bar
  EXPECT_EQ(ProgressLine(p), "ready 7/5 [####################]");
  p.desired = 0;
  p.ready = 0;
  EXPECT_EQ(ProgressLine(p), "ready 0/0 [####################]");
}

TEST(WaitFailureMessage, NamesTheFailingProbe) {
  Doc d = Deployment(R"({"name": "echo", "status": {"phase": "Progressing",
      "replicas": {"desired": 5, "ready": 3, "available": 3, "updated": 5},
      "last_probe_failure": {"instance": "echo-004", "probe": "readiness",
                             "message": "HTTP 503", "at": "2025-03-01T12:00:01Z"},
      "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                      "message": "3 of 5 available"}]}})");
  EXPECT_EQ(WaitFailureMessage("echo", d, absl::Seconds(30)),
            "HEALTH_CHECK_FAILED: deployment echo: 3 of 5 ready after 30s: readiness probe "
            "failed on echo-004: HTTP 503");
}

TEST(WaitFailureMessage, FallsBackToTheAvailableConditionThenThePhase) {
  Doc d = Deployment(R"({"status": {"phase": "Progressing",
      "replicas": {"desired": 2, "available": 0, "updated": 1}, "last_probe_failure": null,
      "conditions": [{"type": "Progressing", "status": true, "message": "rolling"},
                     {"type": "Available", "status": true, "message": "stale"},
                     {"type": "Available", "status": "False", "message": "0 of 2 available"}]}})");
  EXPECT_EQ(WaitFailureMessage("web", d, absl::Minutes(2)),
            "HEALTH_CHECK_FAILED: deployment web: 0 of 2 ready (1 updated) after 2m: 0 of 2 "
            "available");
  Doc old = Deployment(R"({"replicas": 3, "status": {"phase": "Progressing",
      "replicas": {"ready": 1}}})");
  EXPECT_EQ(WaitFailureMessage("old", old, absl::Milliseconds(1500)),
            "HEALTH_CHECK_FAILED: deployment old: 1 of 3 ready after 1.5s (phase Progressing)");
}

}  // namespace
}  // namespace palm::cli
