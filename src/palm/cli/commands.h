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

// Polls GET /v1/deployments/{name} until status.replicas.available and .updated both equal
// the desired count (see ReadProgress), redrawing "deployment N: ready 3/5 [###...]" on
// stderr when it is a terminal. After `timeout` fails with kDeadlineExceeded (exit 5), code
// HEALTH_CHECK_FAILED and WaitFailureMessage(). `*last` holds the last answer either way
// (untouched when a request failed).
absl::Status WaitForDeployment(Context& ctx, const std::string& name, absl::Duration timeout,
                               ApiResult* last);

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
