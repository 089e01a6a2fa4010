#include "palm/tasks/engine.h"

#include <algorithm>
#include <deque>
#include <set>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "palm/base/error.h"
#include "palm/base/log.h"
#include "palm/base/utf8.h"
#include "palm/store/committer.h"

namespace palm::tasks {
namespace {

using model::Delivery;
using model::Json;
using model::Task;
using model::TaskMode;
using model::TaskState;

// Map keys: (tenant, name) joined by a byte names cannot contain.
std::string Key(const std::string& a, const std::string& b) {
  std::string k;
  k.reserve(a.size() + b.size() + 1);
  k.append(a);
  k.push_back('\x1f');
  k.append(b);
  return k;
}

bool IsRoleTarget(const std::string& t) {
  return t == "stable" || t == "canary" || t == "preview";
}

absl::Status TaskNotFound(const std::string& id) {
  return NotFound("TASK_NOT_FOUND", absl::StrCat("task ", id, " not found"),
                  "list tasks with GET /v1/tasks");
}

absl::Status AlreadyFinished(const Task& t) {
  return Error(absl::StatusCode::kAborted, "TASK_ALREADY_FINISHED",
               absl::StrCat("task ", t.id, " is already finished (",
                            std::string(model::ToString(t.state)), ")"));
}

absl::Status LeaseNotHeld(const Task& t, const std::string& instance) {
  return Error(absl::StatusCode::kAborted, "LEASE_NOT_HELD",
               absl::StrCat("task ", t.id, " is not assigned to ", instance,
                            " at this attempt (lease expired, reassigned or cancelled)"),
               "drop this result; the task was or will be delivered again");
}

// A read of the store failed (nothing changed).
absl::Status StoreUnavailable(const absl::Status& st) {
  return Error(absl::StatusCode::kUnavailable, "STORE_UNAVAILABLE",
               absl::StrCat("the store could not be read: ", std::string(st.message())),
               "retry; check the data dir's disk");
}

// What a held answer says when the batch holding its change failed to commit. The batch is
// kept and retried (see engine.h), so the change is not lost: it is applied in the engine and
// becomes durable when a later commit succeeds.
absl::Status ChangeNotDurable(const absl::Status& commit, std::string_view what,
                              std::string_view hint = {}) {
  return store::NotYetDurable(commit, what, hint);
}

// Where a route delivery waits for an instance: the revision it is bound to, and whether an
// explicit target bound it (then it waits for that revision while the revision still plays
// a part in routing, instead of spilling over to other revisions).
using QueueKey = std::pair<int64_t, bool>;
using TimerKey = std::pair<absl::Time, uint64_t>;

}  // namespace

class TaskEngine::Impl {
 public:
  Impl(store::Store& store, const Clock& clock, EngineOptions options, events::EventLog* events)
      : store_(store), clock_(clock), options_(options), events_(events) {}

  // ---- State -----------------------------------------------------------------------------
  struct Inst;
  struct Dep;

  // A queued delivery. Removal is lazy: an item is live while its delivery is still queued
  // under the same generation.
  struct Item {
    int64_t seq;
    int idx;
    uint64_t gen;
  };

  struct DeliveryRt {
    bool queued = false;
    uint64_t gen = 0;
    int64_t bound_rev = 0;
    bool strict = false;
    absl::Time mono_assigned;   // monotonic grant time of the current lease (metrics)
    Inst* lease_inst = nullptr;  // holder of the current lease
    TimerKey lease_timer;
  };

  struct Entry {
    Task task;
    Dep* dep = nullptr;  // while active
    bool finished = false;
    bool pinned = false;  // deliveries are pinned to their instance (broadcast, target=ID)
    bool dirty = false;   // to be serialized into the pending batch at Flush (in dirty_)
    bool row_dirty = false;  // the task row itself must be rewritten
    int row = -1;         // its row in pending_.put_tasks
    bool in_batch = false;   // some row of it is in pending_ (listed in rows_)
    // Split tasks (broadcast): deliveries in rows of their own, so a delivery's change
    // rewrites that delivery, not the whole task (store.h, DeliveryRow).
    std::vector<int> dirty_deliveries;
    std::vector<uint8_t> delivery_dirty;           // flags for dirty_deliveries
    std::unordered_map<int, int> delivery_row;     // index -> row in pending_.put_deliveries
    std::vector<DeliveryRt> rt;
    std::vector<uint64_t> awaits;
  };

  using WaitKey = std::tuple<int64_t, uint64_t, Inst*>;  // (in flight, ordinal, instance)

  struct Inst {
    std::string tenant, id;
    Dep* dep = nullptr;
    uint64_t ordinal = 0;
    int64_t revision = 0;
    bool known = false;  // named by SetInstance (else a placeholder from Load)
    bool routable = false;
    int64_t in_flight = 0;
    std::deque<uint64_t> polls;
    std::deque<Item> pinned;
    std::set<std::pair<int64_t, int>> leases;
    bool waiting = false;  // in dep->waiting[wait_rev] under wait_key
    int64_t wait_rev = 0;
    WaitKey wait_key;
  };

  struct Dep {
    std::string tenant, name;
    bool declared = false;
    RoutingTable routing;
    std::map<int64_t, int64_t> swrr;  // smooth weighted round-robin: current weights
    std::map<QueueKey, std::deque<Item>> queues;
    std::map<std::string, Inst*> instances;
    std::map<int64_t, int> routable;  // revision -> routable instances
    std::map<int64_t, std::set<WaitKey>> waiting;
    std::unordered_set<int64_t> active;
    int64_t queued = 0, assigned = 0;
    std::map<int64_t, RevisionMetrics> metrics;
  };

  enum class TimerKind { kLease, kPoll, kAwait };
  struct Timer {
    TimerKind kind;
    int64_t seq = 0;
    int idx = 0;
    uint64_t id = 0;
  };

  struct Poll {
    Inst* inst;
    NextCallback done;
    TimerKey timer;
  };

  struct AwaitRec {
    std::string tenant, task_id;
    int64_t seq;
    TaskCallback done;
    TimerKey timer;
  };

  struct Held {
    bool needs_commit;
    std::function<void(const absl::Status&)> run;
  };

  store::Store& store_;
  const Clock& clock_;
  EngineOptions options_;
  events::EventLog* events_;

  std::function<void()> flush_request_;
  std::function<void()> deadline_changed_;
  std::function<void(const std::string&, const std::string&)> idle_cb_;

  int64_t last_seq_ = 0;
  std::unordered_map<int64_t, Entry> tasks_;  // active + the finished cache
  std::deque<int64_t> finished_order_;
  std::unordered_map<std::string, int64_t> idem_;  // tenant/deployment/key -> seq
  std::unordered_map<std::string, std::unique_ptr<Dep>> deps_;
  std::unordered_map<std::string, std::unique_ptr<Inst>> insts_;
  uint64_t next_ordinal_ = 0;
  std::unordered_map<uint64_t, Poll> polls_;
  std::unordered_map<uint64_t, AwaitRec> awaits_;
  uint64_t next_id_ = 0;
  std::map<TimerKey, Timer> timers_;

  store::WriteBatch pending_;
  std::vector<int64_t> dirty_;
  std::vector<int64_t> rows_;  // seqs holding a row in pending_
  std::vector<Held> held_;
  std::vector<std::pair<std::string, std::string>> idle_;
  bool flush_requested_ = false;
  bool loaded_ = false;          // Load() done
  bool fleet_complete_ = false;  // FleetViewComplete() called

  // ---- Small helpers ---------------------------------------------------------------------
  static std::string IdemKey(const std::string& tenant, const std::string& dep,
                             const std::string& key) {
    return Key(Key(tenant, dep), key);
  }

