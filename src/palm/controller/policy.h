// Pure decisions of the deployment reconciler: restart backoff and scale-down order.
// No I/O, no clock reads: callers pass "now". Thread-safe.
#pragma once

#include <vector>

#include "absl/time/time.h"
#include "palm/model/objects.h"

namespace palm::controller {

// Delay before the restart that follows the `failures`-th consecutive failure (1-based):
// backoff_initial_s * 2^(failures-1), capped at backoff_max_s. failures <= 0 -> zero.
absl::Duration BackoffDelay(const model::RestartPolicy& policy, int64_t failures);

// Whether an instance that exited with `exit` is restarted under `mode`
// (always: yes; on_failure: unless it exited with code 0; never: no).
bool ShouldRestart(model::RestartMode mode, const model::ExitInfo& exit);

// True when the run that just ended lasted long enough to forget earlier failures.
bool RanStably(const model::RestartPolicy& policy, absl::Time started_at, absl::Time exited_at);

// Order in which to remove instances on scale-down: instances that are not running
// (Pending, BackOff, Failed, Starting, Stopped) first, then running but not ready ones, then
// older revisions before `current_revision`, then the newest (highest seq) first. Returns indexes into `instances`.
std::vector<size_t> ScaleDownOrder(const std::vector<const model::Instance*>& instances,
                                   int64_t current_revision);

}  // namespace palm::controller
