// Task benchmark (issue: end-to-end tasks per second), in one run on the same machine:
//  A real daemon with AGENTS replicas of bench/task_agent (an echo agent on the C++ SDK:
//  one keep-alive connection, long-polls GET /v1/agent/tasks/next, posts the input back as
//  the result). One load generator (one thread, epoll, CONNS keep-alive connections, each in
//  a closed loop: the next request when the previous answer arrived) drives two phases:
//  (a) no-op baseline: GET /healthz of the same daemon for SECONDS -> requests/s;
//  (b) tasks: POST /v1/tasks {"deployment", "input": {"i": n}} for SECONDS (or MAX_TASKS),
//      each answered 201 once durable; then wait until every submitted task is finished
//      (task-metrics count). tasks/s = finished / (first submit -> last completion seen).
//      End-to-end latency (created -> result recorded) is the daemon's `latency_ms` of each
//      task (GET /v1/tasks pages); the client-side submit latency is timed here.
// Daemon CPU seconds (utime+stime from /proc) are read around each phase; the agents' and
// the load generator's CPU too, to show where the two cores went.
// Usage: task_bench PATH/TO/palm PATH/TO/task_agent [AGENTS=50] [CONNS=32] [SECONDS=10]
//                   [MAX_TASKS=0 (no limit)]
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"
#include "nlohmann/json.hpp"
#include "palm/http/client.h"

