#include "palm/store/committer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "palm/base/error.h"
#include "palm/base/log.h"

namespace palm::store {

Committer::Committer(Store& store, std::string owner, CommitHooks hooks)
    : store_(store), owner_(std::move(owner)), hooks_(std::move(hooks)) {}

absl::Status Committer::Commit() {
  if (pending_.empty()) return absl::OkStatus();
  if (hooks_.seal) hooks_.seal(&pending_);
  absl::Status st = store_.Apply(pending_);
  if (!st.ok()) {
    if (++failures_ == 1 || failures_ % 100 == 0) {
      PALM_LOG(kError, owner_, ": store write failed (attempt ", failures_,
               "); the batch is kept and retried with later changes: ", st.ToString());
    }
    return st;
  }
  if (failures_ > 0) {
    PALM_LOG(kWarning, owner_, ": store write succeeded after ", failures_,
             " failed attempts; the kept changes are durable");
    failures_ = 0;
  }
  WriteBatch done = std::exchange(pending_, WriteBatch{});
  if (hooks_.published) hooks_.published(done);
  return absl::OkStatus();
}

absl::Status NotYetDurable(const absl::Status& cause, std::string_view what,
                           std::string_view hint) {
  return Error(absl::StatusCode::kUnavailable, "STORE_UNAVAILABLE",
               absl::StrCat(std::string(what), " is not yet durable: the store could not commit (",
                            cause.message(),
                            "); the change is kept in the daemon and the write is retried"),
               hint.empty() ? std::string_view("check the data dir's disk; read the object back "
                                               "to see its state (the change is lost only if "
                                               "the daemon stops before the store recovers)")
                            : hint);
}

}  // namespace palm::store
