// Size-capped rotation by copy-truncate, for the logs an agent writes itself: normally the
// daemon's log service owns the file and rotates it exactly (log_shim.h); this is the fallback
// when the service could not start, or for an agent adopted from a palm without one. Such an
// agent holds its log open with O_APPEND and never reopens it, so the live file is copied
// aside and truncated in place; the agent's next write lands at the new end (offset 0).
// Bytes written between the copy and the truncate are lost, the known price of copy-truncate
// (logrotate's copytruncate), and the cap holds only as well as the checks are frequent.
//
// Thread-safe: a pure function over the filesystem, but two concurrent rotations of the
// same log race. It runs synchronously and the copy takes as long as the log is big (seconds
// for a GiB), so the runtime calls it on its rotator thread, never on the event loop.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace palm::runtime {

// When `path` is larger than `max_bytes`: shifts <path>.1 → .2 … (dropping .<keep>),
// copies the current content to <path>.1 and truncates `path` to 0 bytes; with keep == 0 it
// only truncates. Returns true when it rotated, false when there was nothing to do (the file
// is small enough or missing), which costs a single stat(). Fails with kInternal (message
// names the file and errno) when a rename, copy or truncate fails; the live file is never
// truncated unless its copy was complete.
absl::StatusOr<bool> RotateLogIfLarger(const std::string& path, uint64_t max_bytes, int keep);

}  // namespace palm::runtime