namespace {

using palm::bench::Clock;
using palm::bench::CpuSeconds;
using palm::bench::GetJson;
using palm::bench::Json;
using palm::bench::Percentile;
using palm::bench::Seconds;
using palm::bench::WaitReady;

constexpr double kTargetTasksPerS = 5000;
constexpr double kTargetRatio = 0.3;

double CpuSeconds(const std::vector<pid_t>& pids) {
  double s = 0;
  for (pid_t p : pids) s += CpuSeconds(p);
  return s;
}

// This process's own CPU (the load generator; the setup calls are negligible).
double SelfCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Finished tasks of revision 1 (succeeded + failed + timed out) over the last 900 s.
int64_t FinishedCount(palm::http::Client& c, const std::string& name) {
  Json m = GetJson(c, "/v1/deployments/" + name + "/task-metrics?window_s=900");
  if (!m.is_object() || !m["revisions"].contains("1")) return 0;
  return m["revisions"]["1"].value("count", int64_t{0});
}

// Polls until `want` tasks are finished; returns when that was first seen, or nullopt.
std::optional<Clock::time_point> WaitFinished(palm::http::Client& c, const std::string& name,
                                              int64_t want, double timeout_s,
                                              int64_t* seen = nullptr) {
  auto t0 = Clock::now();
  int64_t n = 0;
  while (Seconds(Clock::now() - t0) < timeout_s) {
    n = FinishedCount(c, name);
    if (n >= want) {
      if (seen) *seen = n;
      return Clock::now();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (seen) *seen = n;
  return std::nullopt;
}

struct LoadResult {
  int64_t ok = 0;                  // answers with the expected status
  int64_t rejected = 0;            // 429 (retried after 2 ms)
  int64_t errors = 0;              // anything else, and dropped connections
  std::vector<double> latency_ms;  // of the `ok` answers
  Clock::time_point start, end;    // first request sent, last answer received
  double seconds() const { return Seconds(end - start); }
};

// A closed-loop HTTP/1.1 load generator: `conns` keep-alive connections to 127.0.0.1:port
// on one thread (epoll), each sending its next request as soon as the previous answer has
// arrived. Only what a benchmark needs: Content-Length bodies (palm always sends one),
// no pipelining. The connections are opened once and used by every phase.
class LoadGen {
 public:
  LoadGen(int port, int conns) : port_(port) {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    conns_.resize(static_cast<size_t>(conns));
    for (size_t i = 0; i < conns_.size(); ++i) Open(i);
  }
  ~LoadGen() {
    for (auto& c : conns_) {
      if (c.fd >= 0) ::close(c.fd);
    }
    ::close(ep_);
  }

  // Runs for `seconds` (or until `max_requests` were answered with `expect`, when > 0),
  // then waits for the answers still in flight. make(n) is the n-th request's bytes.
  LoadResult Run(const std::function<std::string(int64_t)>& make, unsigned expect, double seconds,
                 int64_t max_requests = 0) {
    LoadResult r;
    r.latency_ms.reserve(1 << 20);
    int64_t next = 0;
    int in_flight = 0;
    bool issuing = true;
    r.start = Clock::now();
    auto deadline = r.start + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(seconds));
    auto give_up = deadline + std::chrono::seconds(30);
    for (size_t i = 0; i < conns_.size(); ++i) {
      Send(i, next, make(next));
      ++next;
      ++in_flight;
    }
    std::vector<epoll_event> evs(conns_.size());
    while (in_flight > 0) {
      auto now = Clock::now();
      if (issuing && (now >= deadline || (max_requests > 0 && r.ok >= max_requests))) {
        issuing = false;
      }
      if (now >= give_up) {
        std::fprintf(stderr, "task_bench: %d requests still unanswered after 30 s\n", in_flight);
        r.errors += in_flight;
        break;
      }
      // Connections backing off after a 429 are resent here.
      int timeout_ms = 100;
      for (size_t i = 0; i < conns_.size(); ++i) {
        Conn& c = conns_[i];
        if (!c.waiting) continue;
        if (c.resume_at <= now) {
          c.waiting = false;
          Send(i, c.n, c.request);
        } else {
          timeout_ms = std::min<int>(
              timeout_ms, static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                               c.resume_at - now)
                                               .count()) +
                              1);
        }
      }
      int k = epoll_wait(ep_, evs.data(), static_cast<int>(evs.size()), timeout_ms);
      for (int e = 0; e < k; ++e) {
        size_t i = evs[e].data.u64;
        Conn& c = conns_[i];
        if (evs[e].events & EPOLLOUT) Flush(i);
        if (!(evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
        unsigned status = 0;
        int got = Read(i, &status);
        if (got == 0) continue;  // not a whole answer yet
        auto done = Clock::now();
        if (got < 0) {  // the connection broke (the request's fate is unknown): an error
          ++r.errors;
        } else if (status == expect) {
          ++r.ok;
          r.latency_ms.push_back(Seconds(done - c.sent_at) * 1000);
          r.end = done;
        } else if (status == 429) {
          ++r.rejected;
        } else if (++r.errors <= 3) {
          std::fprintf(stderr, "task_bench: unexpected HTTP %u: %.300s\n", status,
                       c.last_body.c_str());
        }
        if (got < 0 || c.reopen) {
          std::string retry = c.request;
          int64_t n = c.n;
          Open(i);  // resets the connection's state
          c.request = std::move(retry);
          c.n = n;
        }
        if (got > 0 && status == 429) {  // still in flight: the same request again in 2 ms
          c.waiting = true;
          c.resume_at = done + std::chrono::milliseconds(2);
          continue;
        }
        if (issuing && !(max_requests > 0 && r.ok + in_flight - 1 >= max_requests) &&
            Clock::now() < deadline) {
          Send(i, next, make(next));
          ++next;
        } else {
          --in_flight;
        }
      }
    }
    if (r.ok == 0) r.end = Clock::now();
    return r;
  }

 private:
  struct Conn {
    int fd = -1;
    std::string out;  // unsent bytes
    std::string in;   // received bytes of the answer being read
    std::string request, last_body;
    int64_t n = 0;
    Clock::time_point sent_at, resume_at;
    bool waiting = false;  // backing off after a 429
    bool reopen = false;   // the last answer said Connection: close
  };

  void Open(size_t i) {
    Conn& c = conns_[i];
    if (c.fd >= 0) ::close(c.fd);
    c = Conn{};
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      std::perror("task_bench: connect");
      std::exit(1);
    }
    int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::fcntl(c.fd, F_SETFL, ::fcntl(c.fd, F_GETFL) | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev);
  }

  void Send(size_t i, int64_t n, std::string request) {
    Conn& c = conns_[i];
    c.n = n;
    c.request = std::move(request);
    c.out = c.request;
    c.in.clear();
    c.sent_at = Clock::now();
    Flush(i);
  }

  void Flush(size_t i) {
    Conn& c = conns_[i];
    while (!c.out.empty()) {
      ssize_t w = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (w > 0) {
        c.out.erase(0, static_cast<size_t>(w));
      } else if (w < 0 && errno == EINTR) {
        continue;
      } else {
        break;  // EAGAIN (wait for EPOLLOUT) or an error (the read side will see it)
      }
    }
    epoll_event ev{};
    ev.events = c.out.empty() ? EPOLLIN : EPOLLIN | EPOLLOUT;
    ev.data.u64 = i;
    epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
  }

  // 1 with a whole answer (its status in *status), 0 for not yet, -1 when the connection
  // broke or the server closes it.
  int Read(size_t i, unsigned* status) {
    Conn& c = conns_[i];
    char buf[16384];
    while (true) {
      ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n > 0) {
        c.in.append(buf, static_cast<size_t>(n));
        if (static_cast<size_t>(n) < sizeof buf) break;
      } else if (n == 0) {
        return -1;
      } else if (errno == EINTR) {
        continue;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      } else {
        return -1;
      }
    }
    size_t head_end = c.in.find("\r\n\r\n");
    if (head_end == std::string::npos) return 0;
    if (c.in.size() < 12 || c.in.compare(0, 7, "HTTP/1.") != 0) return -1;
    *status = static_cast<unsigned>(std::atoi(c.in.c_str() + 9));
    size_t length = 0;
    bool close = false;
    for (size_t pos = c.in.find("\r\n"); pos < head_end; pos = c.in.find("\r\n", pos + 2)) {
      const char* line = c.in.c_str() + pos + 2;
      if (strncasecmp(line, "content-length:", 15) == 0) {
        length = std::strtoull(line + 15, nullptr, 10);
      } else if (strncasecmp(line, "connection: close", 17) == 0) {
        close = true;
      }
    }
    size_t total = head_end + 4 + length;
    if (c.in.size() < total) return 0;
    if (*status != 201 && *status != 200) c.last_body = c.in.substr(head_end + 4, length);
    c.in.erase(0, total);
    c.reopen = close;
    return 1;
  }

