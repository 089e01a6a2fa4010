// TaskDriver: runs a TaskEngine on the daemon's event loop. It posts one Flush() per loop
// turn whenever the engine has pending writes (group commit: every request handled in that
// turn shares one transaction), keeps one timer armed for the engine's next deadline
// (leases, long polls), and prunes finished tasks beyond the retention bound every minute.
// A batch whose commit failed stays pending in the engine; the driver flushes again every
// second until it commits, so a change answered "not yet durable; retried" is retried even
// when no new request comes.
// Thread-safety: event-loop thread only.
#pragma once

#include "boost/asio/io_context.hpp"
#include "boost/asio/steady_timer.hpp"
#include "palm/base/clock.h"
#include "palm/tasks/engine.h"

namespace palm::daemon {

class TaskDriver {
 public:
  TaskDriver(boost::asio::io_context& io, tasks::TaskEngine& engine, const Clock& clock);
  // Hooks the engine's flush and deadline callbacks and starts the timers.
  void Start();
  // Flushes what is pending and cancels the timers.
  void Stop();

 private:
  void Arm();
  void Prune();
  void Flush();
  // Flushes again in a second while a failed batch is pending.
  void ArmRetry();

  boost::asio::io_context& io_;
  tasks::TaskEngine& engine_;
  const Clock& clock_;
  bool running_ = false;
  bool flush_posted_ = false;
  boost::asio::steady_timer deadline_timer_;
  boost::asio::steady_timer prune_timer_;
  boost::asio::steady_timer retry_timer_;
  bool retry_armed_ = false;
  absl::Time armed_for_ = absl::InfiniteFuture();
};

}  // namespace palm::daemon
