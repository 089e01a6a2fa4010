// Shared plumbing of the benchmarks: a real daemon on a free port in a temp data dir,
// timing and percentiles, JSON GETs. Not a test helper: failures print and exit.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "palm/http/client.h"

namespace palm::bench {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d);
// The p-quantile (0..1) of `v`, nearest rank; 0 for an empty set.
double Percentile(std::vector<double> v, double p);
// GET `target` as JSON; null on any failure.
Json GetJson(http::Client& c, const std::string& target);
// utime + stime of a process (/proc/<pid>/stat), in seconds; 0 once it is gone.
double CpuSeconds(pid_t pid);
// Polls GET /v1/deployments/{name} until status.replicas.ready == n; false after timeout_s.
bool WaitReady(http::Client& c, const std::string& name, int n, double timeout_s);

// `palm daemon start --foreground --listen 127.0.0.1:0 --data-dir DIR/data`, its output in
// DIR/daemon.out; returns once /readyz answers. Stop() asks it to stop with all agents.
class BenchDaemon {
 public:
  BenchDaemon(const std::string& palm, const std::string& dir);
  ~BenchDaemon();
  pid_t pid() const { return pid_; }
  const std::string& endpoint() const { return endpoint_; }
  const std::string& token() const { return token_; }
  int port() const;
  http::Client& client() { return *client_; }
  void Stop();

 private:
  pid_t pid_ = -1;
  std::string endpoint_, token_;
  std::unique_ptr<http::Client> client_;
};

// A fresh temp dir, removed by the destructor.
class BenchDir {
 public:
  BenchDir();
  ~BenchDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace palm::bench
