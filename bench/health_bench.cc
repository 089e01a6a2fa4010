// Health benchmark (issue #3), in one run on the same machine:
//  (a) N agents (bench/tiny_http_agent) without probes: the daemon's CPU share over a window;
//      then the same N agents with a 1 s HTTP liveness probe each: the daemon's CPU share and
//      the probes' latency (p50/p99, from GET /v1/health/summary). The difference is what
//      probing costs.
//  (b) Event stream: M state changes (scale up/down of a small deployment); for each, the
//      time from sending the change to the SSE client receiving its event; p50/p99.
// Usage: health_bench PATH/TO/palm PATH/TO/tiny_http_agent [N=1000] [WINDOW_S=10] [M=200]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "bench/bench_util.h"
#include "palm/http/client.h"

namespace {

using palm::bench::Clock;
using palm::bench::CpuSeconds;
using palm::bench::GetJson;
using palm::bench::Json;
using palm::bench::Percentile;
using palm::bench::Seconds;
using palm::bench::WaitReady;

bool WaitGone(palm::http::Client& c, const std::string& name, double timeout_s) {
  auto t0 = Clock::now();
  while (Seconds(Clock::now() - t0) < timeout_s) {
    Json l = GetJson(c, "/v1/instances?deployment=" + name);
    if (l.is_object() && l["items"].empty()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

double CpuShare(pid_t daemon, double window_s) {
  double c0 = CpuSeconds(daemon);
  auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(window_s));
  return (CpuSeconds(daemon) - c0) / Seconds(Clock::now() - t0);
}

// Reads SSE frames from a raw socket on a thread, timestamping each event's arrival.
class SseReader {
 public:
  SseReader(int port, const std::string& token, const std::string& target) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    std::string req = absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ",
                                   token, "\r\n\r\n");
    (void)::write(fd_, req.data(), req.size());
    thread_ = std::thread([this] { Run(); });
  }
  ~SseReader() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  // Waits for an event of `kind` after index `from`; returns its arrival time.
  std::optional<Clock::time_point> WaitFor(const std::string& kind, size_t* from,
                                           double timeout_s) {
    auto t0 = Clock::now();
    while (Seconds(Clock::now() - t0) < timeout_s) {
      {
        std::lock_guard<std::mutex> l(mu_);
        for (; *from < got_.size(); ++*from) {
          if (got_[*from].first == kind) return got_[(*from)++].second;
        }
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return std::nullopt;
  }

 private:
  void Run() {
    std::string buf;
    char chunk[8192];
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n <= 0) break;
      auto now = Clock::now();
      buf.append(chunk, static_cast<size_t>(n));
      size_t pos;
      while ((pos = buf.find("event: ")) != std::string::npos) {
        size_t end = buf.find('\n', pos);
        if (end == std::string::npos) break;
        std::lock_guard<std::mutex> l(mu_);
        got_.emplace_back(buf.substr(pos + 7, end - pos - 7), now);
        buf.erase(0, end + 1);
      }
    }
  }
  int fd_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::pair<std::string, Clock::time_point>> got_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s PATH/TO/palm PATH/TO/tiny_http_agent [N] [WINDOW_S] [M]\n",
                 argv[0]);
    return 2;
  }
  std::string palm = argv[1];
  std::string agent = std::filesystem::absolute(argv[2]).string();
  int n = argc > 3 ? std::atoi(argv[3]) : 1000;
  double window = argc > 4 ? std::atof(argv[4]) : 10;
  int m = argc > 5 ? std::atoi(argv[5]) : 200;
  palm::bench::BenchDir bench_dir;
  palm::bench::BenchDaemon bd(palm, bench_dir.path());
  pid_t daemon = bd.pid();
  palm::http::Client& c = bd.client();

  Json plain = {{"name", "tiny"}, {"version", "1.0.0"}, {"command", {agent}},
                {"ports", {"http"}}, {"stop", {{"signal", "SIGKILL"}, {"grace_s", 1}}}};
  Json probed = plain;
  probed["version"] = "1.0.1";
  probed["health_check"] = {{"liveness", {{"http", {{"port", "http"}, {"path", "/healthz"}}},
                                          {"period_s", 1}, {"timeout_s", 1}}}};
  c.Do("POST", "/v1/specs", plain.dump());
  c.Do("POST", "/v1/specs", probed.dump());

  // (a) without probes, then with.
  c.Do("POST", "/v1/deployments",
       Json({{"name", "fleet"}, {"spec", "tiny@1.0.0"}, {"replicas", n}}).dump());
  bool ok = WaitReady(c, "fleet", n, 120);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  double cpu_plain = CpuShare(daemon, window);
  c.Do("DELETE", "/v1/deployments/fleet");
  ok = ok && WaitGone(c, "fleet", 60);
  c.Do("POST", "/v1/deployments",
       Json({{"name", "fleet"}, {"spec", "tiny@1.0.1"}, {"replicas", n}}).dump());
  ok = ok && WaitReady(c, "fleet", n, 120);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  Json before = GetJson(c, "/v1/health/summary")["probes"];
  double cpu_probed = CpuShare(daemon, window);
  Json probes = GetJson(c, "/v1/health/summary")["probes"];
  Json dep = GetJson(c, "/v1/deployments/fleet");
  int healthy = dep["status"]["health"]["healthy"].get<int>();

  // (b) event delivery to an SSE client.
  c.Do("POST", "/v1/deployments",
       Json({{"name", "blip"}, {"spec", "tiny@1.0.0"}, {"replicas", 1}}).dump());
  WaitReady(c, "blip", 1, 30);
  SseReader sse(bd.port(), bd.token(), "/v1/events?follow=1&deployment=blip");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::vector<double> delivery_ms;
  size_t cursor = 0;
  for (int i = 0; i < m; ++i) {
    int replicas = i % 2 == 0 ? 2 : 1;
    auto sent = Clock::now();
    c.Do("POST", "/v1/deployments/blip/scale", Json({{"replicas", replicas}}).dump());
    auto got = sse.WaitFor(replicas == 2 ? "ScaledUp" : "ScaledDown", &cursor, 5);
    if (got) delivery_ms.push_back(Seconds(*got - sent) * 1000);
  }

  bd.Stop();

  double probes_per_s =
      (probes["count"].get<double>() - before["count"].get<double>()) / window;
  std::printf("palm health benchmark (N=%d agents, %g s windows, M=%d state changes)\n", n,
              window, m);
  std::printf("  (a) daemon CPU, %d instances, no probes:        %6.2f %% of one core\n", n,
              cpu_plain * 100);
  std::printf("      daemon CPU, %d instances, 1 s HTTP probes:  %6.2f %% of one core"
              "   (+%.2f %%, %0.f probes/s, %d healthy)\n",
              n, cpu_probed * 100, (cpu_probed - cpu_plain) * 100, probes_per_s, healthy);
  std::printf("      probe latency:                              p50 %.2f ms, p99 %.2f ms\n",
              probes["p50_ms"].get<double>(), probes["p99_ms"].get<double>());
  std::printf("  (b) change -> SSE client delivery:              p50 %.2f ms, p99 %.2f ms"
              " (%zu events)\n",
              Percentile(delivery_ms, 0.5), Percentile(delivery_ms, 0.99), delivery_ms.size());
  return ok ? 0 : 1;
}
