// The posix_spawn attributes of every process palm starts (agents, exec probes, the log
// service): a new process group of its own (pgid == pid), no signal blocked and every signal
// at its default action, whatever the daemon blocks or ignores.
//
// A process group, not a session: setsid() costs 0.1-4 ms per spawn on kernels with
// scheduler autogroups, setpgid() microseconds; children never read a terminal (stdin is
// /dev/null) and a background daemon runs in its own session, so a session buys nothing.
// Thread-safety: posix_spawn only reads the attributes, so one object may serve every spawn.
#pragma once

#include <spawn.h>

namespace palm::runtime {

class NewGroupSpawnAttr {
 public:
  NewGroupSpawnAttr();
  ~NewGroupSpawnAttr();
  NewGroupSpawnAttr(const NewGroupSpawnAttr&) = delete;
  NewGroupSpawnAttr& operator=(const NewGroupSpawnAttr&) = delete;

  const posix_spawnattr_t* get() const { return &attr_; }

 private:
  posix_spawnattr_t attr_;
};

}  // namespace palm::runtime
