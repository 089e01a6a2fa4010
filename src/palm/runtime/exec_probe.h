// Exec probes: runs a short-lived command for a health check and reports whether it exited 0.
// Lives in runtime/ because only runtime/ spawns or signals processes.
//
// The command runs with posix_spawn (never fork) in a new process group, stdin /dev/null,
// stdout and stderr on one pipe of which the first 200 bytes are kept for the message (the
// rest is read and dropped so a chatty probe never blocks). The exit is observed through a
// pidfd on the loop; nothing blocks and no thread is used. On timeout the whole process group
// gets SIGKILL and the result is "timed out after 1s (killed)" once the child is reaped.
//
// Thread-safety: call on `io`'s thread; `done` runs there, exactly once, never inside
// RunExecProbe itself (also for spawn failures). Requirement as ProcessRuntime: the daemon must
// not ignore SIGCHLD. If `io` is destroyed with a probe in flight, the probe's process group is
// killed and `done` is not called.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"

namespace palm::runtime {

struct ExecResult {
  bool ok = false;       // exited with code 0 within the timeout
  std::string message;   // "exit code 1: <first output>", "timed out after 1s (killed)", ...
  absl::Duration latency;  // from spawn to reap (or to the spawn failure)
};

// Runs `argv` (argv[0] searched on env's PATH, else the daemon's PATH, when it has no '/')
// with exactly `env` as its environment, in `workdir` ("" = the daemon's cwd).
// Failures are results, never exceptions: "command not found: ...", "not executable: ...",
// "exit code N[: output]", "killed by signal SIGSEGV[: output]", "timed out after Ns (killed)".
void RunExecProbe(boost::asio::io_context& io, std::vector<std::string> argv,
                  std::map<std::string, std::string> env, std::string workdir,
                  absl::Duration timeout, std::function<void(ExecResult)> done);

}  // namespace palm::runtime
