// The real Runtime: posix_spawn (never fork), one session + process group per agent,
// exits observed through pidfds on the event loop, log files rotated at a size cap.
//
// Thread-safety: as Runtime; everything runs on `io`'s thread.
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
  uint64_t log_max_bytes = 10 * 1024 * 1024;
  int log_keep = 3;                               // rotated files kept (0 = truncate only)
  absl::Duration log_check_period = absl::Seconds(5);
  // Executable that applies rlimits then execs the agent ("palm __exec-limits ..."); used
  // only when a SpawnRequest has limits, since posix_spawn cannot set rlimits itself.
  std::string limits_shim_path;                   // "" = /proc/self/exe
};

std::unique_ptr<Runtime> NewProcessRuntime(boost::asio::io_context& io,
                                           ProcessRuntimeOptions options = {});

// Start time of `pid` (clock ticks since boot, /proc/<pid>/stat field 22), or nullopt
// when the process does not exist.
std::optional<uint64_t> ProcStartTime(int pid);

// Entry point of the hidden `palm __exec-limits` verb:
//   palm __exec-limits [--as MiB] [--nproc N] [--nofile N] -- PROGRAM ARGS...
// Sets the limits (soft and hard) and execvp()s PROGRAM; returns 127 if that fails
// (with the reason on stderr, i.e. the instance log).
int RunLimitsShim(int argc, char** argv);

}  // namespace palm::runtime
