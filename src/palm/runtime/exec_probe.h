// Exec probes: runs a short-lived command for a health check and reports whether it exited 0.
// Lives in runtime/ because only runtime/ spawns or signals processes.
//
// The command runs with posix_spawn (never fork) in a new process group, stdin /dev/null,
// stdout and stderr on one pipe of which the first 200 bytes are kept for the message (the
// rest is read and dropped so a chatty probe never blocks). The exit is observed through a
// pidfd on the loop; nothing blocks and no thread is used: the pipe is non-blocking, so what
// a probe left running with the pipe open (`setsid sleep 600 &`) cannot stall the loop.
// On timeout the whole process group gets SIGKILL and the result is "timed out after 1s
// (killed)" once the child is reaped. When the probe exits, what is left of its process group
// is killed too.
//
// With cgroups (ExecProbeOptions), each run gets a transient cgroup of its own below the
// runtime's parent (not the instance's: killing the instance's group would kill the agent,
// and a probe's leftovers must be killable without it), joined by the limits shim before
// exec; after the probe exits everything in that group is killed (which catches children
// that called setsid, unlike the process group) and the group is removed, retried from a
// timer while its killed members are still exiting. Without cgroups a setsid'd child
// escapes the process-group kill and keeps running (it no longer blocks anything).
//
// Thread-safety: call on `io`'s thread; `done` runs there, exactly once, never inside
// RunExecProbe itself (also for spawn failures). Requirement as ProcessRuntime: the daemon must
// not ignore SIGCHLD. If `io` is destroyed with a probe in flight, the probe's process group
// (and cgroup) is killed and `done` is not called. SetDefaultExecProbeOptions may be called
// from any thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"

namespace palm::runtime {

class Cgroups;

struct ExecProbeOptions {
  std::shared_ptr<const Cgroups> cgroups;  // null or unavailable: no cgroup
  std::string shim_path;                   // `palm __exec-limits`; required with cgroups
};

// The options of RunExecProbe calls that give none. A ProcessRuntime installs its cgroups
// here (ProcessRuntimeOptions::exec_probes_use_cgroups) and clears them when destroyed, so
// a daemon's probes run like its agents; the default is no cgroup.
void SetDefaultExecProbeOptions(ExecProbeOptions options);
ExecProbeOptions DefaultExecProbeOptions();

struct ExecResult {
  bool ok = false;       // exited with code 0 within the timeout
  std::string message;   // "exit code 1: <first output>", "timed out after 1s (killed)", ...
  absl::Duration latency;  // from spawn to reap (or to the spawn failure)
};

// Runs `argv` (argv[0] searched on env's PATH, else the daemon's PATH, when it has no '/')
// with exactly `env` as its environment, in `workdir` ("" = the daemon's cwd).
// Failures are results, never exceptions: "command not found: ...", "not executable: ...",
// "exit code N[: output]", "killed by signal SIGSEGV[: output]", "timed out after Ns (killed)".
void RunExecProbe(boost::asio::io_context& io, const ExecProbeOptions& options,
                  std::vector<std::string> argv, std::map<std::string, std::string> env,
                  std::string workdir, absl::Duration timeout,
                  std::function<void(ExecResult)> done);
// The same with DefaultExecProbeOptions().
void RunExecProbe(boost::asio::io_context& io, std::vector<std::string> argv,
                  std::map<std::string, std::string> env, std::string workdir,
                  absl::Duration timeout, std::function<void(ExecResult)> done);

}  // namespace palm::runtime
