#include "palm/health/health_manager.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/post.hpp"
#include "palm/base/error.h"
#include "palm/base/utf8.h"

namespace palm::health {

namespace asio = boost::asio;
using model::ProbeSpec;
using model::ProbeType;

HealthManager::HealthManager(asio::io_context& io, const Clock& clock,
                             std::function<void(const HealthReport&)> on_change)
    : io_(io), clock_(clock), on_change_(std::move(on_change)), timer_(io) {}

HealthManager::~HealthManager() {
  alive_.reset();
  timer_.cancel();
}

absl::Time HealthManager::ToMonotonic(absl::Time wall) const {
  const absl::Time mono_now = clock_.MonotonicNow();
  const absl::Duration ago = clock_.Now() - wall;
  return ago > absl::ZeroDuration() ? mono_now - ago : mono_now;
}

void HealthManager::Track(ProbeTarget t) {
  Untrack(t.key);
  const absl::Time start = ToMonotonic(t.started_at);
  ProbeSet probes(t.spec, start);
  auto target = std::make_unique<Target>(Target{next_serial_++, std::move(t), std::move(probes)});
  Target& ref = *target;
  by_serial_.emplace(ref.serial, &ref);
  by_key_.emplace(ref.t.key, std::move(target));
  for (ProbeKind k : kProbeKinds) Schedule(ref, k);
}

void HealthManager::Untrack(const std::string& key) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return;
  // Heap entries of this serial are skipped when they come due.
  by_serial_.erase(it->second->serial);
  by_key_.erase(it);
}

void HealthManager::Schedule(Target& target, ProbeKind kind) {
  const size_t i = static_cast<size_t>(kind);
  if (target.in_flight[i] || !target.probes.Runnable(kind)) return;
  const absl::Time at = target.probes.Get(kind)->NextRunAt();
  if (at == absl::InfiniteFuture()) return;
  heap_.push(Due{at, target.serial, kind});
  Arm();
}

void HealthManager::Arm() {
  if (heap_.empty() || heap_.top().at >= armed_at_) return;
  armed_at_ = heap_.top().at;
  const uint64_t generation = ++arm_generation_;
  const absl::Duration wait = std::max(armed_at_ - clock_.MonotonicNow(), absl::ZeroDuration());
  timer_.expires_after(std::chrono::nanoseconds(absl::ToInt64Nanoseconds(wait)));
  timer_.async_wait(
      [this, alive = std::weak_ptr<int>(alive_), generation](const boost::system::error_code& ec) {
        if (ec || alive.expired() || generation != arm_generation_) return;
        armed_at_ = absl::InfiniteFuture();
        RunDue();
        Arm();
      });
}

void HealthManager::RunDue() {
  const absl::Time now = clock_.MonotonicNow();
  while (!heap_.empty() && heap_.top().at <= now) {
    const Due due = heap_.top();
    heap_.pop();
    auto it = by_serial_.find(due.serial);
    if (it == by_serial_.end()) continue;  // untracked or replaced
    Target& target = *it->second;
    if (target.in_flight[static_cast<size_t>(due.kind)] || !target.probes.Runnable(due.kind)) {
      continue;
    }
    Launch(target, due.kind);
  }
}

