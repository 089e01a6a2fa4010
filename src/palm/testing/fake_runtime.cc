#include "palm/testing/fake_runtime.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "palm/base/error.h"

namespace palm::testing {

using runtime::ExitStatus;
using runtime::ProcessId;
using runtime::SpawnRequest;

absl::StatusOr<runtime::Spawned> FakeRuntime::Spawn(const SpawnRequest& req) {
  SpawnCall call{req, absl::OkStatus(), {}};
  if (req.argv.empty()) {
    call.result = InvalidArgument(absl::StrCat("instance ", req.instance_id, ": empty command"));
  } else if (running_.contains(req.instance_id)) {
    call.result = Error(absl::StatusCode::kAlreadyExists, "INSTANCE_RUNNING",
                        absl::StrCat("instance ", req.instance_id, " already has a process"));
  } else if (!fail_next_.empty()) {
    call.result = std::move(fail_next_.front());
    fail_next_.pop_front();
  } else if (auto it = fail_for_.find(req.argv[0]); it != fail_for_.end()) {
    call.result = it->second;
  }
  if (!call.result.ok()) {
    absl::Status result = call.result;
    spawns_.push_back(std::move(call));
    return result;
  }
  call.pid = ProcessId{next_pid_++, next_start_time_++, boot_id_};
  alive_[call.pid.pid] = call.pid.start_time;
  running_[req.instance_id] = {call.pid, req.log_path};
  runtime::Spawned spawned;
  static_cast<ProcessId&>(spawned) = call.pid;
  const runtime::Limits& l = req.limits;
  if (l.memory_mb || l.max_procs || l.max_open_files || l.cpu) {
    spawned.enforced_by = mechanism_;
    spawned.enforced = l;
    if (mechanism_ == runtime::LimitsMechanism::kRlimit) spawned.enforced.cpu.reset();
  }
  spawns_.push_back(std::move(call));
  return spawned;
}

absl::Status FakeRuntime::Adopt(const std::string& instance_id, const ProcessId& pid,
                                const std::string& log_path) {
  absl::Status result;
  const auto alive = alive_.find(pid.pid);
  if (running_.contains(instance_id)) {
    result = Error(absl::StatusCode::kAlreadyExists, "INSTANCE_RUNNING",
                   absl::StrCat("instance ", instance_id, " already has a process"));
  } else if (alive == alive_.end()) {
    result = NotFound("PROCESS_GONE",
                      absl::StrCat("instance ", instance_id, ": process ", pid.pid, " is gone"));
  } else if (alive->second && *alive->second != pid.start_time) {
    result = NotFound("PROCESS_GONE", absl::StrCat("instance ", instance_id, ": process ", pid.pid,
                                                   " is now another process"));
  } else if (!pid.boot_id.empty() && pid.boot_id != boot_id_) {
    result = NotFound("PROCESS_GONE", absl::StrCat("instance ", instance_id, ": process ", pid.pid,
                                                   " was started before a reboot"));
  } else {
    running_[instance_id] = {pid, log_path};
  }
  adopts_.push_back({instance_id, pid, log_path, result});
  return result;
}

absl::Status FakeRuntime::Signal(const std::string& instance_id, int sig) {
  if (!running_.contains(instance_id)) {
    return NotFound("INSTANCE_NOT_RUNNING",
                    absl::StrCat("instance ", instance_id, " has no watched process"));
  }
  signals_.push_back({instance_id, sig});
  return absl::OkStatus();
}

void FakeRuntime::Forget(const std::string& instance_id) {
  forgotten_.push_back(instance_id);
  running_.erase(instance_id);
}

void FakeRuntime::FailNextSpawn(absl::Status status) { fail_next_.push_back(std::move(status)); }

void FakeRuntime::FailSpawnsFor(const std::string& argv0, absl::Status status) {
  fail_for_[argv0] = std::move(status);
}

void FakeRuntime::ClearSpawnFailures() {
  fail_next_.clear();
  fail_for_.clear();
}

void FakeRuntime::SetAlive(const std::set<int>& pids) {
  alive_.clear();
  for (int pid : pids) alive_[pid] = std::nullopt;
}

void FakeRuntime::AddAlive(const ProcessId& pid) { alive_[pid.pid] = pid.start_time; }

void FakeRuntime::MarkGone(int pid) { alive_.erase(pid); }

void FakeRuntime::Exit(const std::string& instance_id, ExitStatus status) {
  const auto it = running_.find(instance_id);
  if (it == running_.end()) {
    std::fprintf(stderr, "FakeRuntime::Exit(\"%s\"): instance is not running\n",
                 instance_id.c_str());
    std::abort();
  }
  alive_.erase(it->second.pid.pid);
  running_.erase(it);
  if (exit_cb_) {
    const ExitCallback cb = exit_cb_;  // the callback may replace itself
    cb(instance_id, status);
  }
}

bool FakeRuntime::IsRunning(const std::string& instance_id) const {
  return running_.contains(instance_id);
}

std::optional<ProcessId> FakeRuntime::ProcessOf(const std::string& instance_id) const {
  const auto it = running_.find(instance_id);
  if (it == running_.end()) return std::nullopt;
  return it->second.pid;
}

std::vector<std::string> FakeRuntime::Running() const {
  std::vector<std::string> ids;
  ids.reserve(running_.size());
  for (const auto& [id, r] : running_) ids.push_back(id);
  return ids;
}

std::vector<SpawnRequest> FakeRuntime::spawned() const {
  std::vector<SpawnRequest> out;
  for (const SpawnCall& c : spawns_) {
    if (c.result.ok()) out.push_back(c.request);
  }
  return out;
}

std::vector<int> FakeRuntime::SignalsFor(const std::string& instance_id) const {
  std::vector<int> out;
  for (const SignalCall& s : signals_) {
    if (s.instance_id == instance_id) out.push_back(s.sig);
  }
  return out;
}

void FakeRuntime::ClearCalls() {
  spawns_.clear();
  signals_.clear();
  adopts_.clear();
  forgotten_.clear();
}

std::vector<runtime::FoundProcess> FakeRuntime::FindByEnvKey(const std::string& key) {
  std::vector<runtime::FoundProcess> out;
  for (const auto& p : found_) {
    if (p.env.count(key) && alive_.count(p.pid.pid)) out.push_back(p);
  }
  return out;
}

void FakeRuntime::AddFound(runtime::FoundProcess p) {
  AddAlive(p.pid);
  found_.push_back(std::move(p));
}

std::optional<runtime::Usage> FakeRuntime::UsageOf(const std::string& instance_id) {
  const auto it = usage_.find(instance_id);
  if (it == usage_.end() || !running_.contains(instance_id)) return std::nullopt;
  return it->second;
}

}  // namespace palm::testing
