// The `palm` command line: global flags (DESIGN.md section 2) and the verbs of section 6
// that exist so far. Verbs talk to the daemon only over HTTP (except `daemon start
// --foreground`, which runs it).
// Thread-safety: single-threaded; call once per process.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "palm/cli/commands.h"
#include "palm/cli/context.h"

namespace CLI {
class App;
}

namespace palm::cli {

// Builds the app. Parsing fills `*globals` (flags and PALM_* environment variables) and
// stores the chosen verb in `*action`.
std::unique_ptr<CLI::App> BuildApp(GlobalOptions* globals, Action* action);

// Parses `args` (without the program name) with a fresh app. Returns the exit code the CLI
// would use for a usage error or --help (0 for help, 2 for errors, printing to stderr), or
// -1 when parsing succeeded and the action should run.
int ParseArgs(const std::vector<std::string>& args, GlobalOptions* globals, Action* action);

// Runs the command line and returns the process exit code (DESIGN.md section 2).
int Main(int argc, char** argv);

}  // namespace palm::cli
