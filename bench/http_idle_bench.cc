// HTTP with idle connections: does a crowd of idle connections slow the daemon's serving?
// In one run against one real daemon:
//  (a) baseline: CONNS threads, each a keep-alive http::Client in a closed loop of
//      GET /healthz (the no-op), for SECONDS -> requests/s and daemon CPU per request;
//  (b) the same after opening IDLE more TCP connections to the daemon, each of which sent
//      one GET /healthz and then sits in keep-alive (what a crowd of idle clients looks like;
//      never-used connections would be closed after 10 s) -> requests/s, CPU per request.
//  (c) the baseline again once they are closed, so that drift from other load shows.
// Prints all three, the ratio b / mean(a, c) (target >= 0.9) of throughput and of daemon CPU
// per request, and the daemon's RSS per idle connection.
// Usage: http_idle_bench PATH/TO/palm [CONNS=8] [SECONDS=5] [IDLE=2000]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "palm/http/client.h"

namespace {

using palm::bench::Clock;
using palm::bench::CpuSeconds;
using palm::bench::Seconds;

struct Phase {
  double rate = 0;          // requests/s
  double cpu_us = 0;        // daemon CPU per request
  int64_t errors = 0;
};

// CONNS closed loops of GET /healthz for `seconds`.
Phase Measure(const std::string& endpoint, pid_t daemon, int conns, double seconds) {
  std::atomic<int64_t> ok{0}, errors{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  const double cpu0 = CpuSeconds(daemon);
  const auto t0 = Clock::now();
  for (int i = 0; i < conns; ++i) {
    threads.emplace_back([&] {
      palm::http::Client c(endpoint, "");
      while (!stop.load(std::memory_order_relaxed)) {
        auto r = c.Do("GET", "/healthz");
        if (r.ok() && r->status == 200) {
          ok.fetch_add(1, std::memory_order_relaxed);
        } else {
          errors.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  const double wall = Seconds(Clock::now() - t0);
  Phase p;
  p.rate = static_cast<double>(ok.load()) / wall;
  p.cpu_us = ok.load() > 0 ? (CpuSeconds(daemon) - cpu0) * 1e6 / static_cast<double>(ok.load()) : 0;
  p.errors = errors.load();
  return p;
}

// Opens `n` connections that each complete one GET /healthz and then stay idle.
std::vector<int> OpenIdle(int port, int n) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const std::string req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) break;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
      ::close(fd);
      break;
    }
    char buf[512];
    if (::recv(fd, buf, sizeof buf, 0) <= 0) {  // the answer (small: one read)
      ::close(fd);
      break;
    }
    fds.push_back(fd);
  }
  return fds;
}

double RssMiB(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (f >> key) {
    if (key == "VmRSS:") {
      double kb = 0;
      f >> kb;
      return kb / 1024;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PATH/TO/palm [CONNS=8] [SECONDS=5] [IDLE=2000]\n", argv[0]);
    return 2;
  }
  const std::string palm = argv[1];
  const int conns = argc > 2 ? std::atoi(argv[2]) : 8;
  const double seconds = argc > 3 ? std::atof(argv[3]) : 5;
  const int idle = argc > 4 ? std::atoi(argv[4]) : 2000;
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;  // this process holds the idle connections
  ::setrlimit(RLIMIT_NOFILE, &rl);

  palm::bench::BenchDir dir;
  palm::bench::BenchDaemon bd(palm, dir.path());
  Measure(bd.endpoint(), bd.pid(), conns, 0.5);  // warm-up
  const Phase base = Measure(bd.endpoint(), bd.pid(), conns, seconds);
  const double rss0 = RssMiB(bd.pid());
  std::vector<int> fds = OpenIdle(bd.port(), idle);
  const double rss1 = RssMiB(bd.pid());
  const Phase crowded = Measure(bd.endpoint(), bd.pid(), conns, seconds);
  // Still held by the daemon? An idle connection it closed would read EOF at once.
  int still_open = 0;
  for (int fd : fds) {
    char c;
    still_open += ::recv(fd, &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN;
  }
  for (int fd : fds) ::close(fd);
  // The baseline again, so that drift (other load on the machine) shows.
  const Phase after = Measure(bd.endpoint(), bd.pid(), conns, seconds);
  bd.Stop();
  const double baseline = (base.rate + after.rate) / 2;

  std::printf("palm HTTP idle-connection benchmark (%d keep-alive clients, %g s windows)\n", conns,
              seconds);
  std::printf("  (a) GET /healthz, no idle connections:        %8.0f req/s  %6.1f us daemon CPU/req"
              "  (%lld errors)\n",
              base.rate, base.cpu_us, static_cast<long long>(base.errors));
  std::printf("  (b) GET /healthz, %d idle connections open: %8.0f req/s  %6.1f us daemon CPU/req"
              "  (%lld errors, %d of %zu idle still open)\n",
              idle, crowded.rate, crowded.cpu_us, static_cast<long long>(crowded.errors),
              still_open, fds.size());
  std::printf("  (c) GET /healthz, idle connections closed:    %8.0f req/s  %6.1f us daemon CPU/req"
              "  (%lld errors)\n",
              after.rate, after.cpu_us, static_cast<long long>(after.errors));
  std::printf("      ratio b / mean(a, c): %.3f (target >= 0.9); CPU per request b / mean(a, c): %.3f\n",
              baseline > 0 ? crowded.rate / baseline : 0,
              base.cpu_us + after.cpu_us > 0 ? 2 * crowded.cpu_us / (base.cpu_us + after.cpu_us) : 0);
  std::printf("      daemon RSS: %.1f MiB -> %.1f MiB with the idle connections (%.1f KiB each)\n",
              rss0, rss1, fds.empty() ? 0.0 : (rss1 - rss0) * 1024 / static_cast<double>(fds.size()));
  return 0;
}