  int port_;
  int ep_;
  std::vector<Conn> conns_;
};

}  // namespace

namespace {

// Busy and total jiffies of the whole machine, from /proc/stat.
std::pair<double, double> MachineJiffies() {
  std::ifstream f("/proc/stat");
  std::string cpu;
  f >> cpu;
  double v[10] = {};
  for (double& x : v) f >> x;
  double total = 0;
  for (int i = 0; i < 8; ++i) total += v[i];  // guest time is already in user
  double idle = v[3] + v[4];                  // idle + iowait
  return {total - idle, total};
}

// CPU used by each party over a phase.
struct CpuSample {
  double daemon = 0, agents = 0, self = 0, busy = 0, total = 0;
  Clock::time_point at;
  static CpuSample Take(pid_t daemon, const std::vector<pid_t>& agents) {
    CpuSample s;
    s.daemon = CpuSeconds(daemon);
    s.agents = CpuSeconds(agents);
    s.self = SelfCpuSeconds();
    std::tie(s.busy, s.total) = MachineJiffies();
    s.at = Clock::now();
    return s;
  }
};

struct CpuUse {
  double wall = 0, daemon = 0, agents = 0, self = 0, machine_cores = 0;
};

CpuUse Diff(const CpuSample& a, const CpuSample& b) {
  CpuUse u;
  u.wall = Seconds(b.at - a.at);
  u.daemon = b.daemon - a.daemon;
  u.agents = b.agents - a.agents;
  u.self = b.self - a.self;
  double cores = static_cast<double>(std::thread::hardware_concurrency());
  u.machine_cores = b.total > a.total ? (b.busy - a.busy) / (b.total - a.total) * cores : 0;
  return u;
}

struct TaskStats {
  std::vector<double> latency_ms;
  std::map<std::string, int64_t> states;
  absl::Time first_created = absl::InfiniteFuture(), last_completed = absl::InfinitePast();
  int64_t n = 0;
};

// Every task of the deployment whose input has "i" (the measured ones), page by page.
TaskStats ListTasks(palm::http::Client& c, const std::string& name) {
  TaskStats s;
  std::string after;
  while (true) {
    std::string target = "/v1/tasks?deployment=" + name + "&limit=1000";
    if (!after.empty()) target += "&after=" + after;
    Json page = GetJson(c, target);
    if (!page.is_object() || !page["items"].is_array()) break;
    for (const Json& t : page["items"]) {
      if (!t["input"].is_object() || !t["input"].contains("i")) continue;
      ++s.n;
      ++s.states[t.value("state", "?")];
      if (t["latency_ms"].is_number()) s.latency_ms.push_back(t["latency_ms"].get<double>());
      absl::Time created, completed;
      std::string err;
      if (t["created_at"].is_string() &&
          absl::ParseTime(absl::RFC3339_full, t["created_at"].get<std::string>(), &created, &err)) {
        s.first_created = std::min(s.first_created, created);
      }
      if (t["completed_at"].is_string() &&
          absl::ParseTime(absl::RFC3339_full, t["completed_at"].get<std::string>(), &completed,
                          &err)) {
        s.last_completed = std::max(s.last_completed, completed);
      }
    }
    if (!page["next"].is_string()) break;
    after = page["next"].get<std::string>();
  }
  return s;
}

std::vector<pid_t> AgentPids(palm::http::Client& c, const std::string& name) {
  std::vector<pid_t> pids;
  Json l = GetJson(c, "/v1/instances?deployment=" + name);
  if (!l.is_object()) return pids;
  for (const Json& in : l["items"]) {
    if (in["pid"].is_number_integer()) pids.push_back(in["pid"].get<pid_t>());
  }
  return pids;
}

std::string Thousands(double v) {
  std::string s = std::to_string(static_cast<int64_t>(v + 0.5));
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

std::string CpuLine(const CpuUse& u) {
  char b[160];
  std::snprintf(b, sizeof b, "%5.2f s (%3.0f %% of a core)", u.daemon,
                u.wall > 0 ? u.daemon / u.wall * 100 : 0);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: %s PATH/TO/palm PATH/TO/task_agent [AGENTS=50] [CONNS=32] [SECONDS=10]"
                 " [MAX_TASKS=0]\n",
                 argv[0]);
    return 2;
  }
  std::string palm = argv[1];
  std::string agent = std::filesystem::absolute(argv[2]).string();
  int agents = argc > 3 ? std::atoi(argv[3]) : 50;
  int conns = argc > 4 ? std::atoi(argv[4]) : 32;
  double seconds = argc > 5 ? std::atof(argv[5]) : 10;
  int64_t max_tasks = argc > 6 ? std::atoll(argv[6]) : 0;
  const std::string name = "work";

