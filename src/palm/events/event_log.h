// Events: Kubernetes-style records of every lifecycle change (DESIGN.md section 3, Event),
// kept in the store with a retention bound and streamed to subscribers (SSE clients).
//
// An event is appended to the same WriteBatch as the state change it describes, and
// published (to the in-memory tail and to subscribers) only after that batch is durable, so
// a client never sees an event the store could lose. Seqs are strictly increasing and never
// reused (a failed batch leaves a gap).
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

  // Assigns the next seq and `now`, and adds the event (and, every so often, the retention
  // prune) to `batch`. Returns the seq.
  int64_t Append(const Event& e, absl::Time now, store::WriteBatch* batch);
  // The batch holding what Append added since the last Publish/Discard is durable:
  // add those events to the tail and hand them to subscribers.
  void Publish();
  // The batch failed: forget those events.
  void Discard();

  // Events with seq > `since`, optionally of one deployment, at most `limit`, oldest first
  // (from memory when the tail reaches back far enough, else from the store).
  absl::StatusOr<std::vector<Json>> List(store::Store& store, const std::string& tenant,
                                         const std::string& deployment, int64_t since,
                                         size_t limit) const;

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
  std::vector<Json> unpublished_;
  std::deque<Json> tail_;
  std::map<uint64_t, Subscriber> subscribers_;
  uint64_t next_subscriber_ = 1;
};

}  // namespace palm::events
