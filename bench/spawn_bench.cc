// Foundation benchmark (issue #2), all in one run on the same machine:
//  (a) `deploy --replicas N` of /bin/sleep until N are Running, against a raw posix_spawn
//      loop of the same N processes (the floor);
//  (b) daemon RSS with N instances minus its idle RSS;
//  (c) crash-to-respawn latency with zero backoff (kill -9 -> the new process exists as
//      a child of the daemon), median and p90 over M crashes.
// Usage: spawn_bench PATH/TO/palm [N=1000] [M=50]
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "bench/bench_util.h"
#include "palm/http/client.h"

extern char** environ;

namespace {

using palm::bench::Clock;
using palm::bench::GetJson;
using palm::bench::Json;
using palm::bench::Percentile;
using palm::bench::Seconds;

long RssKiB(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  long value = 0;
  while (f >> key) {
    if (key == "VmRSS:") {
      f >> value;
      return value;
    }
    std::getline(f, key);
  }
  return -1;
}

// The floor: N plain posix_spawns of /bin/sleep, stdin /dev/null and output to a file each,
// and nothing else (no process group, no bookkeeping).
double RawSpawnLoop(int n, const std::string& dir) {
  std::vector<pid_t> pids;
  pids.reserve(n);
  auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    std::string log = absl::StrCat(dir, "/raw-", i, ".log");
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0640);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    char* argv[] = {const_cast<char*>("/bin/sleep"), const_cast<char*>("1000000"), nullptr};
    pid_t pid;
    if (posix_spawn(&pid, "/bin/sleep", &fa, nullptr, argv, environ) == 0) pids.push_back(pid);
    posix_spawn_file_actions_destroy(&fa);
  }
  double s = Seconds(Clock::now() - t0);
  for (pid_t p : pids) ::kill(p, SIGKILL);
  for (pid_t p : pids) ::waitpid(p, nullptr, 0);
  return s;
}

// Pids of the children a thread of the daemon spawned.
std::set<int> Children(const std::string& path) {
  std::ifstream f(path);
  std::set<int> pids;
  int pid;
  while (f >> pid) pids.insert(pid);
  return pids;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PATH/TO/palm [N=1000] [M=50]\n", argv[0]);
    return 2;
  }
  std::string palm = argv[1];
  int n = argc > 2 ? std::atoi(argv[2]) : 1000;
  int m = argc > 3 ? std::atoi(argv[3]) : 50;
  palm::bench::BenchDir bench_dir;
  const std::string& dir = bench_dir.path();
  std::filesystem::create_directories(dir + "/raw");

  double raw_s = RawSpawnLoop(n, dir + "/raw");

  palm::bench::BenchDaemon bd(palm, dir);
  pid_t daemon = bd.pid();
  palm::http::Client& c = bd.client();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  long idle_rss = RssKiB(daemon);

  Json spec = {{"name", "sleeper"}, {"version", "1.0.0"}, {"command", {"/bin/sleep", "1000000"}},
               {"stop", {{"signal", "SIGKILL"}, {"grace_s", 1}}}};
  c.Do("POST", "/v1/specs", spec.dump());
  Json dep = {{"name", "bench"}, {"spec", "sleeper@1.0.0"}, {"replicas", n}};
  auto t0 = Clock::now();
  auto created = c.Do("POST", "/v1/deployments", dep.dump());
  if (!created.ok() || created->status != 201) {
    std::fprintf(stderr, "deploy failed: %s\n",
                 created.ok() ? created->body.c_str() : created.status().ToString().c_str());
    ::kill(daemon, SIGKILL);
    return 1;
  }
  double deploy_s = -1;
  while (Seconds(Clock::now() - t0) < 120) {
    Json d = GetJson(c, "/v1/deployments/bench");
    if (d.is_object() && d["status"]["replicas"]["ready"] == n) {
      deploy_s = Seconds(Clock::now() - t0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  long full_rss = RssKiB(daemon);

  // (c) zero-backoff respawn latency on a separate one-replica deployment: from kill -9 to
  // the new process appearing among the daemon's children (spawns run on its main thread).
  Json crash = {{"name", "crash"}, {"spec", "sleeper@1.0.0"}, {"replicas", 1},
                {"restart_policy", {{"policy", "always"}, {"backoff_initial_s", 0}}}};
  c.Do("POST", "/v1/deployments", crash.dump());
  std::string children_path = absl::StrCat("/proc/", daemon, "/task/", daemon, "/children");
  std::vector<double> respawn_ms;
  for (int i = 0; i < m; ++i) {
    Json in;
    for (int k = 0; k < 2000; ++k) {
      in = GetJson(c, "/v1/instances/crash-001");
      if (in.is_object() && in["state"] == "Running") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    int pid = in["pid"].get<int>();
    std::set<int> before = Children(children_path);
    auto killed = Clock::now();
    ::kill(pid, SIGKILL);
    while (Seconds(Clock::now() - killed) < 5) {
      std::set<int> now = Children(children_path);
      bool fresh = std::any_of(now.begin(), now.end(),
                               [&](int p) { return p != pid && !before.count(p); });
      if (fresh) {
        respawn_ms.push_back(Seconds(Clock::now() - killed) * 1000);
        break;
      }
    }
  }

  bd.Stop();

  std::printf("palm foundation benchmark (N=%d agents of /bin/sleep, M=%d crashes)\n", n, m);
  std::printf("  (a) raw posix_spawn loop (floor):      %8.3f s\n", raw_s);
  std::printf("      palm deploy -> %d running:       %8.3f s   ratio %.2fx the floor\n", n,
              deploy_s, deploy_s / raw_s);
  std::printf("  (b) daemon RSS idle:                   %8.1f MiB\n", idle_rss / 1024.0);
  std::printf("      daemon RSS with %d instances:    %8.1f MiB   delta %.1f MiB\n", n,
              full_rss / 1024.0, (full_rss - idle_rss) / 1024.0);
  std::printf("  (c) crash-to-respawn, zero backoff:   median %.2f ms, p90 %.2f ms (%zu crashes)\n",
              Percentile(respawn_ms, 0.5), Percentile(respawn_ms, 0.9), respawn_ms.size());
  return deploy_s < 0 ? 1 : 0;
}
