// Runtime: starts, signals and watches agent processes. The only module that touches
// processes; the reconciler talks to this interface and tests use FakeRuntime.
//
// Thread-safety: all methods and callbacks run on the daemon's event loop thread
// (the io_context the implementation was built with); not safe to call from elsewhere.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace palm::runtime {

// What an instance may use. With cgroups (see process_runtime.h) memory_mb, max_procs and
// cpu limit the instance's own cgroup; without, memory_mb and max_procs fall back to
// RLIMIT_AS and RLIMIT_NPROC (which count address space, and every process of the uid) and
// cpu is not enforced. max_open_files is always RLIMIT_NOFILE.
struct Limits {
  std::optional<int64_t> memory_mb = std::nullopt;       // MiB
  std::optional<int64_t> max_procs = std::nullopt;       // processes (and threads)
  std::optional<int64_t> max_open_files = std::nullopt;  // RLIMIT_NOFILE
  std::optional<double> cpu = std::nullopt;              // cores (cgroups only)
};

// What enforces an instance's limits.
enum class LimitsMechanism { kNone, kRlimit, kCgroupV1, kCgroupV2 };

inline std::string_view ToString(LimitsMechanism m) {
  switch (m) {
    case LimitsMechanism::kRlimit:
      return "rlimit";
    case LimitsMechanism::kCgroupV1:
      return "cgroup v1";
    case LimitsMechanism::kCgroupV2:
      return "cgroup v2";
    case LimitsMechanism::kNone:
      break;
  }
  return "none";
}

struct SpawnRequest {
  std::string instance_id;
  std::vector<std::string> argv;           // argv[0] searched on PATH when it has no '/'
  std::string workdir;                     // "" = inherit
  std::map<std::string, std::string> env;  // the complete environment of the child
  std::string log_path;                    // stdout+stderr appended here (created 0640)
  Limits limits;
};

// Identity of a running process: pid plus its start time (clock ticks since boot, field 22
// of /proc/<pid>/stat) and the boot it was started in (/proc/sys/kernel/random/boot_id), so
// neither a recycled pid nor a pid and start time from before a reboot is mistaken for our
// agent. An empty boot_id (recorded before palm kept it) is not compared.
struct ProcessId {
  int pid = 0;
  uint64_t start_time = 0;
  std::string boot_id = std::string();
};

// What Spawn started: the process, and what enforces which of its limits (`enforced` holds
// only the limits actually applied: cpu is unset under rlimits, for example).
struct Spawned : ProcessId {
  LimitsMechanism enforced_by = LimitsMechanism::kNone;
  Limits enforced;
};

// Resource figures of a running instance, from its cgroup.
struct Usage {
  uint64_t cpu_ns = 0;        // CPU time used by all its processes so far
  uint64_t memory_bytes = 0;  // memory charged to it now
  uint64_t procs = 0;         // tasks (processes and threads) now
};

// (The `= std::nullopt` initializers let `ExitStatus{.code = 3}` compile without
// -Wmissing-field-initializers warnings.)
struct ExitStatus {
  std::optional<int> code = std::nullopt;    // normal exit
  std::optional<int> signal = std::nullopt;  // terminated by signal
  // Neither: exit observed for an adopted (not our child) process; the code is unknowable.
};

// A live process found by its environment (see Runtime::FindByEnvKey).
struct FoundProcess {
  ProcessId pid;
  std::map<std::string, std::string> env;
};

class Runtime {
 public:
  using ExitCallback = std::function<void(const std::string& instance_id, ExitStatus)>;
  virtual ~Runtime() = default;

  // Sets the callback invoked (on the loop) once per watched process when it exits.
  virtual void SetExitCallback(ExitCallback cb) = 0;

  // Starts the process in a new process group with stdin=/dev/null and
  // stdout/stderr appended to log_path, and watches it. Fails (nothing left running) with
  // kNotFound when the command does not exist, kPermissionDenied when it is not executable,
  // kFailedPrecondition for a bad workdir, kInternal otherwise; the message says which.
  // An instance is its whole process tree: when the process exits, what is left of its
  // process group (and of its cgroup, when it has one) is killed, and the exit is reported
  // once they are gone.
  virtual absl::StatusOr<Spawned> Spawn(const SpawnRequest& req) = 0;

  // Watches a process started by an earlier daemon. kNotFound when the pid is gone or now
  // belongs to another process (start time or boot id differs); then nothing is watched.
  // `log_path` is the instance's log, rotated like a spawned one.
  virtual absl::Status Adopt(const std::string& instance_id, const ProcessId& pid,
                             const std::string& log_path) = 0;

  // Sends `sig` to the instance's process group; SIGKILL also kills every process in its
  // cgroup (what left the group). kNotFound when not watched.
  virtual absl::Status Signal(const std::string& instance_id, int sig) = 0;

  // Stops watching without signalling (the daemon is exiting and leaves agents running).
  virtual void Forget(const std::string& instance_id) = 0;

  // Live processes (not zombies) whose environment has `key`, with their environment:
  // how a daemon that died between starting processes and recording their pids finds
  // them again. Reads /proc; processes it may not read are skipped. Empty by default.
  virtual std::vector<FoundProcess> FindByEnvKey(const std::string& key) { return {}; }

  // CPU and memory of a watched instance, from its cgroup; nullopt when it is not watched
  // or has no cgroup (rlimits only). A few small reads of kernel files.
  virtual std::optional<Usage> UsageOf(const std::string& instance_id) { return std::nullopt; }

  // Number of processes watched now.
  virtual size_t Watched() const = 0;
};

}  // namespace palm::runtime
