// Rendering of the health pieces of the API for people: percentages of the fleet health
// summary, agent metrics lines, event rows, and the `--wait` progress and failure message.
//
// Pure functions over API documents (missing fields are tolerated: older daemons lack
// some); the verbs in health_cmd.cc, events_cmd.cc, status_cmd.cc and deployment_cmd.cc
// decide where the text goes. Thread-safe: no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "palm/cli/basics.h"

namespace palm::cli {

// A percentage as a whole number: "90%". Never rounds a non-zero share to "0%" or a
// partial one to "100%": those print "<1%" and ">99%". Negative or NaN prints "-".
std::string FormatPercent(double pct);

// "18 (90%)": `count` with its share. The share is `pct` (0..100) when it is a number,
// else count / total; just the count when neither is known or total is 0.
std::string CountWithPercent(const Doc& count, const Doc& pct, const Doc& total);

// A metric value: integers without decimals ("1520"), others with up to two ("230.5",
// "0.33"); with `mean_style` at least one decimal ("76.0").
std::string FormatNumber(double v, bool mean_style = false);

// The aggregated agent metrics of a deployment ({name: {sum, mean, count}}) as
// "orders sum 1520 mean 76.0 · pnl sum 230.5 mean 11.5", in the API's key order.
// "" when `metrics` is not a non-empty object.
std::string MetricsSummary(const Doc& metrics);

// An event's object as "type/name" ("instance/echo-001"); "-" when missing.
std::string EventObject(const Doc& event);
// An event's time as RFC 3339 to the second ("2025-03-01T12:00:01Z"); as given when it
// does not parse; "-" when missing.
std::string EventTime(const Doc& event);
// The columns of `palm events`: SEQ TIME SEVERITY KIND OBJECT MESSAGE.
std::vector<std::string> EventHeaders();
std::vector<std::string> EventRow(const Doc& event);
// One line of a streamed table: the cells padded to at least `widths` (plus three
// spaces between columns), trailing blanks trimmed, with a newline. Cells wider than
// their column push the rest to the right rather than being cut.
std::string StreamRow(const std::vector<std::string>& cells, const std::vector<size_t>& widths);

// How far a deployment (GET /v1/deployments/{name}) is towards its desired state.
struct RolloutProgress {
  int64_t desired = 0;
  int64_t ready = 0;    // status.replicas.available, else .ready (older daemons)
  int64_t updated = 0;  // status.replicas.updated, else desired
  std::string phase;    // status.phase, "-" when missing
  bool done = false;    // ready == desired and updated == desired
};
RolloutProgress ReadProgress(const Doc& deployment);

// "ready 3/5 [############........]": the terminal progress display of --wait.
std::string ProgressLine(const RolloutProgress& p);

// Why a deployment is not available yet, from status.last_probe_failure
// ("readiness probe failed on echo-004: HTTP 503"), else the Available condition's message
// when it is not True, else "" .
std::string NotReadyReason(const Doc& deployment);

// The message of a timed-out --wait (the CLI prints it after "error: "):
// "HEALTH_CHECK_FAILED: deployment echo: 3 of 5 ready after 30s: readiness probe failed on
// echo-004: HTTP 503"; without a reason "... after 30s (phase Progressing)".
std::string WaitFailureMessage(const std::string& name, const Doc& deployment,
                               absl::Duration waited);

}  // namespace palm::cli