  palm::bench::BenchDir bench_dir;
  palm::bench::BenchDaemon bd(palm, bench_dir.path());
  palm::http::Client& c = bd.client();
  auto fail = [&](const std::string& what) {
    std::fprintf(stderr, "task_bench: %s (daemon output: %s/daemon.out)\n", what.c_str(),
                 bench_dir.path().c_str());
    bd.Stop();
    std::exit(1);
  };

  Json spec = {{"name", "echo"},
               {"version", "1.0.0"},
               {"command", {agent}},
               {"stop", {{"signal", "SIGTERM"}, {"grace_s", 2}}}};
  auto r = c.Do("POST", "/v1/specs", spec.dump());
  if (!r.ok() || r->status >= 300) fail("POST /v1/specs failed: " + (r.ok() ? r->body : ""));
  r = c.Do("POST", "/v1/deployments",
           Json({{"name", name}, {"spec", "echo@1.0.0"}, {"replicas", agents}}).dump());
  if (!r.ok() || r->status >= 300) {
    fail("POST /v1/deployments failed: " + (r.ok() ? r->body : ""));
  }
  if (!WaitReady(c, name, agents, 120)) fail(absl::StrCat(agents, " agents not ready in 120 s"));
  r = c.Do("GET", "/v1/deployments/" + name + "/task-metrics");
  if (!r.ok() || r->status != 200) fail("this palm has no task endpoints (task-metrics)");
  std::vector<pid_t> agent_pids = AgentPids(c, name);
  pid_t daemon = bd.pid();

