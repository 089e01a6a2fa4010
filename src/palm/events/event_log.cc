#include "palm/events/event_log.h"

#include <algorithm>

#include "palm/base/clock.h"
#include "palm/base/error.h"

namespace palm::events {

EventLog::EventLog(size_t retention, size_t tail) : retention_(retention), tail_limit_(tail) {}

absl::Status EventLog::Load(store::Store& store) {
  PALM_ASSIGN_OR_RETURN(last_seq_, store.LastEventSeq());
  int64_t from = std::max<int64_t>(0, last_seq_ - static_cast<int64_t>(tail_limit_));
  PALM_ASSIGN_OR_RETURN(auto rows,
                        store.ListEvents(from, tail_limit_, "", "", /*descending=*/false));
  for (auto& row : rows) tail_.push_back(std::move(row.doc));
  return absl::OkStatus();
}

void EventLog::Append(const Event& e, absl::Time now, store::WriteBatch* batch) {
  Json doc = {{"seq", nullptr},
              {"time", palm::FormatTime(now)},
              {"severity", e.severity},
              {"kind", e.kind},
              {"object", {{"type", e.object_type}, {"name", e.object_name}}},
              {"tenant", e.tenant},
              {"deployment", e.deployment.empty() ? Json(nullptr) : Json(e.deployment)},
              {"message", e.message},
              {"correlation_id", e.correlation_id.empty() ? Json(nullptr) : Json(e.correlation_id)},
              {"actor", {{"kind", e.actor_kind}, {"id", e.actor_id}}}};
  batch->put_events.push_back({0, e.tenant, e.deployment, std::move(doc)});
}

void EventLog::Seal(store::WriteBatch* batch) {
  for (store::EventRow& row : batch->put_events) {
    row.seq = ++last_seq_;
    row.doc["seq"] = row.seq;
    // Prune in steps, not on every append: one DELETE per 1000 events.
    if (row.seq % 1000 == 0 && row.seq > static_cast<int64_t>(retention_)) {
      batch->delete_events_through = row.seq - static_cast<int64_t>(retention_);
    }
  }
}

void EventLog::Publish(const store::WriteBatch& batch) {
  for (const store::EventRow& row : batch.put_events) {
    for (const auto& [id, s] : subscribers_) s(row.doc);
    tail_.push_back(row.doc);
    if (tail_.size() > tail_limit_) tail_.pop_front();
  }
}

bool EventLog::Matches(const Json& event, const std::string& tenant,
                       const std::string& deployment) {
  if (event.value("tenant", "") != tenant) return false;
  if (deployment.empty()) return true;
  const Json& d = event["deployment"];
  return d.is_string() && d.get<std::string>() == deployment;
}

absl::StatusOr<std::vector<Json>> EventLog::List(store::Store& store, const std::string& tenant,
                                                 const std::string& deployment, int64_t cursor,
                                                 size_t limit, bool descending) const {
  std::vector<Json> out;
  if (descending) {
    // Newest first: the tail holds the newest events, so walk it backwards and go to the
    // store only for what is older than its front.
    const int64_t before = cursor == 0 ? INT64_MAX : cursor;
    for (auto it = tail_.rbegin(); it != tail_.rend() && out.size() < limit; ++it) {
      if ((*it)["seq"].get<int64_t>() < before && Matches(*it, tenant, deployment)) {
        out.push_back(*it);
      }
    }
    const int64_t older_than =
        tail_.empty() ? before : std::min(before, tail_.front()["seq"].get<int64_t>());
    if (out.size() < limit && older_than > 1) {
      PALM_ASSIGN_OR_RETURN(auto rows, store.ListEvents(older_than, limit - out.size(), tenant,
                                                        deployment, /*descending=*/true));
      for (auto& row : rows) out.push_back(std::move(row.doc));
    }
    return out;
  }
  bool tail_covers =
      cursor >= last_seq_ || (!tail_.empty() && tail_.front()["seq"].get<int64_t>() <= cursor + 1);
  if (tail_covers) {
    for (const Json& e : tail_) {
      if (out.size() >= limit) break;
      if (e["seq"].get<int64_t>() > cursor && Matches(e, tenant, deployment)) out.push_back(e);
    }
    return out;
  }
  PALM_ASSIGN_OR_RETURN(auto rows,
                        store.ListEvents(cursor, limit, tenant, deployment, /*descending=*/false));
  for (auto& row : rows) out.push_back(std::move(row.doc));
  return out;
}

uint64_t EventLog::Subscribe(Subscriber s) {
  uint64_t id = next_subscriber_++;
  subscribers_.emplace(id, std::move(s));
  return id;
}

void EventLog::Unsubscribe(uint64_t id) { subscribers_.erase(id); }

}  // namespace palm::events
