// FaultyStore: a Store that forwards to a real one (SQLite in a temp dir) and fails Apply on
// demand, for tests of what a failed commit does. Reads always pass through.
//
//   testing::FaultyStore store(*sqlite);
//   store.FailNextApplies(2);     // the next two Apply calls fail, nothing written
//   store.SetFailing(true);       // every Apply fails until SetFailing(false)
//   store.OnApply([&](const store::WriteBatch& b) { ... });  // sees each batch that commits
//
// Header-only. Thread-safety: none (as Store).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "palm/store/store.h"

namespace palm::testing {

class FaultyStore final : public store::Store {
 public:
  explicit FaultyStore(store::Store& inner) : inner_(inner) {}

  void FailNextApplies(int n) { fail_next_ = n; }
  void SetFailing(bool failing) { failing_ = failing; }
  void OnApply(std::function<void(const store::WriteBatch&)> f) { on_apply_ = std::move(f); }
  int failed_applies() const { return failed_; }
  int applies() const { return applied_; }

  absl::Status Apply(const store::WriteBatch& batch) override {
    if (failing_ || fail_next_ > 0) {
      if (fail_next_ > 0) --fail_next_;
      ++failed_;
      return absl::UnavailableError("palm.db: disk I/O error (injected by FaultyStore)");
    }
    absl::Status st = inner_.Apply(batch);
    if (st.ok()) {
      ++applied_;
      if (on_apply_) on_apply_(batch);
    }
    return st;
  }

  absl::StatusOr<std::vector<store::SpecRow>> ListSpecs() override { return inner_.ListSpecs(); }
  absl::StatusOr<std::vector<store::DeploymentRow>> ListDeployments() override {
    return inner_.ListDeployments();
  }
  absl::StatusOr<std::vector<store::InstanceRow>> ListInstances() override {
    return inner_.ListInstances();
  }
  absl::StatusOr<std::vector<store::RevisionRow>> ListRevisions() override {
    return inner_.ListRevisions();
  }
  absl::StatusOr<std::vector<store::TokenRow>> ListTokens() override {
    return inner_.ListTokens();
  }
  absl::StatusOr<std::vector<store::EventRow>> ListEvents(int64_t after_seq, size_t limit,
                                                          const std::string& tenant,
                                                          const std::string& deployment,
                                                          bool descending) override {
    return inner_.ListEvents(after_seq, limit, tenant, deployment, descending);
  }
  absl::StatusOr<int64_t> LastEventSeq() override { return inner_.LastEventSeq(); }
  absl::StatusOr<std::vector<store::TaskRow>> ListTasks(const store::TaskQuery& q) override {
    return inner_.ListTasks(q);
  }
  absl::StatusOr<std::optional<store::TaskRow>> GetTask(const std::string& tenant,
                                                        const std::string& id) override {
    return inner_.GetTask(tenant, id);
  }
  absl::StatusOr<std::optional<store::TaskRow>> FindTaskByIdempotencyKey(
      const std::string& tenant, const std::string& deployment, const std::string& key) override {
    return inner_.FindTaskByIdempotencyKey(tenant, deployment, key);
  }
  absl::StatusOr<std::vector<store::TaskRow>> ListActiveTasks() override {
    return inner_.ListActiveTasks();
  }
  absl::StatusOr<int64_t> LastTaskSeq() override { return inner_.LastTaskSeq(); }
  absl::StatusOr<int64_t> PruneFinishedTasks(int64_t keep) override {
    return inner_.PruneFinishedTasks(keep);
  }
  absl::StatusOr<std::optional<std::string>> GetMeta(const std::string& key) override {
    return inner_.GetMeta(key);
  }
  absl::Status PutMeta(const std::string& key, const std::string& value) override {
    return inner_.PutMeta(key, value);
  }
  bool Healthy() override { return !failing_ && inner_.Healthy(); }
  int SchemaVersion() override { return inner_.SchemaVersion(); }

 private:
  store::Store& inner_;
  int fail_next_ = 0;
  bool failing_ = false;
  int failed_ = 0;
  int applied_ = 0;
  std::function<void(const store::WriteBatch&)> on_apply_;
};

}  // namespace palm::testing
