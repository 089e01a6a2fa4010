// FakeRuntime: a Runtime with no processes, for unit tests of reconcilers. It records every
// call, hands out fake pids (1000, 1001, ...) and lets the test script what the OS would do:
// spawn failures, which pids are alive for Adopt, and process exits.
//
//   palm::testing::FakeRuntime rt;
//   rt.FailSpawnsFor("broken-agent", absl::NotFoundError("command not found"));
//   reconciler.Reconcile(key);                         // spawns through `rt`
//   ASSERT_EQ(rt.spawns().size(), 2);
//   rt.Exit("buyer-001", {.code = 1});                 // exit callback runs right now
//   EXPECT_THAT(rt.signals(), ElementsAre(FakeRuntime::SignalCall{"buyer-002", SIGTERM}));
//
// Differences from the real runtime a test may rely on: exits happen only when the test
// calls Exit() (signals are recorded, never delivered), and Exit() runs the callback
// synchronously. Like the real one, it refuses a second Spawn/Adopt of a running instance
// (kAlreadyExists) and unwatches an instance before its exit callback runs.
//
// Thread-safety: none; use it from the test's thread, as the real runtime from its loop.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "palm/runtime/runtime.h"

namespace palm::testing {

class FakeRuntime final : public runtime::Runtime {
 public:
  static constexpr int kFirstPid = 1000;
  static constexpr char kBootId[] = "fake-boot-0";

  struct SpawnCall {
    runtime::SpawnRequest request;
    absl::Status result;     // OK, or the scripted failure it returned
    runtime::ProcessId pid;  // {0, 0} when it failed
  };
  struct SignalCall {
    std::string instance_id;
    int sig = 0;
    bool operator==(const SignalCall&) const = default;
  };
  struct AdoptCall {
    std::string instance_id;
    runtime::ProcessId pid;
    std::string log_path;
    absl::Status result;
  };

  FakeRuntime() = default;
  FakeRuntime(const FakeRuntime&) = delete;
  FakeRuntime& operator=(const FakeRuntime&) = delete;

  // runtime::Runtime.
  void SetExitCallback(ExitCallback cb) override { exit_cb_ = std::move(cb); }
  // Returns the scripted failure if any (FailNextSpawn first, then FailSpawnsFor), else
  // assigns the next fake pid (boot id kBootId), marks it alive and running; the request's
  // limits are reported as enforced by SetLimitsMechanism's mechanism (default
  // "rlimit" when there are limits, else "none"). kInvalidArgument for an empty argv;
  // kAlreadyExists when the instance is running. Every call is recorded.
  absl::StatusOr<runtime::Spawned> Spawn(const runtime::SpawnRequest& req) override;
  // OK (and running) when the pid is alive with a matching start time (see SetAlive) and
  // its boot id is empty or the fake's (SetBootId); kNotFound otherwise. kAlreadyExists
  // when the instance is running. Recorded.
  absl::Status Adopt(const std::string& instance_id, const runtime::ProcessId& pid,
                     const std::string& log_path) override;
  // Records the signal; kNotFound (and not recorded) when the instance is not running.
  absl::Status Signal(const std::string& instance_id, int sig) override;
  // Stops watching; the process stays alive (adoptable again), as with the real runtime.
  void Forget(const std::string& instance_id) override;
  size_t Watched() const override { return running_.size(); }
  // The processes given to AddFound that have `key` in their environment.
  std::vector<runtime::FoundProcess> FindByEnvKey(const std::string& key) override;
  // The usage given to SetUsage for a running instance, else nullopt.
  std::optional<runtime::Usage> UsageOf(const std::string& instance_id) override;

  // --- Scripting ---
  // The next Spawn (whatever its command) fails with `status`. Queues: two calls fail the
  // next two spawns.
  void FailNextSpawn(absl::Status status);
  // Every Spawn whose argv[0] is `argv0` fails with `status` until ClearSpawnFailures().
  void FailSpawnsFor(const std::string& argv0, absl::Status status);
  void ClearSpawnFailures();

  // Replaces the set of live pids that Adopt accepts, with any start time.
  void SetAlive(const std::set<int>& pids);
  // Adds one live process that Adopt accepts only with this exact start time.
  void AddAlive(const runtime::ProcessId& pid);
  // A live process FindByEnvKey reports (and Adopt accepts with its exact start time):
  // one a crashed daemon started but never recorded.
  void AddFound(runtime::FoundProcess p);
  // `pid` no longer exists: Adopt fails for it. Does not run any exit callback (use Exit).
  void MarkGone(int pid);
  // The boot id of this "machine" (spawned pids carry it; Adopt refuses another one).
  void SetBootId(std::string boot_id) { boot_id_ = std::move(boot_id); }
  // Spawns with limits report this mechanism from now on (kNone: "none" even with limits).
  void SetLimitsMechanism(runtime::LimitsMechanism m) { mechanism_ = m; }
  // What UsageOf reports for the instance while it runs.
  void SetUsage(const std::string& instance_id, runtime::Usage usage) {
    usage_[instance_id] = usage;
  }

  // The instance's process exits with `status`: it is unwatched, its pid is gone, and the
  // exit callback runs before Exit returns. Aborts the test binary when the instance is not
  // running (a broken test, not a scenario).
  void Exit(const std::string& instance_id, runtime::ExitStatus status);

  // --- Inspection ---
  bool IsRunning(const std::string& instance_id) const;
  // The running instance's process, or nullopt.
  std::optional<runtime::ProcessId> ProcessOf(const std::string& instance_id) const;
  // Ids of running instances, sorted.
  std::vector<std::string> Running() const;
  const std::vector<SpawnCall>& spawns() const { return spawns_; }
  // Only successful spawns' requests, in order: the common assertion.
  std::vector<runtime::SpawnRequest> spawned() const;
  const std::vector<SignalCall>& signals() const { return signals_; }
  // Signals sent to one instance, in order.
  std::vector<int> SignalsFor(const std::string& instance_id) const;
  const std::vector<AdoptCall>& adopts() const { return adopts_; }
  // Forget() calls, in order.
  const std::vector<std::string>& forgotten() const { return forgotten_; }
  // Forgets all recorded calls (scripting and running state are kept).
  void ClearCalls();

 private:
  struct RunningProcess {
    runtime::ProcessId pid;
    std::string log_path;
  };

  ExitCallback exit_cb_;
  int next_pid_ = kFirstPid;
  uint64_t next_start_time_ = 500'000;
  std::deque<absl::Status> fail_next_;
  std::map<std::string, absl::Status> fail_for_;
  std::map<int, std::optional<uint64_t>> alive_;  // pid -> required start time, if any
  std::map<std::string, RunningProcess> running_;
  std::vector<SpawnCall> spawns_;
  std::vector<SignalCall> signals_;
  std::vector<AdoptCall> adopts_;
  std::vector<std::string> forgotten_;
  std::vector<runtime::FoundProcess> found_;
  std::string boot_id_ = kBootId;
  runtime::LimitsMechanism mechanism_ = runtime::LimitsMechanism::kRlimit;
  std::map<std::string, runtime::Usage> usage_;
};

}  // namespace palm::testing
