// Integration-test harness: a real `palm daemon` process on a free loopback port with a temp
// data dir, a client holding its admin token, and helpers to wait on conditions with a
// deadline (never a fixed sleep) and inspect real processes.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "palm/http/client.h"

namespace palm::testing {

using Json = nlohmann::json;

// Path of the palm binary under test ($PALM_BIN, set by ctest).
std::string PalmBin();
// The source tree ($PALM_SOURCE_DIR), for examples/.
std::string SourceDir();

// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
bool WaitFor(const std::function<bool()>& cond, absl::Duration timeout = absl::Seconds(20));

// True when `pid` exists and is not a zombie.
bool ProcessAlive(int pid);

// A fresh temp dir, removed (with everything below it) by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class Daemon {
 public:
  explicit Daemon(std::string data_dir) : data_dir_(std::move(data_dir)) {}
  ~Daemon();
  // Starts `palm daemon start --foreground --listen 127.0.0.1:0` (plus `extra` args) and
  // waits for /healthz. The daemon's output goes to <data-dir>/daemon.out.
  void Start(const std::vector<std::string>& extra = {});
  void Kill9();
  // SIGTERM and wait for exit.
  void Terminate();
  // Waits for the process to exit (after an API stop); returns its exit code.
  int Wait(absl::Duration timeout = absl::Seconds(30));
  bool running() const { return pid_ > 0; }
  // When it runs: stops the daemon and its agents (POST /v1/daemon/stop {"all": true}) and
  // waits for it to exit, so a test leaves no process behind. What fixtures' TearDown call.
  void StopWithAgents();

  const std::string& endpoint() const { return endpoint_; }
  std::string token() const;
  const std::string& data_dir() const { return data_dir_; }

  // Calls the API with the admin token; body JSON (or raw) -> {status, parsed body}.
  struct Reply {
    unsigned status = 0;
    Json body;
    std::string raw;
  };
  Reply Call(const std::string& method, const std::string& target, const Json& body = nullptr);
  Reply CallRaw(const std::string& method, const std::string& target, const std::string& body,
                const std::string& token);

  // Opens GET `target` as a Server-Sent Events stream (raw socket, so Last-Event-ID can be
  // sent), collects the events' data until `done(events)` holds or `timeout` passes, then
  // closes the connection.
  std::vector<Json> ReadSse(const std::string& target, const std::string& last_event_id,
                            const std::function<bool(const std::vector<Json>&)>& done,
                            absl::Duration timeout = absl::Seconds(20));

  // Registers a spec and creates a deployment; fails the test on error.
  void RegisterSpec(const Json& spec);
  void CreateDeployment(const Json& d);
  // Instances of a deployment (GET /v1/instances?deployment=).
  std::vector<Json> Instances(const std::string& deployment);
  // Waits until `deployment` has exactly `n` instances, all Running with a live pid.
  bool WaitRunning(const std::string& deployment, size_t n,
                   absl::Duration timeout = absl::Seconds(30));

 private:
  std::string data_dir_;
  std::string endpoint_;
  pid_t pid_ = -1;
};

}  // namespace palm::testing