void HealthManager::Execute(const Target& target, const ProbeSpec& spec, ProbeKind kind,
                            ProbeCallback reported) {
  // Where probe output enters palm: an exec probe's message quotes what the command printed
  // (any bytes), so every message is made valid UTF-8 (and bounded) here, before it reaches
  // reports, events, instance documents and the log.
  ProbeCallback done = [reported = std::move(reported)](ProbeResult r) {
    if (FindInvalidUtf8(r.message) != std::string_view::npos || r.message.size() > kMaxMessage) {
      r.message = ToValidUtf8(r.message, kMaxMessage);
    }
    reported(std::move(r));
  };
  const absl::Duration timeout = absl::Seconds(spec.timeout_s);
  switch (spec.type) {
    case ProbeType::kHttp:
    case ProbeType::kTcp: {
      auto port = target.t.ports.find(spec.port);
      if (port == target.t.ports.end() || port->second <= 0 || port->second > 65535) {
        asio::post(io_, [done = std::move(done), name = spec.port] {
          done(ProbeResult{false, absl::StrCat("port \"", name, "\" has no assigned port"),
                           absl::ZeroDuration()});
        });
        return;
      }
      const auto p = static_cast<uint16_t>(port->second);
      if (spec.type == ProbeType::kHttp) {
        ProbeHttp(io_, "127.0.0.1", p, spec.path, timeout, std::move(done));
      } else {
        ProbeTcp(io_, "127.0.0.1", p, timeout, std::move(done));
      }
      return;
    }
    case ProbeType::kExec:
      ProbeExec(io_, spec.command, target.t.env, target.t.workdir, timeout, std::move(done));
      return;
    case ProbeType::kHeartbeat:
      done(Heartbeat(target, spec, kind));
      return;
  }
}

ProbeResult HealthManager::Heartbeat(const Target& target, const ProbeSpec& spec,
                                     ProbeKind kind) const {
  std::optional<absl::Time> hb;
  if (target.t.last_heartbeat) hb = target.t.last_heartbeat();
  HeartbeatVerdict v = EvaluateHeartbeat(hb, target.t.started_at, clock_.Now(),
                                         absl::Seconds(spec.max_age_s), kind == ProbeKind::kLiveness);
  return ProbeResult{v.ok, std::move(v.message), absl::ZeroDuration()};
}

void HealthManager::Launch(Target& target, ProbeKind kind) {
  const ProbeSpec& spec = target.probes.Get(kind)->spec();
  if (spec.type == ProbeType::kHeartbeat) {
    // Synchronous and cheap: record at once, without a callback object.
    OnResult(target.serial, kind, Heartbeat(target, spec, kind));
    return;
  }
  target.in_flight[static_cast<size_t>(kind)] = true;
  Execute(target, spec, kind,
          [this, alive = std::weak_ptr<int>(alive_), serial = target.serial,
           kind](ProbeResult r) {
            if (alive.expired()) return;
            OnResult(serial, kind, std::move(r));
          });
}

void HealthManager::OnResult(uint64_t serial, ProbeKind kind, ProbeResult result) {
  auto it = by_serial_.find(serial);
  if (it == by_serial_.end()) return;
  Target& target = *it->second;
  target.in_flight[static_cast<size_t>(kind)] = false;
  constexpr size_t kLatencySamples = 16384;
  float ms = static_cast<float>(absl::ToDoubleMilliseconds(result.latency));
  if (latencies_ms_.size() < kLatencySamples) {
    latencies_ms_.push_back(ms);
  } else {
    latencies_ms_[latency_next_++ % kLatencySamples] = ms;
  }
  ++probes_run_;
  const bool was_started = target.probes.started();
  const HealthReport before = MakeReport(target);
  ++target.results;
  bool changed =
      target.probes.Record(kind, result.ok, std::move(result.message), clock_.MonotonicNow());
  const HealthReport after = MakeReport(target);
  // Not the message: it may change with every result ("no heartbeat for 17s").
  changed = changed || after.failing_probe != before.failing_probe ||
            after.observed != before.observed;
  Schedule(target, kind);
  if (!was_started && target.probes.started()) {
    Schedule(target, ProbeKind::kLiveness);
    Schedule(target, ProbeKind::kReadiness);
  }
  // Last: the callback may Untrack or re-Track this key.
  if (changed && on_change_) on_change_(after);
}

