// The verb groups of DESIGN.md section 6, registered on the CLI11 app by main.cc.
//
// Each Add*Commands() adds its subcommands to `app`; when one of them is chosen on the
// command line its parse callback stores what to run in `*action`, and Main() runs it after
// parsing (so global flags given after the verb are known by then).
// Internal to palm_cli. Thread-safety: none (the CLI is single-threaded).
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
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

// "name@version" or the agent_ref form "org/agents/name:version"; version may be empty
// unless `need_version`. Usage error otherwise.
absl::Status SplitSpecRef(const std::string& ref, bool need_version, std::string* name,
                          std::string* version);

// Polls GET /v1/deployments/{name} until status.replicas.available and .updated both equal
// the desired count (see ReadProgress), redrawing "deployment N: ready 3/5 [###...]" on
// stderr when it is a terminal. After `timeout` fails with kDeadlineExceeded (exit 5), code
// HEALTH_CHECK_FAILED and WaitFailureMessage(). `*last` holds the last answer either way
// (untouched when a request failed).
absl::Status WaitForDeployment(Context& ctx, const std::string& name, absl::Duration timeout,
                               ApiResult* last);

// The listen address the daemon uses by default: the host:port of --endpoint when it is a
// plain http:// URL, else 127.0.0.1:7070.
std::string ListenFromEndpoint(const std::string& endpoint);

}  // namespace palm::cli
