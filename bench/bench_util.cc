#include "bench/bench_util.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/time/time.h"

extern char** environ;

namespace palm::bench {

double CpuSeconds(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return 0;
  std::string rest = line.substr(line.rfind(')') + 2);
  std::vector<std::string> fields;
  size_t pos = 0;
  while (pos < rest.size()) {
    size_t sp = rest.find(' ', pos);
    if (sp == std::string::npos) sp = rest.size();
    fields.push_back(rest.substr(pos, sp - pos));
    pos = sp + 1;
  }
  // Fields after ')' start at field 3 (state): utime is field 14, stime 15.
  double ticks = std::stod(fields[14 - 3]) + std::stod(fields[15 - 3]);
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

bool WaitReady(http::Client& c, const std::string& name, int n, double timeout_s) {
  auto t0 = Clock::now();
  while (Seconds(Clock::now() - t0) < timeout_s) {
    Json d = GetJson(c, "/v1/deployments/" + name);
    if (d.is_object() && d["status"]["replicas"]["ready"] == n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

Json GetJson(http::Client& c, const std::string& target) {
  auto r = c.Do("GET", target);
  return r.ok() ? Json::parse(r->body, nullptr, false) : Json();
}

BenchDaemon::BenchDaemon(const std::string& palm, const std::string& dir) {
  std::vector<std::string> args = {palm, "daemon", "start", "--foreground", "--listen",
                                   "127.0.0.1:0", "--data-dir", dir + "/data"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  std::string out = dir + "/daemon.out";
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  if (posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ) != 0) {
    std::fprintf(stderr, "cannot start %s\n", palm.c_str());
    std::exit(1);
  }
  posix_spawn_file_actions_destroy(&fa);
  for (int i = 0; i < 1000 && endpoint_.empty(); ++i) {
    std::ifstream(dir + "/data/palmd.endpoint") >> endpoint_;
    if (endpoint_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::ifstream(dir + "/data/admin.token") >> token_;
  client_ = std::make_unique<http::Client>(endpoint_, token_, absl::Seconds(60));
  for (int i = 0; i < 1000; ++i) {
    auto r = client_->Do("GET", "/readyz");
    if (r.ok() && r->status == 200) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::fprintf(stderr, "the daemon did not become ready; see %s\n", out.c_str());
  std::exit(1);
}

BenchDaemon::~BenchDaemon() {
  Stop();
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

int BenchDaemon::port() const { return std::atoi(endpoint_.substr(endpoint_.rfind(':') + 1).c_str()); }

void BenchDaemon::Stop() {
  if (pid_ <= 0) return;
  client_->Do("POST", "/v1/daemon/stop", R"({"all": true})");
  int status = 0;
  for (int i = 0; i < 6000; ++i) {
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

BenchDir::BenchDir() {
  char tmpl[] = "/tmp/palm-bench-XXXXXX";
  path_ = mkdtemp(tmpl);
}

BenchDir::~BenchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace palm::bench