  Dep* FindDep(const std::string& tenant, const std::string& name) const {
    auto it = deps_.find(Key(tenant, name));
    return it == deps_.end() ? nullptr : it->second.get();
  }
  Dep& GetDep(const std::string& tenant, const std::string& name) {
    auto& slot = deps_[Key(tenant, name)];
    if (!slot) {
      slot = std::make_unique<Dep>();
      slot->tenant = tenant;
      slot->name = name;
    }
    return *slot;
  }
  Inst* FindInst(const std::string& tenant, const std::string& id) const {
    auto it = insts_.find(Key(tenant, id));
    return it == insts_.end() ? nullptr : it->second.get();
  }
  Inst& GetInst(const std::string& tenant, const std::string& id, Dep* dep) {
    auto& slot = insts_[Key(tenant, id)];
    if (!slot) {
      slot = std::make_unique<Inst>();
      slot->tenant = tenant;
      slot->id = id;
      slot->ordinal = next_ordinal_++;
      slot->dep = dep;
      if (dep) dep->instances[id] = slot.get();
    }
    return *slot;
  }
  Entry* FindEntry(const std::string& tenant, const std::string& id) {
    int64_t seq = 0;
    if (!model::ParseTaskId(id, &seq)) return nullptr;
    auto it = tasks_.find(seq);
    if (it == tasks_.end() || it->second.task.tenant != tenant) return nullptr;
    return &it->second;
  }
  static int Routable(const Dep& dep, int64_t rev) {
    auto it = dep.routable.find(rev);
    return it == dep.routable.end() ? 0 : it->second;
  }
  static bool InTable(const RoutingTable& r, int64_t rev) {
    return rev == r.stable_revision || r.canary_revision == rev || r.preview_revision == rev ||
           r.weights.count(rev) > 0;
  }
  static bool IsPreview(const Dep& dep, int64_t rev) {
    return dep.routing.preview_revision == rev;
  }
  // May instances of other revisions take deliveries bound to `key`?
  static bool Spillable(const Dep& dep, const QueueKey& key) {
    if (Routable(dep, key.first) > 0) return false;
    return !key.second || !InTable(dep.routing, key.first);
  }

  void Hold(bool needs_commit, std::function<void(const absl::Status&)> run) {
    held_.push_back({needs_commit, std::move(run)});
  }
  bool HasPending() const {
    return !pending_.empty() || !dirty_.empty() || !held_.empty() || !idle_.empty();
  }
  void MaybeRequestFlush() {
    if (flush_requested_ || !HasPending()) return;
    flush_requested_ = true;
    if (flush_request_) flush_request_();
  }

  TimerKey AddTimer(absl::Time at, Timer t) {
    TimerKey key{at, ++next_id_};
    bool earliest = timers_.empty() || key < timers_.begin()->first;
    timers_.emplace(key, t);
    if (earliest && deadline_changed_) deadline_changed_();
    return key;
  }

  static bool Split(const Entry& e) { return e.task.mode == TaskMode::kBroadcast; }
  // Delivery `idx` changed (-1: all of them, or the task as a whole); `row`: the task's own
  // row must be rewritten too (always for a route task: its delivery is in that row).
  void MarkDirty(Entry& e, int idx, bool row) {
    if (!Split(e)) row = true;
    e.row_dirty = e.row_dirty || row;
    if (Split(e)) {
      e.delivery_dirty.resize(e.task.deliveries.size());
      auto mark = [&](int i) {
        if (e.delivery_dirty[i]) return;
        e.delivery_dirty[i] = 1;
        e.dirty_deliveries.push_back(i);
      };
      if (idx >= 0) {
        mark(idx);
      } else {
        for (size_t i = 0; i < e.task.deliveries.size(); ++i) mark(static_cast<int>(i));
      }
    }
    if (e.dirty) return;
    e.dirty = true;
    dirty_.push_back(e.task.seq);
  }
  bool Unflushed(const Entry& e) const { return e.dirty || e.in_batch; }

  // The task now (memory, else the store): what held callbacks answer with.
  absl::StatusOr<Task> Snapshot(const std::string& tenant, const std::string& id) {
    if (Entry* e = FindEntry(tenant, id)) return e->task;
    PALM_ASSIGN_OR_RETURN(auto row, store_.GetTask(tenant, id));
    if (!row) return TaskNotFound(id);
    return model::TaskFromStored(row->doc);
  }
  void HoldTask(bool needs_commit, const Task& t, TaskCallback done) {
    Hold(needs_commit, [this, tenant = t.tenant, id = t.id,
                        done = std::move(done)](const absl::Status& st) {
      if (!st.ok()) return done(ChangeNotDurable(st, absl::StrCat("the change to task ", id)));
      done(Snapshot(tenant, id));
    });
  }

  void Emit(const char* kind, const Task& t, const std::string& message) {
    PALM_LOG(kWarning, message);
    if (!events_) return;
    events::Event ev;
    ev.severity = "warning";
    ev.kind = kind;
    ev.object_type = "task";
    ev.object_name = t.id;
    ev.tenant = t.tenant;
    ev.deployment = t.deployment;
    ev.message = message;
    events_->Append(ev, clock_.Now(), &pending_);
  }

  void Record(Dep* dep, int64_t revision, Outcome outcome, absl::Duration service,
              absl::Time mono) {
    if (!dep) return;
    dep->metrics[revision].Record(mono, outcome, service);
  }

  // ---- Waiting polls ---------------------------------------------------------------------
  void Unwait(Inst& in) {
    if (!in.waiting) return;
    auto it = in.dep->waiting.find(in.wait_rev);
    if (it != in.dep->waiting.end()) {
      it->second.erase(in.wait_key);
      if (it->second.empty()) in.dep->waiting.erase(it);
    }
    in.waiting = false;
  }
  // Puts `in` in its deployment's waiting set (ordered by in-flight count) when it should be.
  void Rewait(Inst& in) {
    Unwait(in);
    if (!in.dep || !in.routable || in.polls.empty()) return;
    in.wait_rev = in.revision;
    in.wait_key = WaitKey{in.in_flight, in.ordinal, &in};
    in.dep->waiting[in.revision].insert(in.wait_key);
    in.waiting = true;
  }

  uint64_t AddPoll(Inst& in, NextCallback done, absl::Time deadline) {
    uint64_t id = ++next_id_;
    TimerKey key = AddTimer(deadline, {TimerKind::kPoll, 0, 0, id});
    polls_.emplace(id, Poll{&in, std::move(done), key});
    in.polls.push_back(id);
    Rewait(in);
    return id;
  }
  // The poller went away: forget the poll without answering it.
  void CancelPoll(uint64_t id) {
    auto it = polls_.find(id);
    if (it == polls_.end()) return;
    Inst& in = *it->second.inst;
    timers_.erase(it->second.timer);
    polls_.erase(it);
    in.polls.erase(std::find(in.polls.begin(), in.polls.end(), id));
    Rewait(in);
  }
  // Removes the oldest poll of `in` and returns its callback.
  NextCallback TakePoll(Inst& in) {
    uint64_t id = in.polls.front();
    in.polls.pop_front();
    auto it = polls_.find(id);
    NextCallback done = std::move(it->second.done);
    timers_.erase(it->second.timer);
    polls_.erase(it);
    Rewait(in);
    return done;
  }
  // Every poll of `in` ends empty.
  void EndPolls(Inst& in) {
    while (!in.polls.empty()) {
      NextCallback done = TakePoll(in);
      Hold(false, [done = std::move(done)](const absl::Status&) {
        done(std::optional<Json>());
      });
    }
  }

  // ---- Queues ----------------------------------------------------------------------------
  std::deque<Item>& QueueOf(Entry& e, int idx) {
    if (e.pinned) {
      return GetInst(e.task.tenant, e.task.deliveries[idx].instance, e.dep).pinned;
    }
    const DeliveryRt& r = e.rt[idx];
    return e.dep->queues[{r.bound_rev, r.strict}];
  }
  void Enqueue(Entry& e, int idx, bool front) {
    DeliveryRt& r = e.rt[idx];
    r.queued = true;
    ++r.gen;
    Item item{e.task.seq, idx, r.gen};
    auto& q = QueueOf(e, idx);
    if (front) {
      q.push_front(item);
    } else {
      q.push_back(item);
    }
    ++e.dep->queued;
  }
  void Unqueue(Entry& e, int idx) {
    DeliveryRt& r = e.rt[idx];
    if (!r.queued) return;
    r.queued = false;
    ++r.gen;
    --e.dep->queued;
  }
  Entry* Live(const Item& item) {
    auto it = tasks_.find(item.seq);
    if (it == tasks_.end() || it->second.finished) return nullptr;
    const DeliveryRt& r = it->second.rt[item.idx];
    return r.queued && r.gen == item.gen ? &it->second : nullptr;
  }
  // Drops dead items at the front; true when a live one remains.
  bool CleanFront(std::deque<Item>& q) {
    while (!q.empty() && !Live(q.front())) q.pop_front();
    return !q.empty();
  }