  LoadGen gen(bd.port(), conns);
  const std::string auth = "Authorization: Bearer " + bd.token() + "\r\n";
  const std::string noop = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + "\r\n";
  auto healthz = [&](int64_t) { return noop; };
  auto submit = [&](const char* key) {
    return [&, key](int64_t n) {
      std::string body =
          absl::StrCat(R"({"deployment":")", name, R"(","input":{")", key, R"(":)", n, "}}");
      return absl::StrCat("POST /v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n", auth,
                          "Content-Type: application/json\r\nContent-Length: ", body.size(),
                          "\r\n\r\n", body);
    };
  };

  // (a) the no-op baseline, after a short warm-up.
  gen.Run(healthz, 200, 0.5);
  CpuSample a0 = CpuSample::Take(daemon, agent_pids);
  LoadResult noop_r = gen.Run(healthz, 200, seconds);
  CpuSample a1 = CpuSample::Take(daemon, agent_pids);
  double noop_rate = noop_r.ok / noop_r.seconds();

  // (b) tasks, after a short warm-up whose tasks ("w" inputs) are left out of the figures.
  LoadResult warm = gen.Run(submit("w"), 201, 0.5);
  if (!WaitFinished(c, name, warm.ok, 60)) fail("the warm-up tasks did not finish in 60 s");
  int64_t base = FinishedCount(c, name);
  CpuSample b0 = CpuSample::Take(daemon, agent_pids);
  LoadResult task_r = gen.Run(submit("i"), 201, seconds, max_tasks);
  int64_t submitted = task_r.ok;
  int64_t seen = 0;
  auto done_at = WaitFinished(c, name, base + submitted, std::max(60.0, 10 * seconds), &seen);
  CpuSample b1 = CpuSample::Take(daemon, agent_pids);
  int64_t finished = std::min(seen - base, submitted);
  double span = Seconds((done_at ? *done_at : b1.at) - task_r.start);
  double task_rate = finished / span;
  double submit_rate = submitted / task_r.seconds();
  TaskStats ts = ListTasks(c, name);
  Json service = GetJson(c, "/v1/deployments/" + name + "/task-metrics?window_s=900");
  service = service.is_object() && service["revisions"].contains("1") ? service["revisions"]["1"]
                                                                      : Json::object();
  double daemon_span = ts.last_completed > ts.first_created
                           ? absl::ToDoubleSeconds(ts.last_completed - ts.first_created)
                           : 0;
  bd.Stop();

  CpuUse ua = Diff(a0, a1), ub = Diff(b0, b1);
  double ratio = noop_rate > 0 ? task_rate / noop_rate : 0;
  std::string states;
  for (const auto& [k, v] : ts.states)
    states += absl::StrCat(states.empty() ? "" : ", ", v, " ", k);

