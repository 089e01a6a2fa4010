// HealthManager: schedules the startup / liveness / readiness probes of many instances on one
// event loop and reports when an instance's started / live / ready flags flip.
//
// One steady_timer serves every probe: due probes sit in a min-heap keyed by their next run
// (monotonic time from the Clock), at most one entry or one in-flight execution per probe.
// A probe runs at its ProbeState::NextRunAt() (start + initial_delay_s, then period_s after
// each result); a probe still in flight is never started again, so a hanging target costs
// one socket until its timeout_s and delays nothing else. HTTP and TCP probes target
// 127.0.0.1 on the instance's assigned port (ProbeTarget::ports[spec.port]); exec probes run
// through runtime::RunExecProbe with the instance's env and workdir; heartbeat probes call
// ProbeTarget::last_heartbeat() (wall time, compared with Clock::Now()).
//
// Semantics (see probe_state.h): started = startup passed (or none); live = neither startup
// nor liveness has reached failure_threshold; ready = started && live && readiness passed
// (or none). The supervisor restarts an instance whose report says !live.
//
// Thread-safety: everything (including the callbacks) runs on `io`'s thread; call nothing
// from elsewhere. Destroy the manager on the loop thread or after the loop stopped; probes in
// flight then finish on their own and their results are dropped.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/steady_timer.hpp"
#include "nlohmann/json.hpp"
#include "palm/base/clock.h"
#include "palm/health/probe_state.h"
#include "palm/health/probes.h"
#include "palm/model/health_check.h"

namespace palm::health {

struct ProbeTarget {
  std::string key;                 // runtime key "tenant/id"
  model::HealthCheckSpec spec;
  std::map<std::string, int> ports;  // port name -> assigned port
  absl::Time started_at;           // wall time the process started (Instance::started_at)
  std::string workdir;             // exec probes
  std::map<std::string, std::string> env;  // exec probes: their complete environment
  // Heartbeat probes: the instance's last heartbeat (wall time), nullopt when none.
  std::function<std::optional<absl::Time>()> last_heartbeat;
};

// Messages (HealthReport::message, ProbeCheck::message, Describe's last_message) are valid
// UTF-8 of at most 1 KiB whatever a probe printed: invalid bytes become U+FFFD.
struct HealthReport {
  std::string key;
  bool started = false;
  bool live = true;
  bool ready = false;
  std::string failing_probe;  // "startup" | "liveness" | "readiness" | "" (all fine)
  std::string message;        // the failing probe's last failure message ("" if none yet)
  bool observed = false;      // at least one probe result has come in since Track
};

struct ProbeCheck {
  std::string probe;  // "startup" | "liveness" | "readiness"
  std::string type;   // "http" | "tcp" | "exec" | "heartbeat"
  bool ok = false;
  std::string message;
  double latency_ms = 0;
};

class HealthManager {
 public:
  // `clock` must outlive the manager. `on_change` is called (on the loop) when started, live
  // or ready of a tracked instance flips, when the failing probe changes, and
  // on the first result after Track (`observed`); never from inside Track/Untrack/CheckNow.
  HealthManager(boost::asio::io_context& io, const Clock& clock,
                std::function<void(const HealthReport&)> on_change);
  ~HealthManager();
  HealthManager(const HealthManager&) = delete;
  HealthManager& operator=(const HealthManager&) = delete;

  // Starts probing `t` from t.started_at; replaces (and resets) an earlier target of the same
  // key, e.g. after a restart. A spec without probes is tracked too (always started, live and
  // ready). on_change is not called for the initial state: read it with Report().
  void Track(ProbeTarget t);
  // Stops probing `key`; results of probes still in flight are dropped. No-op when unknown.
  void Untrack(const std::string& key);

  // Runs every configured probe of `key` now, regardless of schedule and of the startup gate,
  // and calls `done` (on the loop, never inside CheckNow) with one entry per probe in the
  // order startup, liveness, readiness. These results are diagnostic: they do not count
  // towards thresholds. kNotFound when `key` is not tracked (then `done` is not called).
  absl::Status CheckNow(const std::string& key, std::function<void(std::vector<ProbeCheck>)> done);

  // Per-probe detail for the API, one member per configured probe:
  // {"liveness": {"type": "http", "status": "Success|Failure|Unknown",
  //   "consecutive_successes": 0, "consecutive_failures": 2, "last_message": "HTTP 503",
  //   "last_at": "2026-...Z" | null}, ...}; {} without probes; null when not tracked.
  nlohmann::json Describe(const std::string& key) const;
  // The current flags of `key`, nullopt when not tracked.
  std::optional<HealthReport> Report(const std::string& key) const;
  size_t tracked() const { return by_key_.size(); }

  // Latency of the last (up to 16384) scheduled probe runs, in ms, and how many probes ran
  // in all: {"count": N, "p50_ms": x, "p99_ms": y, "max_ms": z}.
  nlohmann::json LatencyStats() const;

 private:
  // Probe messages are valid UTF-8 of at most this many bytes (see Execute).
  static constexpr size_t kMaxMessage = 1024;
  struct Target {
    uint64_t serial = 0;
    ProbeTarget t;
    ProbeSet probes;
    std::array<bool, 3> in_flight{};
    uint64_t results = 0;
  };
  struct Due {
    absl::Time at;
    uint64_t serial;
    ProbeKind kind;
    bool operator>(const Due& o) const { return at > o.at; }
  };

  void Schedule(Target& target, ProbeKind kind);
  void Arm();
  void RunDue();
  void Launch(Target& target, ProbeKind kind);
  void Execute(const Target& target, const model::ProbeSpec& spec, ProbeKind kind,
               ProbeCallback done);
  ProbeResult Heartbeat(const Target& target, const model::ProbeSpec& spec, ProbeKind kind) const;
  void OnResult(uint64_t serial, ProbeKind kind, ProbeResult result);
  HealthReport MakeReport(const Target& target) const;
  // Wall time `t` (e.g. started_at) in the monotonic time base, not after now.
  absl::Time ToMonotonic(absl::Time wall) const;

  boost::asio::io_context& io_;
  const Clock& clock_;
  std::function<void(const HealthReport&)> on_change_;
  absl::flat_hash_map<std::string, std::unique_ptr<Target>> by_key_;
  absl::flat_hash_map<uint64_t, Target*> by_serial_;
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> heap_;
  boost::asio::steady_timer timer_;
  absl::Time armed_at_ = absl::InfiniteFuture();
  uint64_t arm_generation_ = 0;
  uint64_t next_serial_ = 1;
  std::vector<float> latencies_ms_;  // ring of recent probe latencies
  size_t latency_next_ = 0;
  uint64_t probes_run_ = 0;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // handlers hold weak references
};

}  // namespace palm::health
