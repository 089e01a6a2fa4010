// Test helpers shared by the runtime's tests (process_runtime_test, cgroup_test): reading
// files and /proc, waiting for a condition with a deadline, and a fixture base that owns a
// runtime on its own io_context, records the exits it reports and remembers what a test
// spawned so the fixture can kill it. Header-only; test code only.
#pragma once

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "gtest/gtest.h"
#include "palm/runtime/runtime.h"

namespace palm::runtime::testing {

// The whole file, or "" when it cannot be read.
inline std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// True while `pid` exists and is not a zombie.
inline bool Running(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  const size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

// Waits for a condition that does not depend on an io_context (e.g. another process);
// false when `deadline` passed first.
inline bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds deadline) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

struct Exit {
  std::string instance_id;
  ExitStatus status;
};

class RuntimeFixture : public ::testing::Test {
 protected:
  explicit RuntimeFixture(std::chrono::milliseconds deadline) : deadline_(deadline) {}

  // Makes `rt` the fixture's runtime, its exits recorded in exits_.
  void Use(std::unique_ptr<Runtime> rt) {
    rt_ = std::move(rt);
    rt_->SetExitCallback([this](const std::string& id, ExitStatus st) {
      exits_.push_back({id, st});
    });
  }

  // A request for `argv` with a minimal PATH, its log at <log_dir>/<id>.log.
  static SpawnRequest MakeRequest(const std::string& id, std::vector<std::string> argv,
                                  const std::filesystem::path& log_dir) {
    SpawnRequest req;
    req.instance_id = id;
    req.argv = std::move(argv);
    req.env = {{"PATH", "/usr/bin:/bin"}};
    req.log_path = (log_dir / (id + ".log")).string();
    return req;
  }

  // Spawns through the runtime and remembers the pid for the fixture's cleanup.
  absl::StatusOr<Spawned> Spawn(const SpawnRequest& req) {
    absl::StatusOr<Spawned> pid = rt_->Spawn(req);
    if (pid.ok()) to_kill_.push_back(pid->pid);
    return pid;
  }

  // Runs the loop until `pred` holds or the deadline passes.
  bool RunUntil(const std::function<bool()>& pred) {
    const auto end = std::chrono::steady_clock::now() + deadline_;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > end) return false;
      io_.restart();
      io_.run_for(std::chrono::milliseconds(10));
    }
    return true;
  }
  bool RunUntilExits(size_t n) {
    return RunUntil([&] { return exits_.size() >= n; });
  }

  const std::chrono::milliseconds deadline_;
  boost::asio::io_context io_;
  std::unique_ptr<Runtime> rt_;
  std::vector<Exit> exits_;
  std::vector<int> to_kill_;
};

}  // namespace palm::runtime::testing
