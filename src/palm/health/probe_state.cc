#include "palm/health/probe_state.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace palm::health {

std::string_view ToString(ProbeKind k) {
  switch (k) {
    case ProbeKind::kStartup:
      return "startup";
    case ProbeKind::kLiveness:
      return "liveness";
    case ProbeKind::kReadiness:
      return "readiness";
  }
  return "unknown";
}

std::string_view ToString(ProbeStatus s) {
  switch (s) {
    case ProbeStatus::kUnknown:
      return "Unknown";
    case ProbeStatus::kSuccess:
      return "Success";
    case ProbeStatus::kFailure:
      return "Failure";
  }
  return "Unknown";
}

ProbeState::ProbeState(ProbeKind kind, const model::ProbeSpec& spec, absl::Time started_at)
    : kind_(kind),
      spec_(spec),
      period_(absl::Seconds(spec.period_s)),
      next_run_at_(started_at + absl::Seconds(spec.initial_delay_s)),
      status_(kind == ProbeKind::kLiveness ? ProbeStatus::kSuccess : ProbeStatus::kUnknown) {}

void ProbeState::NotBefore(absl::Time t) { next_run_at_ = std::max(next_run_at_, t); }

void ProbeState::Record(bool ok, std::string message, absl::Time now) {
  last_ok_ = ok;
  last_result_at_ = now;
  if (ok) {
    ++successes_;
    failures_ = 0;
    if (successes_ >= spec_.success_threshold) status_ = ProbeStatus::kSuccess;
  } else {
    ++failures_;
    successes_ = 0;
    last_failure_message_ = message;
    if (failures_ >= spec_.failure_threshold) status_ = ProbeStatus::kFailure;
  }
  last_message_ = std::move(message);
  next_run_at_ = kind_ == ProbeKind::kStartup && status_ == ProbeStatus::kSuccess
                     ? absl::InfiniteFuture()
                     : now + period_;
}

ProbeSet::ProbeSet(const model::HealthCheckSpec& spec, absl::Time started_at) {
  if (spec.startup) probes_[0].emplace(ProbeKind::kStartup, *spec.startup, started_at);
  if (spec.liveness) probes_[1].emplace(ProbeKind::kLiveness, *spec.liveness, started_at);
  if (spec.readiness) probes_[2].emplace(ProbeKind::kReadiness, *spec.readiness, started_at);
}

const ProbeState* ProbeSet::Get(ProbeKind kind) const {
  const auto& p = probes_[static_cast<size_t>(kind)];
  return p ? &*p : nullptr;
}

bool ProbeSet::Runnable(ProbeKind kind) const {
  const ProbeState* p = Get(kind);
  if (p == nullptr) return false;
  if (kind == ProbeKind::kStartup) return p->status() != ProbeStatus::kSuccess;
  return started();
}

bool ProbeSet::Record(ProbeKind kind, bool ok, std::string message, absl::Time now) {
  auto& p = probes_[static_cast<size_t>(kind)];
  if (!p) return false;
  const bool was_started = started(), was_live = live(), was_ready = ready();
  p->Record(ok, std::move(message), now);
  if (!was_started && started()) {
    // Liveness and readiness were held off; their schedule starts now.
    for (size_t i = 1; i < probes_.size(); ++i) {
      if (probes_[i]) probes_[i]->NotBefore(now);
    }
  }
  return was_started != started() || was_live != live() || was_ready != ready();
}

bool ProbeSet::started() const {
  const ProbeState* s = Get(ProbeKind::kStartup);
  return s == nullptr || s->status() == ProbeStatus::kSuccess;
}

bool ProbeSet::live() const {
  for (ProbeKind k : {ProbeKind::kStartup, ProbeKind::kLiveness}) {
    const ProbeState* p = Get(k);
    if (p != nullptr && p->status() == ProbeStatus::kFailure) return false;
  }
  return true;
}

bool ProbeSet::ready() const {
  if (!started() || !live()) return false;
  const ProbeState* r = Get(ProbeKind::kReadiness);
  return r == nullptr || r->status() == ProbeStatus::kSuccess;
}

std::optional<ProbeKind> ProbeSet::Failing() const {
  for (ProbeKind k : kProbeKinds) {
    const ProbeState* p = Get(k);
    if (p != nullptr && p->status() == ProbeStatus::kFailure) return k;
  }
  if (!started()) return ProbeKind::kStartup;
  if (!ready()) return ProbeKind::kReadiness;
  return std::nullopt;
}

HeartbeatVerdict EvaluateHeartbeat(std::optional<absl::Time> last_heartbeat, absl::Time started_at,
                                   absl::Time now, absl::Duration max_age, bool grace_from_start) {
  if (last_heartbeat && *last_heartbeat >= started_at) {
    const absl::Duration age = now - *last_heartbeat;
    if (age <= max_age) return {true, ""};
    return {false, absl::StrCat("no heartbeat for ",
                                absl::FormatDuration(absl::Trunc(age, absl::Seconds(1))))};
  }
  const absl::Duration up = now - started_at;
  if (grace_from_start && up <= max_age) return {true, ""};
  return {false, grace_from_start
                     ? absl::StrCat("no heartbeat since the start ",
                                    absl::FormatDuration(absl::Trunc(up, absl::Seconds(1))), " ago")
                     : std::string("no heartbeat yet")};
}

}  // namespace palm::health