HealthReport HealthManager::MakeReport(const Target& target) const {
  HealthReport r;
  r.key = target.t.key;
  r.started = target.probes.started();
  r.live = target.probes.live();
  r.ready = target.probes.ready();
  r.observed = target.results > 0;
  if (std::optional<ProbeKind> failing = target.probes.Failing()) {
    r.failing_probe = std::string(ToString(*failing));
    const ProbeState* p = target.probes.Get(*failing);
    if (p != nullptr) r.message = p->last_failure_message();
  }
  return r;
}

nlohmann::json HealthManager::LatencyStats() const {
  std::vector<float> v = latencies_ms_;
  auto at = [&](double q) -> double {
    if (v.empty()) return 0;
    size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size() - 1)));
    std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
    return v[i];
  };
  double p50 = at(0.5), p99 = at(0.99), max = at(1.0);
  return {{"count", probes_run_}, {"p50_ms", p50}, {"p99_ms", p99}, {"max_ms", max}};
}

std::optional<HealthReport> HealthManager::Report(const std::string& key) const {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return std::nullopt;
  return MakeReport(*it->second);
}

absl::Status HealthManager::CheckNow(const std::string& key,
                                     std::function<void(std::vector<ProbeCheck>)> done) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) {
    return NotFound("INSTANCE_NOT_PROBED",
                    absl::StrCat("instance ", key, " is not tracked by the health checker"),
                    "the instance must be running to be probed");
  }
  const Target& target = *it->second;
  struct Pending {
    std::vector<ProbeCheck> results;
    size_t remaining = 0;
    std::function<void(std::vector<ProbeCheck>)> done;
  };
  auto pending = std::make_shared<Pending>();
  pending->done = std::move(done);
  std::vector<ProbeKind> kinds;
  for (ProbeKind k : kProbeKinds) {
    if (const ProbeState* p = target.probes.Get(k)) {
      kinds.push_back(k);
      ProbeCheck c;
      c.probe = std::string(ToString(k));
      c.type = std::string(model::ToString(p->spec().type));
      pending->results.push_back(std::move(c));
    }
  }
  pending->remaining = kinds.size();
  if (kinds.empty()) {
    asio::post(io_, [pending] { pending->done({}); });
    return absl::OkStatus();
  }
  for (size_t i = 0; i < kinds.size(); ++i) {
    auto record = [pending, i](ProbeResult r) {
      ProbeCheck& c = pending->results[i];
      c.ok = r.ok;
      c.message = std::move(r.message);
      c.latency_ms = absl::ToDoubleMilliseconds(r.latency);
      if (--pending->remaining == 0) pending->done(std::move(pending->results));
    };
    const ProbeSpec& spec = target.probes.Get(kinds[i])->spec();
    if (spec.type == ProbeType::kHeartbeat) {
      // Evaluated now, delivered from the loop like the others.
      Execute(target, spec, kinds[i], [this, record](ProbeResult r) mutable {
        asio::post(io_, [record = std::move(record), r = std::move(r)]() mutable {
          record(std::move(r));
        });
      });
    } else {
      Execute(target, spec, kinds[i], std::move(record));
    }
  }
  return absl::OkStatus();
}

nlohmann::json HealthManager::Describe(const std::string& key) const {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return nullptr;
  const Target& target = *it->second;
  nlohmann::json out = nlohmann::json::object();
  const absl::Time mono_now = clock_.MonotonicNow();
  const absl::Time wall_now = clock_.Now();
  for (ProbeKind k : kProbeKinds) {
    const ProbeState* p = target.probes.Get(k);
    if (p == nullptr) continue;
    nlohmann::json last_at = nullptr;
    if (p->last_result_at()) last_at = palm::FormatTime(wall_now - (mono_now - *p->last_result_at()));
    out[std::string(ToString(k))] = {
        {"type", std::string(model::ToString(p->spec().type))},
        {"status", std::string(ToString(p->status()))},
        {"consecutive_successes", p->consecutive_successes()},
        {"consecutive_failures", p->consecutive_failures()},
        {"last_message", p->last_message()},
        {"last_at", last_at}};
  }
  return out;
}

}  // namespace palm::health