  // The oldest queued delivery instance `in` may take, removed from its queue.
  std::optional<std::pair<Entry*, int>> TakeFor(Inst& in) {
    Dep* dep = in.dep;
    if (!dep) return std::nullopt;
    std::deque<Item>* best = nullptr;
    auto consider = [&](std::deque<Item>& q) {
      if (!CleanFront(q)) return;
      if (!best || q.front().seq < best->front().seq) best = &q;
    };
    consider(in.pinned);
    bool preview = IsPreview(*dep, in.revision);
    for (auto it = dep->queues.begin(); it != dep->queues.end();) {
      if (!CleanFront(it->second)) {
        it = dep->queues.erase(it);
        continue;
      }
      if (it->first.first == in.revision || (!preview && Spillable(*dep, it->first))) {
        consider(it->second);
      }
      ++it;
    }
    if (!best) return std::nullopt;
    Item item = best->front();
    best->pop_front();
    Entry* e = &tasks_.at(item.seq);
    Unqueue(*e, item.idx);
    return std::make_pair(e, item.idx);
  }

  // The waiting instance that should get delivery `idx` of `e` now, if any.
  Inst* PickWaiting(Entry& e, int idx) {
    if (e.pinned) {
      Inst* in = FindInst(e.task.tenant, e.task.deliveries[idx].instance);
      return in && in->waiting ? in : nullptr;
    }
    Dep& dep = *e.dep;
    const DeliveryRt& r = e.rt[idx];
    if (Routable(dep, r.bound_rev) > 0) {
      auto it = dep.waiting.find(r.bound_rev);
      return it == dep.waiting.end() ? nullptr : std::get<2>(*it->second.begin());
    }
    if (!Spillable(dep, {r.bound_rev, r.strict})) return nullptr;
    Inst* best = nullptr;
    for (auto& [rev, set] : dep.waiting) {
      if (IsPreview(dep, rev)) continue;
      Inst* cand = std::get<2>(*set.begin());
      if (!best || std::make_pair(cand->in_flight, cand->ordinal) <
                       std::make_pair(best->in_flight, best->ordinal)) {
        best = cand;
      }
    }
    return best;
  }

  // Hands delivery `idx` to a waiting instance, or queues it.
  void Route(Entry& e, int idx, bool front, absl::Time now, absl::Time mono) {
    if (Inst* in = PickWaiting(e, idx)) {
      NextCallback done = TakePoll(*in);
      Assign(e, idx, *in, std::move(done), now, mono);
    } else {
      Enqueue(e, idx, front);
    }
  }

  // Offers queued work to every waiting instance of `dep` (after a change of who may take
  // what: an instance left, the routing table changed).
  void Dispatch(Dep& dep) {
    std::vector<Inst*> waiting;
    for (auto& [rev, set] : dep.waiting) {
      for (const WaitKey& k : set) waiting.push_back(std::get<2>(k));
    }
    if (waiting.empty()) return;
    absl::Time now = clock_.Now(), mono = clock_.MonotonicNow();
    for (Inst* in : waiting) {
      while (!in->polls.empty()) {
        auto got = TakeFor(*in);
        if (!got) break;
        NextCallback done = TakePoll(*in);
        Assign(*got->first, got->second, *in, std::move(done), now, mono);
      }
    }
  }

  // Smooth weighted round-robin (nginx) over the revisions that can serve now; when none
  // can, over every weighted revision (the delivery waits for one of them).
  int64_t ChooseRevision(Dep& dep) {
    const auto& weights = dep.routing.weights;
    if (weights.empty()) return dep.routing.stable_revision;
    for (bool need_routable : {true, false}) {
      int64_t total = 0, best = 0;
      int64_t* best_cur = nullptr;
      for (const auto& [rev, w] : weights) {
        if (w <= 0 || IsPreview(dep, rev)) continue;
        if (need_routable && Routable(dep, rev) == 0) continue;
        int64_t& cur = dep.swrr[rev];
        cur += w;
        total += w;
        if (!best_cur || cur > *best_cur) {
          best = rev;
          best_cur = &cur;
        }
      }
      if (best_cur) {
        *best_cur -= total;
        return best;
      }
    }
    return dep.routing.stable_revision;
  }

  // ---- Delivery transitions --------------------------------------------------------------
  void Assign(Entry& e, int idx, Inst& in, NextCallback done, absl::Time now, absl::Time mono) {
    Task& t = e.task;
    Delivery& d = t.deliveries[idx];
    DeliveryRt& r = e.rt[idx];
    d.state = TaskState::kAssigned;
    ++d.attempts;
    d.instance = in.id;
    d.revision = in.revision;
    d.assigned_at = now;
    d.lease_expires_at = now + absl::Seconds(t.timeout_s);
    r.mono_assigned = mono;
    r.lease_inst = &in;
    r.lease_timer = AddTimer(mono + absl::Seconds(t.timeout_s),
                             {TimerKind::kLease, t.seq, idx, 0});
    ++in.in_flight;
    in.leases.emplace(t.seq, idx);
    ++e.dep->assigned;
    Rewait(in);
    Json view = model::AgentView(t, d);
    Hold(true, [done = std::move(done), view = std::move(view), id = t.id,
                inst = in.id](const absl::Status& st) mutable {
      if (!st.ok()) {
        return done(ChangeNotDurable(st, absl::StrCat("handing task ", id, " to ", inst),
                                     "this poll gets no task: poll again; the task is handed "
                                     "out again when its lease expires"));
      }
      done(std::optional<Json>(std::move(view)));
    });
    UpdateTask(e, now, idx);
  }

  // Ends the current lease of delivery `idx` (result, expiry, loss, cancel).
  void ReleaseLease(Entry& e, int idx) {
    DeliveryRt& r = e.rt[idx];
    Inst* in = r.lease_inst;
    if (!in) return;
    r.lease_inst = nullptr;
    timers_.erase(r.lease_timer);
    in->leases.erase({e.task.seq, idx});
    --in->in_flight;
    --e.dep->assigned;
    Rewait(*in);
    if (in->in_flight == 0 && !in->routable) idle_.emplace_back(in->tenant, in->id);
    e.task.deliveries[idx].lease_expires_at.reset();
  }

  // The lease of delivery `idx` ended without a result: back to the front of its queue with
  // the next attempt, or TimedOut after max_attempts.
  void LoseLease(Entry& e, int idx, const std::string& error, absl::Time now, absl::Time mono) {
    Delivery& d = e.task.deliveries[idx];
    Record(e.dep, d.revision, Outcome::kTimedOut, absl::ZeroDuration(), mono);
    ReleaseLease(e, idx);
    d.error = error;
    if (d.attempts >= e.task.max_attempts) {
      d.state = TaskState::kTimedOut;
      d.completed_at = now;
    } else {
      d.state = TaskState::kQueued;
      if (!e.pinned) d.instance.clear();
      Route(e, idx, /*front=*/true, now, mono);
    }
    UpdateTask(e, now, idx);
  }

  void ExpireLease(Entry& e, int idx, absl::Time now, absl::Time mono) {
    const Delivery& d = e.task.deliveries[idx];
    std::string msg = absl::StrCat("lease expired after ", e.task.timeout_s, "s on ", d.instance,
                                   " (attempt ", d.attempts, " of ", e.task.max_attempts, ")");
    Emit("LeaseExpired", e.task, absl::StrCat("task ", e.task.id, ": ", msg));
    LoseLease(e, idx, msg, now, mono);
  }

