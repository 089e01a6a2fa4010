// Events: Kubernetes-style records of every lifecycle change (DESIGN.md section 3, Event),
// kept in the store with a retention bound and streamed to subscribers (SSE clients).
//
// An event is appended to the same WriteBatch as the state change it describes. Its seq is
// assigned when that batch is sealed, right before the store applies it, so seqs follow
// commit order even when several owners (the supervisor, the task engine) fill batches of
// their own; the batch's events are published (to the in-memory tail and to subscribers)
// only after it is durable, so a client never sees an event the store could lose. Seqs are
// strictly increasing and never reused (a failed batch leaves a gap).
// Thread-safety: none; the daemon's event loop only.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "palm/store/store.h"

namespace palm::events {

using Json = nlohmann::json;

struct Event {
  std::string severity = "info";  // info | warning | error
  std::string kind;               // InstanceStarted, BackOff, ScaledUp, ...
  std::string object_type;        // spec | deployment | instance | daemon
  std::string object_name;
  std::string tenant = "default";
  std::string deployment;         // the deployment it concerns ("" = none), for filters
  std::string message;
  std::string actor_kind = "system";  // system | user | agent
  std::string actor_id = "palmd";
  std::string correlation_id;
};

class EventLog {
 public:
  // Keeps the newest `retention` events in the store and the newest `tail` in memory.
  explicit EventLog(size_t retention = 100000, size_t tail = 4096);

  // Reads the last seq (and the recent tail) from the store. Call once, first.
  absl::Status Load(store::Store& store);

  // Adds the event, stamped `now`, to `batch` (its seq comes from Seal).
  void Append(const Event& e, absl::Time now, store::WriteBatch* batch);
  // Gives the batch's events the next seqs (again, when a failed batch is retried) and,
  // every so often, adds the retention prune. Call right before store.Apply(*batch).
  void Seal(store::WriteBatch* batch);
  // `batch` is durable: add its events to the tail and hand them to subscribers.
  void Publish(const store::WriteBatch& batch);

  // The tenant's events, optionally of one deployment, at most `limit`: ascending, those with
  // seq > `cursor`, oldest first; descending, those with seq < `cursor` (0 = from the newest),
  // newest first. Read from memory as far as the tail reaches, the rest from the store.
  // Fails only when the store cannot be read.
  absl::StatusOr<std::vector<Json>> List(store::Store& store, const std::string& tenant,
                                         const std::string& deployment, int64_t cursor,
                                         size_t limit, bool descending) const;

  using Subscriber = std::function<void(const Json& event)>;
  uint64_t Subscribe(Subscriber s);
  void Unsubscribe(uint64_t id);
  size_t subscribers() const { return subscribers_.size(); }
  int64_t last_seq() const { return last_seq_; }

  // Whether `event` (a published document) passes the tenant / deployment filter.
  static bool Matches(const Json& event, const std::string& tenant,
                      const std::string& deployment);

 private:
  size_t retention_;
  size_t tail_limit_;
  int64_t last_seq_ = 0;
  std::deque<Json> tail_;
  std::map<uint64_t, Subscriber> subscribers_;
  uint64_t next_subscriber_ = 1;
};

}  // namespace palm::events
