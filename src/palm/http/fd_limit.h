// Sizing a server by the process's file-descriptor limit.
//
// Every connection costs a descriptor, and so does everything else a daemon does (agents'
// pidfds, spawns, probes, log files, the store). RaiseFdLimit() lifts the soft
// RLIMIT_NOFILE to the hard limit at start-up; MaxConnectionsForFdLimit() then leaves a
// reserve for the rest, so the connection cap (and its clean 503) is reached before the
// process runs out of descriptors.
// Thread-safety: RaiseFdLimit changes process state; call it once, early, before threads
// that open files start. MaxConnectionsForFdLimit is pure.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"

namespace palm::http {

struct FdLimit {
  uint64_t soft = 0;      // in force now
  uint64_t hard = 0;
  uint64_t previous = 0;  // the soft limit before RaiseFdLimit
};

// Sets the soft RLIMIT_NOFILE to the hard limit (to /proc/sys/fs/nr_open when the hard limit
// is unlimited) and returns the limits now in force. kInternal when getrlimit fails; when
// only raising fails the limits stay as they were and are returned.
absl::StatusOr<FdLimit> RaiseFdLimit();

// Connections to allow for `fd_limit` descriptors: a quarter (at least 256) is kept for
// everything else, and no more than kMaxConnectionsCeiling are allowed however high the
// limit (each idle connection still costs memory). At least 16.
inline constexpr size_t kMaxConnectionsCeiling = 65536;
size_t MaxConnectionsForFdLimit(uint64_t fd_limit);

}  // namespace palm::http
