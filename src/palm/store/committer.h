// Committer: one owner's pending WriteBatch and the rule for a commit that fails.
//
// Changes are added to pending(); Commit() applies everything pending in one transaction.
// A batch whose commit fails is KEPT: later changes are appended to it and the next Commit
// retries the whole of it, so memory (which already made the changes) and the store agree
// again as soon as the store recovers, and nothing is half-applied: either all of a batch is
// durable or none of it yet. Side effects that must follow durability (signals, spawns,
// publishing events) belong after a Commit that returned OK. The task engine's group commit
// follows the same rule (tasks/engine.h); the two are meant to become one committer.
//
// Deletes go through WriteBatch::DeleteInstance / DeleteDeployment / DeleteRevision so that a
// kept batch still means what its changes meant in order (see store.h).
// Thread-safety: none; one owner on the daemon's event loop.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "palm/store/store.h"

namespace palm::store {

struct CommitHooks {
  // Right before each attempt (events::EventLog::Seal: seqs in commit order, again on retry).
  std::function<void(WriteBatch*)> seal;
  // After a successful attempt, with what became durable (events::EventLog::Publish).
  std::function<void(const WriteBatch&)> published;
};

class Committer {
 public:
  // `owner` names the writer in logs ("supervisor").
  Committer(Store& store, std::string owner, CommitHooks hooks = {});

  WriteBatch& pending() { return pending_; }
  const WriteBatch& pending() const { return pending_; }

  // Applies everything pending. OK: durable, published, nothing pending. Otherwise
  // kUnavailable (STORE_UNAVAILABLE): nothing of it is durable, all of it stays pending and
  // the next Commit retries it. The first failure and the recovery are logged (not every
  // retry).
  absl::Status Commit();

  // True while a failed batch waits for its retry.
  bool retrying() const { return failures_ > 0; }
  // Failed attempts since the last success.
  int64_t failures() const { return failures_; }

 private:
  Store& store_;
  std::string owner_;
  CommitHooks hooks_;
  WriteBatch pending_;
  int64_t failures_ = 0;
};

// What a caller whose change did not commit is told: kUnavailable STORE_UNAVAILABLE saying
// that `what` is applied in the daemon but not yet durable and is being retried (true under
// the Committer's rule), with the store's error as the cause.
absl::Status NotYetDurable(const absl::Status& cause, std::string_view what,
                           std::string_view hint = {});

}  // namespace palm::store
