// Cgroups: one control group per agent instance (and per exec probe run), so that limits
// limit the instance itself and "kill the instance" reaches every process it started, even
// ones that left its process group or session.
//
// Detection (Cgroups::Detect): cgroup v2 when the unified hierarchy of the daemon's own
// cgroup offers the memory, pids and cpu controllers and palm can enable them below it;
// else cgroup v1 when the memory, pids, cpu and freezer hierarchies are mounted and palm can
// create its parent directory in each (cpuacct too when mounted, for CPU usage); else none
// (the caller falls back to rlimits). Groups live at
//   <hierarchy mount>/<the daemon's own cgroup in it>/<parent>/<name>
// (an absolute `parent`, "/x/y", starts at the hierarchy's root instead), so a daemon that
// is itself confined (a systemd unit, a container) nests palm's groups inside its own.
//
// Every call is a few reads and writes of cgroupfs files (kernel memory, no disk): none
// blocks, none waits for a process to exit. Kill() signals and returns; callers poll
// Populated() from a timer and Remove() once it is false.
//
// Thread-safety: the object is immutable after Detect; methods are safe from any thread
// but two calls about the same group must not race (the runtime calls them from its loop).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "palm/runtime/runtime.h"

namespace palm::runtime {

enum class CgroupVersion { kNone, kV1, kV2 };

// "none", "cgroup v1", "cgroup v2".
std::string_view ToString(CgroupVersion v);

struct CgroupOptions {
  bool enabled = true;          // false: Detect returns a kNone manager ("disabled")
  std::string parent = "palm";  // see the header comment
  // Where to look; tests may point these at fixtures.
  std::string proc_self_cgroup = "/proc/self/cgroup";
  std::string proc_self_mountinfo = "/proc/self/mountinfo";
};

// What a group is limited to; unset = unlimited ("max").
struct CgroupLimits {
  std::optional<int64_t> memory_mb;  // memory.max / memory.limit_in_bytes (+ swap off)
  std::optional<int64_t> max_procs;  // pids.max: processes and threads of the group
  std::optional<double> cpu;         // cores: cpu.max / cpu.cfs_quota_us over a 100 ms period
};

// Maps an instance id to a directory name: [A-Za-z0-9-] kept, '/' (the runtime key's
// tenant separator) becomes '.', anything else %XX. Distinct ids give distinct names, and
// none starts with '_', so ProbeCgroupName's names cannot collide with an instance's.
std::string CgroupName(std::string_view instance_id);

// The group of one exec probe run: "_probe-<daemon pid>-<n>".
std::string ProbeCgroupName(uint64_t n);

class Cgroups {
 public:
  // Finds out what this process may use; never fails (version() kNone, reason() says why).
  static std::shared_ptr<Cgroups> Detect(const CgroupOptions& options);

  CgroupVersion version() const { return version_; }
  bool available() const { return version_ != CgroupVersion::kNone; }
  // Why cgroups are not used (kNone), e.g. "disabled", "no writable memory hierarchy: ...".
  const std::string& reason() const { return reason_; }
  // The directory of `name` in each hierarchy: what a process must join (cgroup.procs).
  std::vector<std::string> Dirs(const std::string& name) const;

  // Creates the group `name` (or reuses it: a leftover of an earlier run of the same
  // instance; its processes are killed first) and sets `limits`, resetting the ones not
  // given. Returns the directories to join. Fails (kInternal, with the file and errno)
  // when a directory or limit cannot be written; the group is then left for Remove.
  absl::StatusOr<std::vector<std::string>> Create(const std::string& name,
                                                  const CgroupLimits& limits) const;
  // True when the group's directory exists.
  bool Exists(const std::string& name) const;
  // True when `pid` is a member of the group.
  bool Contains(const std::string& name, int pid) const;
  // True while any live (not zombie) process is in the group.
  bool Populated(const std::string& name) const;
  // SIGKILLs every process in the group without letting one fork away first: v2 writes
  // cgroup.kill; v1 freezes the group, kills every member, thaws it (killed tasks die
  // only once thawed). OK when the group does not exist.
  absl::Status Kill(const std::string& name) const;
  // Removes the group's directories. kFailedPrecondition while it is populated (retry
  // after the members exit); OK when already gone.
  absl::Status Remove(const std::string& name) const;
  // Removes palm's parent directories when no group is left below them (a daemon whose
  // agents are all gone); otherwise leaves them. Never fails.
  void RemoveParentIfEmpty() const;
  // CPU (cpuacct.usage / cpu.stat usage_usec), memory (memory.usage_in_bytes /
  // memory.current) and task count (pids.current); nullopt when the group does not exist.
  std::optional<Usage> UsageOf(const std::string& name) const;

 private:
  struct Hierarchy {
    std::vector<std::string> controllers;  // v1: e.g. {"cpu", "cpuacct"}; v2: empty
    std::string base;  // the parent directory of palm's groups in this hierarchy
  };
  Cgroups() = default;
  const Hierarchy* Find(std::string_view controller) const;
  std::string DirOf(const Hierarchy& h, const std::string& name) const {
    return h.base + "/" + name;
  }
  absl::Status SetLimits(const std::string& name, const CgroupLimits& limits) const;
  std::vector<int> Members(const std::string& name) const;

  CgroupVersion version_ = CgroupVersion::kNone;
  std::string reason_;
  std::vector<Hierarchy> hierarchies_;  // v1: one per distinct mount; v2: one
};

}  // namespace palm::runtime
