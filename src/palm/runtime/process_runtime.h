// The real Runtime: posix_spawn (never fork), one process group per agent,
// exits observed through pidfds on the event loop, each agent's output piped to the daemon's
// one log service process, which writes the log files and rotates them at a size cap
// (log_shim.h).
//
// Cgroups: when the daemon can create cgroups (see cgroup.h), each instance runs in its own
// group <hierarchy>/<daemon's cgroup>/<cgroup_parent>/<instance> that holds its memory_mb
// (memory.max / memory.limit_in_bytes), max_procs (pids.max) and cpu (cpu.max /
// cpu.cfs_quota_us) limits; the limits shim joins the group before exec. Without cgroups
// memory_mb and max_procs become RLIMIT_AS and RLIMIT_NPROC. Spawn reports which.
//
// An instance is its process tree. When its process exits, the rest of its process group
// gets SIGKILL before the leader is reaped (our unreaped child keeps its pid, so its pgid
// cannot have been reused by anyone else), and with a cgroup every process in the group
// is killed (freezer or cgroup.kill: race-free, catches setsid'd descendants) and the exit
// is reported only once the cgroup is empty (bounded: after 5 s it is reported anyway), so a
// restarted instance never finds its port held by its own orphan. The cgroup is removed
// then, or retried every second while busy. An adopted process is not our child: its pid
// may be reaped (by init) before we look, so its group is killed after the fact; a pgid
// stays allocated while any member lives, so this reaches a stranger only if every member
// was gone and the number was handed out again (pid_max wrap) in between; with a cgroup
// only the cgroup is killed, which has no such window.
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

enum class CgroupUse { kOff, kLimited, kAll };

struct ProcessRuntimeOptions {
  // Logs are rotated to <log>.1 (older ones shifted to .2 ...) when they would pass this,
  // by the daemon's log service ("palm __log-service", see log_shim.h), which holds the cap
  // exactly. 0 = never rotate: the agent then appends to the log itself, without the service.
  uint64_t log_max_bytes = 10 * 1024 * 1024;
  int log_keep = 3;  // rotated files kept (0 = truncate only)
  // The log service's executable, run as "<path> __log-service"; "" = readlink(/proc/self/exe).
  std::string log_shim_path;
  // Only for an agent writing its log directly (the service could not start or was behind,
  // or it was adopted from a palm without a log writer): how often its size is checked; it
  // is then copy-truncated off the event loop. <= 0 = never.
  absl::Duration log_check_period = absl::Seconds(5);
  // Executable that joins cgroups and applies rlimits, then execs the agent ("palm
  // __exec-limits ..."); used when a SpawnRequest has limits or cgroups are in use, since
  // posix_spawn can do neither itself.
  std::string limits_shim_path;  // "" = readlink(/proc/self/exe)
  // Which instances get a cgroup of their own (when the daemon can create cgroups):
  // kLimited (the default) those whose spec sets resources.memory_mb, max_procs or cpu;
  // kAll every instance, which also catches the setsid'd descendants of agents without
  // limits, at the price of the shim's exec and the cgroup writes on every spawn (the spawn
  // benchmark in docs/performance.md); kOff none: limits by rlimits. Environment
  // PALM_CGROUPS=off|limited|all overrides it.
  CgroupUse cgroups = CgroupUse::kLimited;
  // Parent of the instances' groups below the daemon's own cgroup ("/x" = below the root).
  // One daemon per parent: a group that exists at Spawn is taken as an earlier run's and its
  // processes are killed. Environment PALM_CGROUP_PARENT overrides it.
  std::string cgroup_parent = "palm";
  // Also run exec probes (RunExecProbe without options) in transient cgroups of this
  // runtime; see exec_probe.h.
  bool exec_probes_use_cgroups = true;
  // The soft RLIMIT_NOFILE an agent without resources.max_open_files gets (set with
  // prlimit(2) right after the spawn; 0 = the daemon's own). The daemon raises its own soft
  // limit for its connections; agents keep the one they would have had without it, so code
  // that still uses select() (descriptors below 1024) keeps working.
  uint64_t child_nofile_soft = 0;
  // This boot's id; "" = /proc/sys/kernel/random/boot_id. Tests inject another.
  std::string boot_id;
};

std::unique_ptr<Runtime> NewProcessRuntime(boost::asio::io_context& io,
                                           ProcessRuntimeOptions options = {});

// Start time of `pid` (clock ticks since boot, /proc/<pid>/stat field 22), or nullopt
// when the process does not exist.
std::optional<uint64_t> ProcStartTime(int pid);

// This boot's id (/proc/sys/kernel/random/boot_id, trimmed), or "" when unreadable.
std::string ReadBootId();

// Entry point of the hidden `palm __exec-limits` verb (main() dispatches argv[1] ==
// "__exec-limits" here; see limits_shim.h). argv[0] is ignored and a leading
// "__exec-limits" after it is skipped, so main may pass (argc, argv) or (argc-1, argv+1):
//   palm __exec-limits [--cgroup DIR]... [--as MiB] [--nproc N] [--nofile N] [--argv0 NAME]
//                      -- PROGRAM ARGS...
// Joins each cgroup DIR (writes its pid to DIR/cgroup.procs), sets the limits (soft and
// hard) and execvp()s PROGRAM with argv[0] = NAME (default PROGRAM); returns 127 if any
// step fails (with the reason on stderr, i.e. the instance log).
int RunLimitsShim(int argc, char** argv);

}  // namespace palm::runtime