  // Ends delivery `idx` (queued or assigned) in terminal state `state`.
  void EndDelivery(Entry& e, int idx, TaskState state, const std::string& error,
                   absl::Time now) {
    Delivery& d = e.task.deliveries[idx];
    ReleaseLease(e, idx);
    Unqueue(e, idx);
    d.state = state;
    d.error = error;
    d.completed_at = now;
  }

  // Derives the task's state after delivery `changed` changed (-1: several, or the task
  // itself); finishes it when terminal. A split task's own row is rewritten only when its
  // state changes (or it is new, or ends): a delivery's result writes that delivery.
  void UpdateTask(Entry& e, absl::Time now, int changed = -1) {
    Task& t = e.task;
    const TaskState before = t.state;
    if (t.state != TaskState::kCancelled) t.state = model::TaskStateOf(t);
    t.updated_at = now;
    if (t.mode == TaskMode::kRoute) t.error = t.deliveries[0].error;
    const bool finishing = model::IsTerminal(t.state) && !e.finished;
    MarkDirty(e, changed, changed < 0 || t.state != before || finishing);
    if (finishing) Finish(e, now);
  }

  void Finish(Entry& e, absl::Time now) {
    Task& t = e.task;
    t.completed_at = now;
    if (t.mode == TaskMode::kBroadcast && t.state != TaskState::kSucceeded &&
        t.state != TaskState::kCancelled) {
      int bad = 0;
      const Delivery* first = nullptr;
      for (const Delivery& d : t.deliveries) {
        if (d.state == TaskState::kSucceeded) continue;
        ++bad;
        if (!first) first = &d;
      }
      if (first) {
        t.error = absl::StrCat(bad, " of ", t.deliveries.size(), " deliveries did not succeed; ",
                               first->instance, ": ", first->error);
      }
    }
    e.finished = true;
    if (e.dep) e.dep->active.erase(t.seq);
    e.dep = nullptr;
    finished_order_.push_back(t.seq);
    for (uint64_t id : e.awaits) {
      auto it = awaits_.find(id);
      if (it == awaits_.end()) continue;
      timers_.erase(it->second.timer);
      HoldTask(true, t, std::move(it->second.done));
      awaits_.erase(it);
    }
    e.awaits.clear();
    if (t.state == TaskState::kFailed) {
      Emit("TaskFailed", t,
           t.mode == TaskMode::kRoute
               ? absl::StrCat("task ", t.id, " failed on ", t.deliveries[0].instance, ": ",
                              t.error)
               : absl::StrCat("task ", t.id, " failed: ", t.error));
    } else if (t.state == TaskState::kTimedOut) {
      Emit("TaskTimedOut", t, absl::StrCat("task ", t.id, " timed out: ", t.error));
    }
  }

  void CancelTask(Entry& e, const std::string& reason, absl::Time now) {
    for (size_t i = 0; i < e.task.deliveries.size(); ++i) {
      if (model::IsTerminal(e.task.deliveries[i].state)) continue;
      EndDelivery(e, static_cast<int>(i), TaskState::kCancelled, reason, now);
    }
    e.task.state = TaskState::kCancelled;
    e.task.error = reason;
    UpdateTask(e, now);
  }

  // Every lease `in` holds ends. `removed`: pinned deliveries fail instead of waiting.
  void LoseInstanceLeases(Inst& in, const std::string& why, bool removed, absl::Time now,
                          absl::Time mono) {
    auto leases = in.leases;
    for (const auto& [seq, idx] : leases) {
      Entry& e = tasks_.at(seq);
      const Delivery& d = e.task.deliveries[idx];
      if (removed && e.pinned) {
        Record(e.dep, d.revision, Outcome::kTimedOut, absl::ZeroDuration(), mono);
        EndDelivery(e, idx, TaskState::kFailed, absl::StrCat("instance ", in.id, " was removed"),
                    now);
        UpdateTask(e, now, idx);
        continue;
      }
      std::string msg = absl::StrCat("instance ", in.id, " lost: ", why, " (attempt ", d.attempts,
                                     " of ", e.task.max_attempts, ")");
      LoseLease(e, idx, msg, now, mono);
    }
  }

  // ---- Submit ----------------------------------------------------------------------------
  using SubmitDone = std::function<void(absl::StatusOr<Task>, bool)>;

  void SubmitError(absl::Status st, SubmitDone done) {
    Hold(false, [st = std::move(st), done = std::move(done)](const absl::Status&) {
      done(st, false);
    });
  }

  void Submit(const std::string& tenant, model::TaskRequest req, SubmitDone done) {
    Submit1(tenant, std::move(req), std::move(done));
    MaybeRequestFlush();
  }

  void Submit1(const std::string& tenant, model::TaskRequest req, SubmitDone done) {
    Dep* dep = FindDep(tenant, req.deployment);
    if (!dep || !dep->declared) {
      return SubmitError(NotFound("DEPLOYMENT_NOT_FOUND",
                                  absl::StrCat("deployment ", req.deployment, " not found"),
                                  "list deployments with palm deployment list"),
                         std::move(done));
    }
    // The same idempotency key: the existing task, whatever the fleet looks like now.
    if (!req.idempotency_key.empty()) {
      auto it = idem_.find(IdemKey(tenant, req.deployment, req.idempotency_key));
      if (it != idem_.end()) {
        Entry& e = tasks_.at(it->second);
        Hold(Unflushed(e), [this, tenant, id = e.task.id,
                            done = std::move(done)](const absl::Status& st) {
          if (!st.ok()) {
            return done(ChangeNotDurable(st, absl::StrCat("task ", id, " (same idempotency_key)"),
                                         "resubmit with the same idempotency_key to learn its "
                                         "fate"),
                        false);
          }
          done(Snapshot(tenant, id), false);
        });
        return;
      }
      auto row = store_.FindTaskByIdempotencyKey(tenant, req.deployment, req.idempotency_key);
      if (!row.ok()) return SubmitError(StoreUnavailable(row.status()), std::move(done));
      if (*row) {
        auto task = model::TaskFromStored((*row)->doc);
        Hold(false, [task = std::move(task), done = std::move(done)](const absl::Status&) {
          done(task, false);
        });
        return;
      }
    }
    size_t input_bytes = req.input.dump().size();
    if (input_bytes > options_.max_input_bytes) {
      return SubmitError(
          Error(absl::StatusCode::kInvalidArgument, "PAYLOAD_TOO_LARGE",
                absl::StrCat("task.input: ", input_bytes, " bytes is over the limit of ",
                             options_.max_input_bytes, " bytes"),
                "pass a reference (a path or URL) instead of the data"),
          std::move(done));
    }
    const RoutingTable& routing = dep->routing;
    // Resolve the target: a revision (role) or an instance.
    std::optional<int64_t> role_rev;
    Inst* target_inst = nullptr;
    if (req.target == "stable") {
      role_rev = routing.stable_revision;
    } else if (req.target == "canary" || req.target == "preview") {
      role_rev = req.target == "canary" ? routing.canary_revision : routing.preview_revision;
      if (!role_rev) {
        return SubmitError(InvalidArgument(absl::StrCat("task.target: deployment ",
                                                        req.deployment, " has no ", req.target,
                                                        " revision")),
                           std::move(done));
      }
    } else if (!req.target.empty()) {
      auto it = dep->instances.find(req.target);
      if (it == dep->instances.end() || !it->second->known) {
        return SubmitError(InvalidArgument(absl::StrCat("task.target: instance ", req.target,
                                                        " is not in deployment ",
                                                        req.deployment)),
                           std::move(done));
      }
      target_inst = it->second;
    }
    // Deliveries.
    std::vector<Inst*> pins;
    if (req.mode == TaskMode::kBroadcast) {
      for (auto& [id, in] : dep->instances) {
        if (!in->known || !in->routable) continue;
        if (target_inst && in != target_inst) continue;
        if (role_rev && in->revision != *role_rev) continue;
        if (!target_inst && !role_rev && IsPreview(*dep, in->revision)) continue;
        pins.push_back(in);
      }
      if (pins.empty()) {
        return SubmitError(
            Error(absl::StatusCode::kFailedPrecondition, "NO_READY_INSTANCES",
                  absl::StrCat("deployment ", req.deployment,
                               " has no ready instance to broadcast to"),
                  "wait until its instances are ready (palm status)"),
            std::move(done));
      }
    } else if (target_inst) {
      pins.push_back(target_inst);
    }
    size_t n = req.mode == TaskMode::kBroadcast ? pins.size() : 1;
    if (static_cast<size_t>(dep->queued) + n > options_.max_queued_per_deployment) {
      return SubmitError(
          Error(absl::StatusCode::kResourceExhausted, "RATE_LIMITED",
                absl::StrCat("deployment ", req.deployment, " has ", dep->queued,
                             " tasks queued (limit ", options_.max_queued_per_deployment, ")"),
                "retry later, or scale the deployment up"),
          std::move(done));
    }

    absl::Time now = clock_.Now(), mono = clock_.MonotonicNow();
    int64_t seq = ++last_seq_;
    auto [it, inserted] = tasks_.try_emplace(seq);
    Entry& e = it->second;
    Task& t = e.task;
    t.tenant = tenant;
    t.id = model::TaskId(seq);
    t.seq = seq;
    t.deployment = req.deployment;
    t.input = std::move(req.input);
    t.mode = req.mode;
    t.target = std::move(req.target);
    t.max_attempts = req.max_attempts;
    t.timeout_s = req.timeout_s;
    t.idempotency_key = std::move(req.idempotency_key);
    t.created_at = now;
    t.updated_at = now;
    t.deliveries.resize(n);
    e.rt.resize(n);
    e.dep = dep;
    e.pinned = !pins.empty();
    dep->active.insert(seq);
    if (!t.idempotency_key.empty()) {
      idem_[IdemKey(tenant, t.deployment, t.idempotency_key)] = seq;
    }
    for (size_t i = 0; i < n; ++i) {
      if (e.pinned) {
        t.deliveries[i].instance = pins[i]->id;
      } else {
        e.rt[i].bound_rev = role_rev ? *role_rev : ChooseRevision(*dep);
        e.rt[i].strict = role_rev.has_value();
      }
    }
    for (size_t i = 0; i < n; ++i) Route(e, static_cast<int>(i), /*front=*/false, now, mono);
    UpdateTask(e, now);
    // Failing to commit does not undo the task: it stays queued in the engine and the batch
    // is retried, so the submitter is told exactly that.
    Hold(true, [this, tenant, id = t.id, keyed = !t.idempotency_key.empty(),
                done = std::move(done)](const absl::Status& st) {
      if (!st.ok()) {
        return done(ChangeNotDurable(
                        st, absl::StrCat("task ", id, " was accepted but"),
                        keyed ? "resubmit with the same idempotency_key to learn its fate (it "
                                "answers with this task once it is durable)"
                              : "GET /v1/tasks/" + id + " shows it; a resubmit without an "
                                "idempotency_key creates a second task"),
                    true);
      }
      done(Snapshot(tenant, id), true);
    });
  }

