// Runner: owns the timers that drive Supervisor::Reconcile. Dirty keys are reconciled on
// the next loop turn (coalesced), requeue times are honoured with one timer, and a periodic
// resync reconciles every key as a safety net; soft state (heartbeats) is flushed on a
// period. Thread-safety: event-loop thread only.
#pragma once

#include <map>
#include <memory>
#include <set>

#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/steady_timer.hpp"
#include "palm/controller/supervisor.h"

namespace palm::controller {

struct RunnerOptions {
  absl::Duration resync_period = absl::Seconds(30);
  absl::Duration flush_period = absl::Seconds(5);
  absl::Duration error_retry = absl::Seconds(1);  // requeue after a failed Reconcile
};

class Runner {
 public:
  Runner(boost::asio::io_context& io, Supervisor& supervisor, const Clock& clock,
         RunnerOptions options = {});
  ~Runner();
  // Hooks into the supervisor's dirty callback and starts the timers.
  void Start();
  // Cancels timers; no Reconcile runs after this returns.
  void Stop();
  // Reconcile `key` soon (coalesced with other requests in the same loop turn).
  void Enqueue(const DeploymentKey& key);
  bool running() const { return running_; }

 private:
  void RunDirty();
  void Arm();
  void OnTimer();
  void Resync();

  boost::asio::io_context& io_;
  Supervisor& supervisor_;
  const Clock& clock_;
  RunnerOptions options_;
  bool running_ = false;
  bool drain_posted_ = false;
  std::set<DeploymentKey> dirty_;
  std::map<DeploymentKey, absl::Time> due_;  // requeue times
  boost::asio::steady_timer timer_;
  boost::asio::steady_timer resync_timer_;
  boost::asio::steady_timer flush_timer_;
  absl::Time armed_for_ = absl::InfiniteFuture();
};

}  // namespace palm::controller