  std::printf(
      "palm task benchmark: %d agents (bench/task_agent on the C++ SDK), %d keep-alive "
      "connections (one thread), %g s phases, %u CPUs\n",
      agents, conns, seconds, std::thread::hardware_concurrency());
  std::printf("  %-34s %-30s %s\n", "", "(a) no-op: GET /healthz",
              "(b) tasks: submit -> agent -> result");
  std::printf("  %-34s %-30s %s\n", "throughput", (Thousands(noop_rate) + " req/s").c_str(),
              (Thousands(task_rate) + " tasks/s").c_str());
  std::printf(
      "  %-34s %-30s %s tasks in %.2f s (submitting %.2f s at %s/s, then %.3f s "
      "to drain)\n",
      "  done", (Thousands(noop_r.ok) + " requests").c_str(), Thousands(finished).c_str(), span,
      task_r.seconds(), Thousands(submit_rate).c_str(), span - task_r.seconds());
  if (daemon_span > 0) {
    std::printf("  %-34s %-30s %s tasks/s (first created_at -> last completed_at)\n",
                "  daemon's own clock", "", Thousands(ts.n / daemon_span).c_str());
  }
  char buf[2][96];
  std::snprintf(buf[0], sizeof buf[0], "p50 %.2f ms, p99 %.2f ms",
                Percentile(noop_r.latency_ms, 0.5), Percentile(noop_r.latency_ms, 0.99));
  std::snprintf(buf[1], sizeof buf[1], "p50 %.2f ms, p99 %.2f ms",
                Percentile(task_r.latency_ms, 0.5), Percentile(task_r.latency_ms, 0.99));
  std::printf("  %-34s %-30s %s (POST /v1/tasks -> 201)\n", "client request latency", buf[0],
              buf[1]);
  std::printf("  %-34s %-30s p50 %.2f ms, p99 %.2f ms (daemon latency_ms, %zu tasks)\n",
              "end-to-end task latency", "-", Percentile(ts.latency_ms, 0.5),
              Percentile(ts.latency_ms, 0.99), ts.latency_ms.size());
  std::printf("  %-34s %-30s p50 %.2f ms, p99 %.2f ms (assigned -> result, task-metrics)\n",
              "  of which agent service time", "",
              service["p50_ms"].is_number() ? service["p50_ms"].get<double>() : 0.0,
              service["p99_ms"].is_number() ? service["p99_ms"].get<double>() : 0.0);
  std::printf("  %-34s %-30s %s\n", "daemon CPU", CpuLine(ua).c_str(), CpuLine(ub).c_str());
  std::printf("  %-34s %-30s %.2f s (%.0f %% of a core)\n", "agents' CPU (all)",
              absl::StrFormat("%.2f s", ua.agents).c_str(), ub.agents,
              ub.wall > 0 ? ub.agents / ub.wall * 100 : 0);
  std::printf("  %-34s %-30s %.2f s (%.0f %% of a core)\n", "load generator CPU",
              absl::StrFormat("%.2f s (%.0f %% of a core)", ua.self,
                              ua.wall > 0 ? ua.self / ua.wall * 100 : 0)
                  .c_str(),
              ub.self, ub.wall > 0 ? ub.self / ub.wall * 100 : 0);
  std::printf(
      "  %-34s %-30s %.2f of %u\n", "machine busy (cores)",
      absl::StrFormat("%.2f of %u", ua.machine_cores, std::thread::hardware_concurrency()).c_str(),
      ub.machine_cores, std::thread::hardware_concurrency());
  std::printf("  %-34s %-30s %s\n", "daemon CPU per request / task",
              absl::StrFormat("%.1f us", noop_r.ok ? ua.daemon / noop_r.ok * 1e6 : 0).c_str(),
              absl::StrFormat("%.1f us", finished ? ub.daemon / finished * 1e6 : 0).c_str());
  std::printf("  %-34s %-30s %s; %lld rejected (429, retried), %lld errors\n", "outcome",
              absl::StrFormat("%lld errors", static_cast<long long>(noop_r.errors)).c_str(),
              states.c_str(), static_cast<long long>(task_r.rejected),
              static_cast<long long>(task_r.errors));
  std::printf("  targets: tasks/s >= %s: %s (%s); ratio tasks/no-op >= %.1f: %s (%.3f)\n",
              Thousands(kTargetTasksPerS).c_str(),
              task_rate >= kTargetTasksPerS ? "met" : "NOT met", Thousands(task_rate).c_str(),
              kTargetRatio, ratio >= kTargetRatio ? "met" : "NOT met", ratio);
  bool ok = done_at.has_value() && task_r.errors == 0 && noop_r.errors == 0 &&
            ts.states["Succeeded"] == submitted;
  if (!done_at) {
    std::fprintf(stderr, "task_bench: only %lld of %lld tasks finished in time\n",
                 static_cast<long long>(finished), static_cast<long long>(submitted));
  }
  return ok ? 0 : 1;
}
