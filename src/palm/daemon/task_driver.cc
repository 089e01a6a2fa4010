#include "palm/daemon/task_driver.h"

#include <chrono>

#include "boost/asio/post.hpp"
#include "palm/base/log.h"

namespace palm::daemon {

namespace {
constexpr auto kPrunePeriod = std::chrono::minutes(1);
constexpr auto kRetryPeriod = std::chrono::seconds(1);
}  // namespace

TaskDriver::TaskDriver(boost::asio::io_context& io, tasks::TaskEngine& engine,
                       const Clock& clock)
    : io_(io), engine_(engine), clock_(clock), deadline_timer_(io), prune_timer_(io),
      retry_timer_(io) {}

void TaskDriver::Start() {
  running_ = true;
  engine_.SetFlushRequest([this] {
    if (flush_posted_) return;
    flush_posted_ = true;
    // Posted, not run: the requests already read in this loop turn join the same commit.
    boost::asio::post(io_, [this] {
      flush_posted_ = false;
      Flush();
    });
  });
  engine_.SetDeadlineChanged([this] { Arm(); });
  if (engine_.HasPending()) engine_.Flush();
  Arm();
  ArmRetry();
  Prune();
}

void TaskDriver::Stop() {
  if (!running_) return;
  running_ = false;
  engine_.Flush();
  deadline_timer_.cancel();
  prune_timer_.cancel();
  retry_timer_.cancel();
}

void TaskDriver::Flush() {
  engine_.Flush();
  Arm();
  ArmRetry();
}

void TaskDriver::ArmRetry() {
  if (!running_ || retry_armed_ || !engine_.HasPending()) return;
  retry_armed_ = true;
  retry_timer_.expires_after(kRetryPeriod);
  retry_timer_.async_wait([this](boost::system::error_code ec) {
    retry_armed_ = false;
    if (ec || !running_) return;
    Flush();
  });
}

void TaskDriver::Arm() {
  if (!running_) return;
  absl::Time due = engine_.NextDeadline();
  if (due == armed_for_) return;
  armed_for_ = due;
  if (due == absl::InfiniteFuture()) {
    deadline_timer_.cancel();
    return;
  }
  absl::Duration in = std::max(due - clock_.MonotonicNow(), absl::ZeroDuration());
  deadline_timer_.expires_after(absl::ToChronoNanoseconds(in));
  deadline_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || !running_) return;
    armed_for_ = absl::InfiniteFuture();
    engine_.Tick();
    Arm();
  });
}

void TaskDriver::Prune() {
  if (!running_) return;
  if (auto st = engine_.PruneRetention(); !st.ok()) {
    PALM_LOG(kWarning, "task retention: ", st.message());
  }
  prune_timer_.expires_after(kPrunePeriod);
  prune_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) Prune();
  });
}

}  // namespace palm::daemon
