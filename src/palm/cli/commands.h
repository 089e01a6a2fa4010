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

// "name@version" or the agent_ref form "org/agents/name:version"; version may be empty
// unless `need_version`. Usage error otherwise.
absl::Status SplitSpecRef(const std::string& ref, bool need_version, std::string* name,
                          std::string* version);

// Polls GET /v1/deployments/{name} until its desired replicas are all ready, current and
// updated, showing "ready 3/5" on a terminal. Fails with kDeadlineExceeded (exit 5) after
// `timeout`. On success `*last` holds the final answer.
absl::Status WaitForDeployment(Context& ctx, const std::string& name, absl::Duration timeout,
                               ApiResult* last);

// The listen address the daemon uses by default: the host:port of --endpoint when it is a
// plain http:// URL, else 127.0.0.1:7070.
std::string ListenFromEndpoint(const std::string& endpoint);

}  // namespace palm::cli