  // ---- Agents ----------------------------------------------------------------------------
  uint64_t Next(const std::string& tenant, const std::string& id, absl::Duration wait,
                NextCallback done) {
    uint64_t poll = 0;
    Inst* in = FindInst(tenant, id);
    if (!in || !in->known || !in->routable || !in->dep || !in->dep->declared) {
      Hold(false, [done = std::move(done)](const absl::Status&) {
        done(std::optional<Json>());
      });
    } else if (auto got = TakeFor(*in)) {
      Assign(*got->first, got->second, *in, std::move(done), clock_.Now(),
             clock_.MonotonicNow());
    } else if (wait <= absl::ZeroDuration()) {
      Hold(false, [done = std::move(done)](const absl::Status&) {
        done(std::optional<Json>());
      });
    } else {
      poll = AddPoll(*in, std::move(done),
                     clock_.MonotonicNow() + std::min(wait, options_.max_poll_wait));
    }
    MaybeRequestFlush();
    return poll;
  }

  void Complete(const std::string& tenant, const std::string& id, const std::string& task_id,
                model::TaskResult result, ResultCallback done) {
    absl::Status st = Complete1(tenant, id, task_id, std::move(result));
    if (!st.ok()) {
      Hold(false, [st, done = std::move(done)](const absl::Status&) { done(st); });
    } else {
      Entry* e = FindEntry(tenant, task_id);
      TaskState state = e ? e->task.state : TaskState::kSucceeded;
      Hold(true, [state, task_id, done = std::move(done)](const absl::Status& c) {
        if (c.ok()) return done(state);
        done(ChangeNotDurable(c, absl::StrCat("the result for task ", task_id),
                              "do not post it again (it is recorded: a second post answers "
                              "409 TASK_ALREADY_FINISHED)"));
      });
    }
    MaybeRequestFlush();
  }

  // Which delivery of `t` concerns `instance`, and whether a result from it is refused.
  static absl::Status Refusal(const Task& t, const Delivery* d, const std::string& instance,
                              const std::optional<int64_t>& attempt) {
    if (!d) return LeaseNotHeld(t, instance);
    if ((d->state == TaskState::kSucceeded || d->state == TaskState::kFailed) &&
        d->instance == instance) {
      return AlreadyFinished(t);
    }
    if (d->state != TaskState::kAssigned || d->instance != instance ||
        (attempt && *attempt != d->attempts)) {
      return LeaseNotHeld(t, instance);
    }
    return absl::OkStatus();
  }
  static const Delivery* DeliveryFor(const Task& t, const std::string& instance, int* idx) {
    if (t.mode == TaskMode::kRoute) {
      *idx = 0;
      return t.deliveries.empty() ? nullptr : &t.deliveries[0];
    }
    for (size_t i = 0; i < t.deliveries.size(); ++i) {
      if (t.deliveries[i].instance == instance) {
        *idx = static_cast<int>(i);
        return &t.deliveries[i];
      }
    }
    return nullptr;
  }

  absl::Status Complete1(const std::string& tenant, const std::string& id,
                         const std::string& task_id, model::TaskResult result) {
    // Bounds first, as for a submit's input: refused before anything is looked up.
    if (!result.output.is_null()) {
      const size_t output_bytes = result.output.dump().size();
      if (output_bytes > options_.max_output_bytes) {
        return Error(absl::StatusCode::kInvalidArgument, "PAYLOAD_TOO_LARGE",
                     absl::StrCat("result.output: ", output_bytes, " bytes is over the limit of ",
                                  options_.max_output_bytes, " bytes"),
                     "return a reference (a path or URL) to the data instead of the data");
      }
    }
    if (result.error.size() > options_.max_error_bytes) {
      const std::string note = absl::StrCat(" ... (truncated from ", result.error.size(), " bytes)");
      const size_t keep =
          options_.max_error_bytes > note.size() ? options_.max_error_bytes - note.size() : 0;
      result.error = ToValidUtf8(result.error, keep) + note;
    }
    Entry* e = FindEntry(tenant, task_id);
    int idx = 0;
    if (!e) {
      PALM_ASSIGN_OR_RETURN(auto row, store_.GetTask(tenant, task_id));
      if (!row) return TaskNotFound(task_id);
      PALM_ASSIGN_OR_RETURN(Task t, model::TaskFromStored(row->doc));
      absl::Status refused = Refusal(t, DeliveryFor(t, id, &idx), id, result.attempt);
      return refused.ok() ? LeaseNotHeld(t, id) : refused;  // not active: nothing to accept
    }
    Task& t = e->task;
    const Delivery* d = DeliveryFor(t, id, &idx);
    PALM_RETURN_IF_ERROR(Refusal(t, d, id, result.attempt));
    absl::Time now = clock_.Now(), mono = clock_.MonotonicNow();
    Delivery& dd = t.deliveries[idx];
    absl::Duration service = mono - e->rt[idx].mono_assigned;
    Record(e->dep, dd.revision, result.ok ? Outcome::kSucceeded : Outcome::kFailed, service,
           mono);
    EndDelivery(*e, idx, result.ok ? TaskState::kSucceeded : TaskState::kFailed,
                result.ok ? std::string()
                          : (result.error.empty() ? std::string("the agent reported a failure")
                                                  : result.error),
                now);
    dd.output = std::move(result.output);
    dd.cost_usd = result.cost_usd;
    UpdateTask(*e, now, idx);
    return absl::OkStatus();
  }

