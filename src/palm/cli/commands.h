// The verb groups of DESIGN.md section 6, registered on the CLI11 app by main.cc.
//
// Each Add*Commands() adds its subcommands to `app`; when one of them is chosen on the
// command line its parse callback stores what to run in `*action`, and Main() runs it after
// parsing (so global flags given after the verb are known by then).
// Internal to palm_cli. Thread-safety: none (the CLI is single-threaded).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "palm/cli/context.h"

namespace CLI {
class App;
}

namespace palm::cli {

using Action = std::function<absl::Status(Context&)>;

void AddDaemonCommands(CLI::App& app, Action* action);
void AddStatusCommand(CLI::App& app, Action* action);
void AddSpecCommands(CLI::App& app, Action* action);
void AddDeploymentCommands(CLI::App& app, Action* action);
void AddInstanceCommands(CLI::App& app, Action* action);
void AddHealthCommands(CLI::App& app, Action* action);
void AddEventsCommand(CLI::App& app, Action* action);
void AddTaskCommands(CLI::App& app, Action* action);
void AddFleetCommands(CLI::App& app, Action* action);
void AddRolloutCommands(CLI::App& app, Action* action);

// Adds `VERB NAME` under `parent` (NAME: the deployment's name, required); choosing it stores
// an action that runs fn(ctx, NAME). Returns the subcommand so the caller can add flags.
using DeploymentVerb = std::function<absl::Status(Context&, const std::string&)>;
CLI::App* AddDeploymentVerb(CLI::App& parent, Action* action, const std::string& verb,
                            const std::string& help, DeploymentVerb fn);

// "name@version" or the agent_ref form "org/agents/name:version"; version may be empty
// unless `need_version`. Usage error otherwise.
absl::Status SplitSpecRef(const std::string& ref, bool need_version, std::string* name,
                          std::string* version);

// GET /v1/deployments as a table (or the API document for -o json/yaml): NAME (headed
// `name_header`), SPEC, REPLICAS, READY, PHASE, then `extra_headers` filled per deployment by
// `extra`. When there is none, `empty` goes to stderr. `palm deployment list`, `palm fleet list`.
absl::Status ListDeployments(Context& ctx, const std::string& name_header,
                             std::vector<std::string> extra_headers,
                             const std::function<std::vector<std::string>(const Doc&)>& extra,
                             const std::string& empty);

// Polls GET /v1/deployments/{name} every 500 ms until ClassifyRollout(answer, baseline) says
// it is no longer waiting; `baseline` is the deployment as the change being waited for left
// it (the API's answer to it). Redraws "deployment N: ready 3/5 [###...]  phase Progressing,
// step 1/6, weight 10%" on stderr when it is a terminal. Done: prints "deployment N ready
// K/K" for the table format. Paused for a human: prints PausedMessage() and returns OK.
// Failed: fails with RolloutFailure() (exit 1, DEPLOYMENT_FAILED). After `timeout` fails
// with kDeadlineExceeded (exit 5), code HEALTH_CHECK_FAILED and WaitFailureMessage().
// `*last` holds the last answer either way (untouched when a request failed).
absl::Status WaitForDeployment(Context& ctx, const std::string& name, absl::Duration timeout,
                               const Doc& baseline, ApiResult* last);

// ---- Rollouts (rollout_cmd.cc): views of GET /v1/deployments/{name}'s status.rollout ----
// Pure functions; missing fields are tolerated (daemons without rollouts lack them).

// The revision the deployment's template is: status.current_revision, else `revision`;
// 0 when neither is known.
int64_t CurrentRevision(const Doc& deployment);
// status.rollout.phase, else status.phase when no rollout ran ("" when neither is known).
std::string RolloutPhase(const Doc& deployment);
// "phase Paused, step 1/6 (pause), weight 10%": the step only when the strategy has steps
// (status.rollout.step as the API counts it, of .steps), the weight only for canary,
// "aborted" after an abort.
std::string RolloutBrief(const Doc& deployment);
// "deployment buyer: rollout paused (phase Paused, step 1/6 (pause), weight 10%)": the line a
// rollout action prints; `what` says what happened.
std::string RolloutLine(const std::string& name, const std::string& what, const Doc& deployment);
// Whether status.rollout.phase is Pending, Progressing, Paused or RollingBack.
bool RolloutInProgress(const Doc& deployment);
// Whether status.rollout.phase is Failed or Degraded, or the rollout was aborted.
bool RolloutFailed(const Doc& deployment);

// What --wait makes of `deployment`, given `baseline`, the deployment as the change being
// waited for left it. kFailed: RolloutFailed(), or the rollout was rolled back (the template
// is back on the revision it started from) since the baseline; a rollback that ended before
// the baseline (the same rollout, already finished then) is history, not a failure.
// kPaused: a rollout that waits for a human (a pause step without duration, an Inconclusive
// analysis, a blue-green preview, or `palm deployment pause`). kWaiting: a rollout Pending,
// Progressing, RollingBack or in a timed pause, or replicas not all available and updated
// yet. kDone otherwise.
enum class RolloutWait { kWaiting, kDone, kPaused, kFailed };
RolloutWait ClassifyRollout(const Doc& deployment, const Doc& baseline);
// "deployment N: rollout paused at step 1/6 (pause): run `palm deployment promote N` to go
// on" (resume for a user pause; blue-green: the preview is ready to be promoted).
std::string PausedMessage(const std::string& name, const Doc& deployment);
// The error of a failed rollout (exit 1, code DEPLOYMENT_FAILED): "deployment N: rollout to
// revision 3 failed (phase Degraded, aborted): <status.rollout.message>", with a hint.
absl::Status RolloutFailure(const std::string& name, const Doc& deployment);

// The report of `palm rollout status`: Deployment, Strategy, Phase (with the pause reason),
// Revisions ("stable 2 -> current 3"), Step, Weight, Replicas (desired | updated | ready |
// available), the analysis (run counts, last measurement, reasons, candidate and stable
// windows) when there is one, and the message; one "Field:  value" line each.
std::string RolloutStatusText(const Doc& deployment);
// GET /v1/deployments/{name}/history as a table: REVISION ("3 (current)", "2 (stable)"),
// SPEC, CHANGE-CAUSE, CREATED (UTC to the second), OUTCOME (with outcome_message for
// Aborted, RolledBack and Failed). "" when there is no revision.
std::string HistoryTable(const Doc& history);

// Long-polls GET /v1/tasks/{id}?wait_s=N until the task is finished (TaskFinished), redrawing
// "task ID: Assigned (attempt 1/3 on x-001)" on stderr when it is a terminal. Each request
// waits at most 25 s and stays inside the HTTP client's timeout. After `timeout` fails with
// kDeadlineExceeded (exit 5), code TASK_WAIT_TIMEOUT. `*last` holds the last answer either
// way (untouched when the first request failed). A finished task returns OK whatever its
// state; see TaskOutcome.
absl::Status WaitForTask(Context& ctx, const std::string& id, absl::Duration timeout,
                         ApiResult* last);

// Whether a task (or a broadcast delivery) is in a final state: Succeeded, Failed, TimedOut
// or Cancelled.
bool TaskFinished(const Doc& task);
// OK for a Succeeded task; for Failed / TimedOut / Cancelled an error (exit 1, code
// TASK_FAILED / TASK_TIMED_OUT / TASK_CANCELLED) saying what went wrong where, with a hint.
// OK for a task that is not finished.
absl::Status TaskOutcome(const Doc& task);

// The task's (or delivery's) result as a table cell: the output when it succeeded (strings
// as is, other JSON compact), "error: ..." when it has an error, else "-". Newlines are
// shown as "\n" so a row stays one line.
std::string TaskResultCell(const Doc& task);
// A latency in milliseconds for people: "0.8ms", "12.5ms", "340ms", "1.25s"; "-" when not a
// number.
std::string FormatMillis(const Doc& ms);

// Parses the JSON value given to `flag` ("--input", or "--input-file FILE" for a file's
// content); any JSON value, key order kept. Fails with a usage error (exit 2) that says where
// the JSON is broken and how to write it (quoted for the shell, for --input).
absl::StatusOr<Doc> ParseJsonFlag(std::string_view flag, const std::string& text);

// The task part of `palm deployment get`, from the deployment's status.tasks: the queue
// ("3 queued | 1 assigned | 2 agents waiting") and a table with a row per revision and
// window (REVISION WINDOW COUNT OK FAIL TIMEOUT ERR% P50 P90 P99; WINDOW "60s", "300s",
// "total"; ERR% from error_rate, a fraction, else computed from the counts; latencies "-"
// for a window without results). Each is "" when there is nothing to show.
std::string TaskQueueLine(const Doc& tasks);
std::string TaskMetricsTable(const Doc& tasks);

// The listen address the daemon uses by default: the host:port of --endpoint when it is a
// plain http:// URL, else 127.0.0.1:7070.
std::string ListenFromEndpoint(const std::string& endpoint);

}  // namespace palm::cli
