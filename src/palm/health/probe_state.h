// Probe state machines with Kubernetes semantics, pure: every call takes `now`, nothing reads
// a clock or does I/O. HealthManager drives them with monotonic time; tests drive them with
// explicit absl::Time values.
//
// ProbeState (one probe): first run at start + initial_delay_s, then period_s after each
// recorded result. The status changes only when a threshold is reached and is otherwise
// sticky (as the kubelet's result): Success after success_threshold consecutive successes,
// Failure after failure_threshold consecutive failures. Initial status: Success for liveness
// (alive until proven dead), Unknown for startup and readiness (not started / not ready).
// A startup probe that succeeded never runs again (NextRunAt() is InfiniteFuture).
//
// ProbeSet (the probes of one instance): liveness and readiness do not run while a startup
// probe exists and has not succeeded; once it does, they run at the later of their own first
// time and the startup success. Derived flags:
//   started = no startup probe, or it succeeded;
//   live    = neither startup nor liveness is in Failure (a failed startup probe means
//             "restart it", as in Kubernetes);
//   ready   = started && live && (no readiness probe, or readiness is Success).
//
// Thread-safety: none (values owned by one thread).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "palm/model/health_check.h"

namespace palm::health {

enum class ProbeKind { kStartup = 0, kLiveness = 1, kReadiness = 2 };
inline constexpr std::array<ProbeKind, 3> kProbeKinds = {ProbeKind::kStartup, ProbeKind::kLiveness,
                                                         ProbeKind::kReadiness};
// "startup" | "liveness" | "readiness".
std::string_view ToString(ProbeKind k);

enum class ProbeStatus { kUnknown, kSuccess, kFailure };
// "Unknown" | "Success" | "Failure".
std::string_view ToString(ProbeStatus s);

class ProbeState {
 public:
  // `started_at`: when the container (process) started, in the caller's time base.
  ProbeState(ProbeKind kind, const model::ProbeSpec& spec, absl::Time started_at);

  // When the probe should run next; InfiniteFuture once a startup probe has succeeded.
  absl::Time NextRunAt() const { return next_run_at_; }
  // Moves the next run to `t` when it is earlier (used when a startup probe succeeds).
  void NotBefore(absl::Time t);
  // Records one probe result observed at `now`; the next run is now + period.
  void Record(bool ok, std::string message, absl::Time now);

  ProbeKind kind() const { return kind_; }
  const model::ProbeSpec& spec() const { return spec_; }
  ProbeStatus status() const { return status_; }
  int consecutive_successes() const { return successes_; }
  int consecutive_failures() const { return failures_; }
  // Message of the last result ("" before any), and of the last failed one.
  const std::string& last_message() const { return last_message_; }
  const std::string& last_failure_message() const { return last_failure_message_; }
  // Time of the last result; nullopt before any.
  std::optional<absl::Time> last_result_at() const { return last_result_at_; }
  bool last_ok() const { return last_ok_; }

 private:
  ProbeKind kind_;
  model::ProbeSpec spec_;
  absl::Duration period_;
  absl::Time next_run_at_;
  ProbeStatus status_;
  int successes_ = 0;
  int failures_ = 0;
  bool last_ok_ = false;
  std::string last_message_;
  std::string last_failure_message_;
  std::optional<absl::Time> last_result_at_;
};

class ProbeSet {
 public:
  ProbeSet(const model::HealthCheckSpec& spec, absl::Time started_at);

  // The probe of `kind`, or nullptr when the spec has none.
  const ProbeState* Get(ProbeKind kind) const;
  // True when the probe exists and may run now (see the gating rule above).
  bool Runnable(ProbeKind kind) const;
  // Records a result. Returns true when started/live/ready changed.
  bool Record(ProbeKind kind, bool ok, std::string message, absl::Time now);

  bool started() const;
  bool live() const;
  bool ready() const;
  // The probe that keeps the instance from being live (else ready), and its last failure
  // message; nullopt when live and ready, or when not ready only for lack of a result yet
  // (then `failing_probe` names the probe awaited and the message is "").
  std::optional<ProbeKind> Failing() const;

 private:
  std::array<std::optional<ProbeState>, 3> probes_;
};

// The heartbeat probe: ok iff the last heartbeat is at most `max_age` old at `now`.
// Heartbeats before `started_at` belong to an earlier run and are ignored. Without a
// heartbeat, liveness (`grace_from_start`) passes during the first max_age after start;
// startup and readiness fail ("no heartbeat yet").
struct HeartbeatVerdict {
  bool ok;
  std::string message;  // "" when ok, "no heartbeat for 17s", "no heartbeat yet"
};
HeartbeatVerdict EvaluateHeartbeat(std::optional<absl::Time> last_heartbeat, absl::Time started_at,
                                   absl::Time now, absl::Duration max_age, bool grace_from_start);

}  // namespace palm::health