  // ---- Clients ---------------------------------------------------------------------------
  absl::StatusOr<Task> Get(const std::string& tenant, const std::string& id) {
    if (Entry* e = FindEntry(tenant, id)) return e->task;
    int64_t seq = 0;
    if (!model::ParseTaskId(id, &seq)) return TaskNotFound(id);
    PALM_ASSIGN_OR_RETURN(auto row, store_.GetTask(tenant, id));
    if (!row) return TaskNotFound(id);
    return model::TaskFromStored(row->doc);
  }

  void Await(const std::string& tenant, const std::string& id, absl::Duration wait,
             TaskCallback done) {
    Entry* e = FindEntry(tenant, id);
    if (!e) {
      auto t = Get(tenant, id);
      Hold(false, [t = std::move(t), done = std::move(done)](const absl::Status&) { done(t); });
    } else if (e->finished || wait <= absl::ZeroDuration()) {
      HoldTask(Unflushed(*e), e->task, std::move(done));
    } else {
      uint64_t aid = ++next_id_;
      TimerKey key = AddTimer(clock_.MonotonicNow() + std::min(wait, options_.max_poll_wait),
                              {TimerKind::kAwait, e->task.seq, 0, aid});
      awaits_.emplace(aid, AwaitRec{tenant, id, e->task.seq, std::move(done), key});
      e->awaits.push_back(aid);
    }
    MaybeRequestFlush();
  }

  void Cancel(const std::string& tenant, const std::string& id, TaskCallback done) {
    Entry* e = FindEntry(tenant, id);
    if (!e || e->finished) {
      absl::StatusOr<Task> t = e ? absl::StatusOr<Task>(e->task) : Get(tenant, id);
      absl::Status st = t.ok() ? AlreadyFinished(*t) : t.status();
      Hold(false, [st, done = std::move(done)](const absl::Status&) { done(st); });
    } else {
      CancelTask(*e, "cancelled", clock_.Now());
      HoldTask(true, e->task, std::move(done));
    }
    MaybeRequestFlush();
  }

  // ---- Fleet view ------------------------------------------------------------------------
  static bool SameRouting(const RoutingTable& a, const RoutingTable& b) {
    return a.stable_revision == b.stable_revision && a.canary_revision == b.canary_revision &&
           a.preview_revision == b.preview_revision && a.weights == b.weights;
  }

  void SetDeployment(const std::string& tenant, const std::string& name, RoutingTable routing) {
    Dep& dep = GetDep(tenant, name);
    bool changed = !dep.declared || !SameRouting(dep.routing, routing);
    dep.declared = true;
    if (!changed) return;
    if (dep.routing.weights != routing.weights) dep.swrr.clear();
    dep.routing = std::move(routing);
    Dispatch(dep);
    MaybeRequestFlush();
  }

  void RemoveDeployment(const std::string& tenant, const std::string& name) {
    Dep* dep = FindDep(tenant, name);
    if (!dep) return;
    absl::Time now = clock_.Now();
    // Polls first, so that nothing cancelled below is handed out again.
    for (auto& [id, in] : dep->instances) {
      in->routable = false;
      EndPolls(*in);
    }
    std::vector<int64_t> active(dep->active.begin(), dep->active.end());
    std::sort(active.begin(), active.end());
    for (int64_t seq : active) CancelTask(tasks_.at(seq), "deployment deleted", now);
    for (auto& [id, in] : dep->instances) insts_.erase(Key(tenant, id));
    idle_.erase(std::remove_if(idle_.begin(), idle_.end(),
                               [&](const auto& p) { return !FindInst(p.first, p.second); }),
                idle_.end());
    deps_.erase(Key(tenant, name));
    MaybeRequestFlush();
  }

  void SetInstance(const std::string& tenant, const std::string& deployment,
                   const std::string& id, int64_t revision, bool routable) {
    Dep& dep = GetDep(tenant, deployment);
    Inst& in = GetInst(tenant, id, &dep);
    if (in.dep != &dep) {  // a placeholder filed under another deployment (should not happen)
      Unwait(in);
      if (in.dep) {
        if (in.known && in.routable) --in.dep->routable[in.revision];
        in.dep->instances.erase(id);
      }
      in.known = false;
      in.dep = &dep;
      dep.instances[id] = &in;
    }
    bool was_routable = in.known && in.routable;
    int64_t old_rev = in.revision;
    if (was_routable && --dep.routable[old_rev] == 0) dep.routable.erase(old_rev);
    in.known = true;
    in.revision = revision;
    in.routable = routable;
    if (routable) ++dep.routable[revision];
    if (!routable) EndPolls(in);
    Rewait(in);
    if (was_routable && (!routable || old_rev != revision) && Routable(dep, old_rev) == 0) {
      Dispatch(dep);  // deliveries bound to old_rev may now go elsewhere
    }
    MaybeRequestFlush();
  }

  void InstanceLost(const std::string& tenant, const std::string& id, const std::string& reason) {
    Inst* in = FindInst(tenant, id);
    if (!in) return;
    EndPolls(*in);
    LoseInstanceLeases(*in, reason, /*removed=*/false, clock_.Now(), clock_.MonotonicNow());
    MaybeRequestFlush();
  }

  void RemoveInstance(const std::string& tenant, const std::string& id) {
    Inst* in = FindInst(tenant, id);
    if (!in) return;
    absl::Time now = clock_.Now(), mono = clock_.MonotonicNow();
    EndPolls(*in);
    Dep* dep = in->dep;
    bool was_routable = in->known && in->routable;
    int64_t rev = in->revision;
    in->routable = false;  // nothing requeued below may come back to it
    if (was_routable && dep && --dep->routable[rev] == 0) dep->routable.erase(rev);
    LoseInstanceLeases(*in, "instance removed", /*removed=*/true, now, mono);
    std::string msg = absl::StrCat("instance ", id, " was removed");
    while (!in->pinned.empty()) {
      Item item = in->pinned.front();
      in->pinned.pop_front();
      Entry* e = Live(item);
      if (!e) continue;
      EndDelivery(*e, item.idx, TaskState::kFailed, msg, now);
      UpdateTask(*e, now, item.idx);
    }
    Unwait(*in);
    if (dep) dep->instances.erase(id);
    idle_.erase(std::remove_if(idle_.begin(), idle_.end(),
                               [&](const auto& p) { return p.first == tenant && p.second == id; }),
                idle_.end());
    insts_.erase(Key(tenant, id));
    if (was_routable && dep && Routable(*dep, rev) == 0) Dispatch(*dep);
    MaybeRequestFlush();
  }

  int64_t InFlight(const std::string& tenant, const std::string& id) const {
    Inst* in = FindInst(tenant, id);
    return in ? in->in_flight : 0;
  }

