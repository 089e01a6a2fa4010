// The real Runtime: posix_spawn (never fork), one process group per agent,
// exits observed through pidfds on the event loop, log files rotated at a size cap.
//
// Thread-safety: as Runtime; everything runs on `io`'s thread.
//
// Requirements on the daemon: it must not ignore SIGCHLD (children would be auto-reaped and
// their exit codes lost: they are then reported as ExitStatus{}), and the runtime must be
// destroyed before `io`. Destroying the runtime stops watching but leaves agents running
// (like Forget); pending waits are cancelled and their handlers do nothing.
//
// Beyond the Runtime contract: Spawn and Adopt fail with kAlreadyExists when the instance
// already has a watched process, and Spawn with kInvalidArgument for an empty instance id,
// argv or log_path, an env name containing '=', or a limit <= 0. The exit callback runs
// after the instance is unwatched, so it may Spawn the same instance id again.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "palm/runtime/runtime.h"

namespace palm::runtime {

struct ProcessRuntimeOptions {
  // Logs are copy-truncated to <log>.1 (older ones shifted to .2 ...) when they pass this.
  uint64_t log_max_bytes = 10 * 1024 * 1024;           // 0 = never rotate
  int log_keep = 3;                                    // rotated files kept (0 = truncate only)
  absl::Duration log_check_period = absl::Seconds(5);  // <= 0 = never rotate
  // Executable that applies rlimits then execs the agent ("palm __exec-limits ..."); used
  // only when a SpawnRequest has limits, since posix_spawn cannot set rlimits itself.
  std::string limits_shim_path;  // "" = readlink(/proc/self/exe)
};

std::unique_ptr<Runtime> NewProcessRuntime(boost::asio::io_context& io,
                                           ProcessRuntimeOptions options = {});

// Start time of `pid` (clock ticks since boot, /proc/<pid>/stat field 22), or nullopt
// when the process does not exist.
std::optional<uint64_t> ProcStartTime(int pid);

// Entry point of the hidden `palm __exec-limits` verb (main() dispatches argv[1] ==
// "__exec-limits" here; see limits_shim.h). argv[0] is ignored and a leading
// "__exec-limits" after it is skipped, so main may pass (argc, argv) or (argc-1, argv+1):
//   palm __exec-limits [--as MiB] [--nproc N] [--nofile N] [--argv0 NAME] -- PROGRAM ARGS...
// Sets the limits (soft and hard) and execvp()s PROGRAM with argv[0] = NAME (default
// PROGRAM); returns 127 if that fails (with the reason on stderr, i.e. the instance log).
int RunLimitsShim(int argc, char** argv);

}  // namespace palm::runtime
