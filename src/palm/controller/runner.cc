#include "palm/controller/runner.h"

#include <chrono>

#include "boost/asio/post.hpp"
#include "palm/base/log.h"

namespace palm::controller {
namespace {
std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  if (d > absl::Hours(24)) d = absl::Hours(24);
  return absl::ToChronoNanoseconds(d);
}
}  // namespace

Runner::Runner(boost::asio::io_context& io, Supervisor& supervisor, const Clock& clock,
               RunnerOptions options)
    : io_(io), supervisor_(supervisor), clock_(clock), options_(options), timer_(io),
      resync_timer_(io), flush_timer_(io) {}

Runner::~Runner() { Stop(); }

void Runner::Start() {
  running_ = true;
  supervisor_.SetDirtyCallback([this](const DeploymentKey& key) { Enqueue(key); });
  for (const auto& key : supervisor_.AllKeys()) Enqueue(key);
  Resync();
  flush_timer_.expires_after(ToChrono(options_.flush_period));
  struct Flusher {
    Runner* self;
    void operator()(boost::system::error_code ec) const {
      if (ec || !self->running_) return;
      (void)self->supervisor_.FlushSoftState();
      self->flush_timer_.expires_after(ToChrono(self->options_.flush_period));
      self->flush_timer_.async_wait(*this);
    }
  };
  flush_timer_.async_wait(Flusher{this});
}

void Runner::Stop() {
  if (!running_) return;
  running_ = false;
  supervisor_.SetDirtyCallback(nullptr);
  timer_.cancel();
  resync_timer_.cancel();
  flush_timer_.cancel();
}

void Runner::Enqueue(const DeploymentKey& key) {
  if (!running_) return;
  dirty_.insert(key);
  if (drain_posted_) return;
  drain_posted_ = true;
  boost::asio::post(io_, [this] { RunDirty(); });
}

void Runner::RunDirty() {
  drain_posted_ = false;
  if (!running_) return;
  std::set<DeploymentKey> keys = std::move(dirty_);
  dirty_.clear();
  for (const auto& key : keys) {
    auto next = supervisor_.Reconcile(key);
    if (!next.ok()) {
      PALM_LOG(kError, "reconcile ", key.tenant, "/", key.name, ": ", next.status().ToString());
      due_[key] = clock_.MonotonicNow() + options_.error_retry;
    } else if (*next == absl::InfiniteFuture()) {
      due_.erase(key);
    } else {
      // Requeue times are wall-clock; the timer runs on the monotonic clock.
      due_[key] = clock_.MonotonicNow() + (*next - clock_.Now());
    }
  }
  Arm();
}

void Runner::Arm() {
  absl::Time earliest = absl::InfiniteFuture();
  for (const auto& [key, t] : due_) earliest = std::min(earliest, t);
  if (earliest == armed_for_) return;
  armed_for_ = earliest;
  if (earliest == absl::InfiniteFuture()) {
    timer_.cancel();
    return;
  }
  timer_.expires_after(ToChrono(earliest - clock_.MonotonicNow()));
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || !running_) return;
    armed_for_ = absl::InfiniteFuture();
    OnTimer();
  });
}

void Runner::OnTimer() {
  absl::Time now = clock_.MonotonicNow();
  for (auto it = due_.begin(); it != due_.end();) {
    if (it->second <= now) {
      dirty_.insert(it->first);
      it = due_.erase(it);
    } else {
      ++it;
    }
  }
  RunDirty();
}

void Runner::Resync() {
  resync_timer_.expires_after(ToChrono(options_.resync_period));
  resync_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || !running_) return;
    for (const auto& key : supervisor_.AllKeys()) Enqueue(key);
    Resync();
  });
}

}  // namespace palm::controller