  // ---- Load ------------------------------------------------------------------------------
  absl::Status Load() {
    PALM_ASSIGN_OR_RETURN(last_seq_, store_.LastTaskSeq());
    PALM_ASSIGN_OR_RETURN(auto rows, store_.ListActiveTasks());
    absl::Time now = clock_.Now(), mono = clock_.MonotonicNow();
    for (auto& row : rows) {
      auto parsed = model::TaskFromStored(row.doc);
      if (!parsed.ok()) {
        PALM_LOG(kError, "task ", row.id, ": cannot load: ", parsed.status().ToString());
        continue;
      }
      last_seq_ = std::max(last_seq_, parsed->seq);
      auto [it, inserted] = tasks_.try_emplace(parsed->seq);
      if (!inserted) continue;
      Entry& e = it->second;
      e.task = std::move(*parsed);
      Task& t = e.task;
      Dep& dep = GetDep(t.tenant, t.deployment);
      e.dep = &dep;
      e.pinned = t.mode == TaskMode::kBroadcast || (!t.target.empty() && !IsRoleTarget(t.target));
      e.rt.resize(t.deliveries.size());
      dep.active.insert(t.seq);
      if (!t.idempotency_key.empty()) {
        idem_[IdemKey(t.tenant, t.deployment, t.idempotency_key)] = t.seq;
      }
      std::optional<int64_t> role_rev;
      if (t.target == "stable") role_rev = dep.routing.stable_revision;
      if (t.target == "canary") role_rev = dep.routing.canary_revision;
      if (t.target == "preview") role_rev = dep.routing.preview_revision;
      for (size_t i = 0; i < t.deliveries.size(); ++i) {
        Delivery& d = t.deliveries[i];
        DeliveryRt& r = e.rt[i];
        if (!e.pinned) {
          r.strict = role_rev.has_value();
          r.bound_rev = role_rev ? *role_rev
                                 : (d.revision != 0 ? d.revision : ChooseRevision(dep));
        }
        if (d.state == TaskState::kQueued) {
          Enqueue(e, static_cast<int>(i), /*front=*/false);
        } else if (d.state == TaskState::kAssigned) {
          Inst& in = GetInst(t.tenant, d.instance, &dep);
          absl::Duration left = d.lease_expires_at ? *d.lease_expires_at - now
                                                   : absl::ZeroDuration();
          r.mono_assigned = mono - (d.assigned_at ? now - *d.assigned_at : absl::ZeroDuration());
          r.lease_inst = &in;
          r.lease_timer = AddTimer(mono + left, {TimerKind::kLease, t.seq, static_cast<int>(i), 0});
          ++in.in_flight;
          in.leases.emplace(t.seq, static_cast<int>(i));
          ++dep.assigned;
        }
      }
    }
    loaded_ = true;
    if (fleet_complete_) ForgetWhatTheFleetLacks();
    return absl::OkStatus();
  }

  // Both the tasks (Load) and the whole fleet view (FleetViewComplete) are in, in either
  // order: what the tasks name but the fleet does not is gone. Deliveries pinned to a missing
  // instance fail, its leases end; tasks of a missing deployment are cancelled. Without this
  // they would wait for an instance that will never be named again.
  void FleetViewComplete() {
    fleet_complete_ = true;
    if (loaded_) ForgetWhatTheFleetLacks();
  }
  void ForgetWhatTheFleetLacks() {
    std::vector<std::pair<std::string, std::string>> deps, insts;
    for (const auto& [k, dep] : deps_) {
      if (!dep->declared) deps.emplace_back(dep->tenant, dep->name);
    }
    for (const auto& [tenant, name] : deps) {
      PALM_LOG(kWarning, "tasks: deployment ", name, " no longer exists; its tasks are cancelled");
      RemoveDeployment(tenant, name);
    }
    for (const auto& [k, in] : insts_) {
      if (!in->known) insts.emplace_back(in->tenant, in->id);
    }
    for (const auto& [tenant, id] : insts) RemoveInstance(tenant, id);
    MaybeRequestFlush();
  }

  // ---- Commit and timers -----------------------------------------------------------------
  void Serialize(int64_t seq) {
    auto it = tasks_.find(seq);
    if (it == tasks_.end()) return;
    Entry& e = it->second;
    if (!e.dirty) return;
    e.dirty = false;
    const Task& t = e.task;
    const bool split = Split(e);
    if (!e.in_batch) rows_.push_back(seq);
    e.in_batch = true;
    if (e.row_dirty) {
      e.row_dirty = false;
      store::TaskRow row{t.tenant,
                         t.id,
                         t.deployment,
                         t.seq,
                         std::string(model::ToString(t.state)),
                         t.idempotency_key,
                         nullptr,
                         ""};
      if (auto text = model::StoredText(t, /*inline_deliveries=*/!split); text.ok()) {
        row.doc_text = std::move(*text);
      } else {
        // The store stores it with U+FFFD and logs the row.
        row.doc = model::ToStored(t, /*inline_deliveries=*/!split);
      }
      if (e.row >= 0) {
        pending_.put_tasks[e.row] = std::move(row);
      } else {
        e.row = static_cast<int>(pending_.put_tasks.size());
        pending_.put_tasks.push_back(std::move(row));
      }
    }
    for (int idx : e.dirty_deliveries) {
      e.delivery_dirty[idx] = 0;
      const Delivery& d = t.deliveries[idx];
      store::DeliveryRow row{t.seq, idx, nullptr, ""};
      if (auto text = model::StoredDeliveryText(d); text.ok()) {
        row.doc_text = std::move(*text);
      } else {
        row.doc = model::ToStored(d);
      }
      auto [slot, fresh] =
          e.delivery_row.try_emplace(idx, static_cast<int>(pending_.put_deliveries.size()));
      if (fresh) {
        pending_.put_deliveries.push_back(std::move(row));
      } else {
        pending_.put_deliveries[slot->second] = std::move(row);
      }
    }
    e.dirty_deliveries.clear();
  }

  void Flush() {
    flush_requested_ = false;
    for (int64_t seq : dirty_) Serialize(seq);
    dirty_.clear();
    absl::Status commit = absl::OkStatus();
    if (!pending_.empty()) {
      if (events_) events_->Seal(&pending_);
      absl::Status st = store_.Apply(pending_);
      if (st.ok()) {
        // Keep the rows' capacity: the next batch is likely as big.
        if (events_) events_->Publish(pending_);
        std::vector<store::TaskRow> rows = std::move(pending_.put_tasks);
        rows.clear();
        pending_ = {};
        pending_.put_tasks = std::move(rows);
        for (int64_t seq : rows_) {
          auto it = tasks_.find(seq);
          if (it == tasks_.end()) continue;
          it->second.row = -1;
          it->second.in_batch = false;
          it->second.delivery_row.clear();
        }
        rows_.clear();
        TrimFinished();
      } else {
        // The batch stays pending (the next Flush retries it); whoever waits on it is told.
        PALM_LOG(kError, "task store write failed (", pending_.put_tasks.size(), " tasks and ",
                 pending_.put_deliveries.size(), " deliveries kept for retry): ", st.ToString());
        commit = st;
      }
    }
    std::vector<Held> held;
    held.swap(held_);
    held_.reserve(held.size());
    std::vector<std::pair<std::string, std::string>> idle;
    if (commit.ok()) idle.swap(idle_);
    for (Held& h : held) h.run(h.needs_commit ? commit : absl::OkStatus());
    for (const auto& [tenant, id] : idle) {
      Inst* in = FindInst(tenant, id);
      if (idle_cb_ && in && in->in_flight == 0) idle_cb_(tenant, id);
    }
    // Callbacks may have changed things; the failed batch waits for the next change.
    if (!held_.empty() || !dirty_.empty()) MaybeRequestFlush();
  }

  void TrimFinished() {
    while (finished_order_.size() > options_.finished_cache) {
      int64_t seq = finished_order_.front();
      finished_order_.pop_front();
      auto it = tasks_.find(seq);
      if (it == tasks_.end()) continue;
      Entry& e = it->second;
      if (Unflushed(e) || !e.awaits.empty()) {  // cannot happen after a commit; keep it safe
        finished_order_.push_back(seq);
        break;
      }
      const Task& t = e.task;
      if (!t.idempotency_key.empty()) {
        auto k = idem_.find(IdemKey(t.tenant, t.deployment, t.idempotency_key));
        if (k != idem_.end() && k->second == seq) idem_.erase(k);
      }
      tasks_.erase(it);
    }
  }

  absl::Time NextDeadline() const {
    return timers_.empty() ? absl::InfiniteFuture() : timers_.begin()->first.first;
  }

