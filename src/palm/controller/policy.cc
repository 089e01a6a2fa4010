#include "palm/controller/policy.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <tuple>

namespace palm::controller {

absl::Duration BackoffDelay(const model::RestartPolicy& policy, int64_t failures) {
  if (failures <= 0 || policy.backoff_initial_s <= 0) return absl::ZeroDuration();
  // 2^62 overflows nothing in double; the cap bounds the result anyway.
  double s = policy.backoff_initial_s * std::ldexp(1.0, static_cast<int>(std::min<int64_t>(failures - 1, 62)));
  s = std::min(s, std::max(policy.backoff_max_s, policy.backoff_initial_s));
  return absl::Milliseconds(std::llround(s * 1000));
}

bool ShouldRestart(model::RestartMode mode, const model::ExitInfo& exit) {
  switch (mode) {
    case model::RestartMode::kAlways: return true;
    case model::RestartMode::kNever: return false;
    case model::RestartMode::kOnFailure: return !(exit.code.has_value() && *exit.code == 0);
  }
  return true;
}

bool RanStably(const model::RestartPolicy& policy, absl::Time started_at, absl::Time exited_at) {
  return exited_at - started_at >= absl::Seconds(policy.reset_after_s);
}

std::vector<size_t> ScaleDownOrder(const std::vector<const model::Instance*>& instances,
                                   int64_t current_revision) {
  std::vector<size_t> order(instances.size());
  std::iota(order.begin(), order.end(), 0);
  auto key = [&](size_t i) {
    const model::Instance& in = *instances[i];
    bool running = in.state == model::InstanceState::kRunning;
    bool ready = running && in.ready;
    bool current = in.revision == current_revision;
    // Ascending key = removed first: not running, not ready, old revision, newest.
    return std::make_tuple(running, ready, current, -in.seq);
  };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key(a) < key(b); });
  return order;
}

}  // namespace palm::controller