  void Tick() {
    absl::Time mono = clock_.MonotonicNow();
    absl::Time now = clock_.Now();
    while (!timers_.empty() && timers_.begin()->first.first <= mono) {
      Timer timer = timers_.begin()->second;
      timers_.erase(timers_.begin());
      switch (timer.kind) {
        case TimerKind::kLease: {
          auto it = tasks_.find(timer.seq);
          if (it == tasks_.end()) break;
          Entry& e = it->second;
          if (!e.rt[timer.idx].lease_inst) break;
          // Already erased above: ReleaseLease's erase is then a no-op.
          ExpireLease(e, timer.idx, now, mono);
          break;
        }
        case TimerKind::kPoll: {
          auto it = polls_.find(timer.id);
          if (it == polls_.end()) break;
          Inst* in = it->second.inst;
          NextCallback done = std::move(it->second.done);
          polls_.erase(it);
          in->polls.erase(std::find(in->polls.begin(), in->polls.end(), timer.id));
          Rewait(*in);
          Hold(false, [done = std::move(done)](const absl::Status&) {
            done(std::optional<Json>());
          });
          break;
        }
        case TimerKind::kAwait: {
          auto it = awaits_.find(timer.id);
          if (it == awaits_.end()) break;
          AwaitRec rec = std::move(it->second);
          awaits_.erase(it);
          auto e = tasks_.find(rec.seq);
          bool unflushed = false;
          if (e != tasks_.end()) {
            auto& v = e->second.awaits;
            v.erase(std::remove(v.begin(), v.end(), timer.id), v.end());
            unflushed = Unflushed(e->second);
          }
          Hold(unflushed, [this, rec = std::move(rec)](const absl::Status& st) {
            if (!st.ok()) {
              return rec.done(ChangeNotDurable(st, absl::StrCat("the change to task ", rec.task_id)));
            }
            rec.done(Snapshot(rec.tenant, rec.task_id));
          });
          break;
        }
      }
    }
    MaybeRequestFlush();
  }

  // ---- Metrics ---------------------------------------------------------------------------
  WindowStats RevisionStats(const std::string& tenant, const std::string& deployment,
                            int64_t revision, absl::Duration window) const {
    const Dep* dep = FindDep(tenant, deployment);
    if (dep) {
      auto it = dep->metrics.find(revision);
      if (it != dep->metrics.end()) return it->second.Window(clock_.MonotonicNow(), window);
    }
    return RevisionMetrics().Window(clock_.MonotonicNow(), window);
  }

  QueueStats Queue(const std::string& tenant, const std::string& deployment) const {
    QueueStats s;
    const Dep* dep = FindDep(tenant, deployment);
    if (!dep) return s;
    s.queued = dep->queued;
    s.assigned = dep->assigned;
    for (const auto& [rev, set] : dep->waiting) s.waiting_agents += set.size();
    return s;
  }

  Json DeploymentTasks(const std::string& tenant, const std::string& deployment) const {
    QueueStats q = Queue(tenant, deployment);
    Json revisions = Json::object();
    if (const Dep* dep = FindDep(tenant, deployment)) {
      absl::Time mono = clock_.MonotonicNow();
      for (const auto& [rev, m] : dep->metrics) {
        revisions[std::to_string(rev)] = {
            {"window_60s", m.Window(mono, absl::Seconds(60)).ToJson()},
            {"window_300s", m.Window(mono, absl::Seconds(300)).ToJson()},
            {"totals", m.Totals()}};
      }
    }
    return Json{{"queued", q.queued},
                {"assigned", q.assigned},
                {"waiting_agents", q.waiting_agents},
                {"revisions", std::move(revisions)}};
  }
};

// ---- TaskEngine: forwards to Impl ---------------------------------------------------------

TaskEngine::TaskEngine(store::Store& store, const Clock& clock, EngineOptions options,
                       events::EventLog* events)
    : impl_(std::make_unique<Impl>(store, clock, options, events)) {}
TaskEngine::~TaskEngine() = default;

absl::Status TaskEngine::Load() { return impl_->Load(); }
void TaskEngine::FleetViewComplete() { impl_->FleetViewComplete(); }
void TaskEngine::SetFlushRequest(std::function<void()> request) {
  impl_->flush_request_ = std::move(request);
}
void TaskEngine::SetDeadlineChanged(std::function<void()> changed) {
  impl_->deadline_changed_ = std::move(changed);
}
void TaskEngine::SetIdleCallback(
    std::function<void(const std::string& tenant, const std::string& id)> cb) {
  impl_->idle_cb_ = std::move(cb);
}
void TaskEngine::SetDeployment(const std::string& tenant, const std::string& name,
                               RoutingTable routing) {
  impl_->SetDeployment(tenant, name, std::move(routing));
}
void TaskEngine::RemoveDeployment(const std::string& tenant, const std::string& name) {
  impl_->RemoveDeployment(tenant, name);
}
void TaskEngine::SetInstance(const std::string& tenant, const std::string& deployment,
                             const std::string& id, int64_t revision, bool routable) {
  impl_->SetInstance(tenant, deployment, id, revision, routable);
}
void TaskEngine::InstanceLost(const std::string& tenant, const std::string& id,
                              const std::string& reason) {
  impl_->InstanceLost(tenant, id, reason);
}
void TaskEngine::RemoveInstance(const std::string& tenant, const std::string& id) {
  impl_->RemoveInstance(tenant, id);
}
int64_t TaskEngine::InFlight(const std::string& tenant, const std::string& id) const {
  return impl_->InFlight(tenant, id);
}
void TaskEngine::Submit(const std::string& tenant, model::TaskRequest req,
                        std::function<void(absl::StatusOr<model::Task>, bool created)> done) {
  impl_->Submit(tenant, std::move(req), std::move(done));
}
absl::StatusOr<model::Task> TaskEngine::Get(const std::string& tenant, const std::string& id) {
  return impl_->Get(tenant, id);
}
void TaskEngine::Await(const std::string& tenant, const std::string& id, absl::Duration wait,
                       TaskCallback done) {
  impl_->Await(tenant, id, wait, std::move(done));
}
absl::StatusOr<std::vector<model::Task>> TaskEngine::List(const store::TaskQuery& q) {
  PALM_ASSIGN_OR_RETURN(auto rows, impl_->store_.ListTasks(q));
  std::vector<model::Task> out;
  out.reserve(rows.size());
  for (const auto& row : rows) {
    PALM_ASSIGN_OR_RETURN(auto t, model::TaskFromStored(row.doc));
    out.push_back(std::move(t));
  }
  return out;
}
void TaskEngine::Cancel(const std::string& tenant, const std::string& id, TaskCallback done) {
  impl_->Cancel(tenant, id, std::move(done));
}
uint64_t TaskEngine::Next(const std::string& tenant, const std::string& id,
                          absl::Duration wait, NextCallback done) {
  return impl_->Next(tenant, id, wait, std::move(done));
}
void TaskEngine::CancelPoll(uint64_t poll) { impl_->CancelPoll(poll); }
void TaskEngine::Complete(const std::string& tenant, const std::string& id,
                          const std::string& task_id, model::TaskResult result,
                          ResultCallback done) {
  impl_->Complete(tenant, id, task_id, std::move(result), std::move(done));
}
void TaskEngine::Flush() { impl_->Flush(); }
bool TaskEngine::HasPending() const { return impl_->HasPending(); }
absl::Time TaskEngine::NextDeadline() const { return impl_->NextDeadline(); }
void TaskEngine::Tick() { impl_->Tick(); }
absl::Status TaskEngine::PruneRetention() {
  return impl_->store_.PruneFinishedTasks(impl_->options_.retention).status();
}
WindowStats TaskEngine::RevisionStats(const std::string& tenant, const std::string& deployment,
                                      int64_t revision, absl::Duration window) const {
  return impl_->RevisionStats(tenant, deployment, revision, window);
}
QueueStats TaskEngine::Queue(const std::string& tenant, const std::string& deployment) const {
  return impl_->Queue(tenant, deployment);
}
model::Json TaskEngine::DeploymentTasks(const std::string& tenant,
                                        const std::string& deployment) const {
  return impl_->DeploymentTasks(tenant, deployment);
}

}  // namespace palm::tasks
