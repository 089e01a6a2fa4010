// palm_agent.h — header-only C++20 SDK for agents supervised by palm.
//
// palm starts an agent with its identity and a scoped token in the environment (DESIGN.md
// section 4: PALM_ENDPOINT, PALM_TOKEN, PALM_INSTANCE_ID, PALM_DEPLOYMENT, PALM_REVISION,
// PALM_TENANT, PALM_CONFIG, PALM_PORT_<NAME>). This header is the agent's side of that
// contract, on POSIX sockets and nlohmann/json only:
//
//   #include "palm_agent.h"
//   int main() {
//     auto agent = palm_agent::Agent::FromEnv();
//     return agent.Run([](const nlohmann::json& input, const nlohmann::json& task) {
//       return nlohmann::json{{"answer", input.value("question", "")}};   // the task's output
//     });
//   }
//
// Run() heartbeats from a background thread (the first beat before the first poll, which is
// what makes a heartbeat-readiness instance ready), long-polls for tasks, calls the handler,
// posts each result (a thrown exception becomes ok:false with what() as the error), serves
// GET /healthz on PALM_PORT_HTTP when set, and returns 0 once SIGTERM/SIGINT arrives or a
// heartbeat says drain — after finishing the task in hand.
//
// Lower-level calls for agents with their own loop: Heartbeat(), NextTask(), Complete().
//
// Transport: HTTP/1.1 with keep-alive, one connection per calling thread, reopened after
// any failure; Content-Length, chunked and read-to-close bodies; connect/read timeouts.
// Connection errors, 5xx and 429 are retried with exponential backoff and full jitter
// (Retry-After honoured); other 4xx throw palm_agent::Error at once. A 409 on Complete()
// throws LeaseLost and is never retried. https endpoints are not supported (put palm's
// endpoint on loopback, as it is by default).
//
// Delivery is at-least-once: Run() remembers the results it posted (by task id) and answers
// a redelivered task (attempt + 1) with the same result without calling the handler again.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "nlohmann/json.hpp"

namespace palm_agent {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// The daemon refused a call (4xx), or kept failing (5xx/429) after every retry. status is
// the HTTP status (0 for a transport failure), code the palm error code.
class Error : public std::runtime_error {
 public:
  Error(int http_status, std::string error_code, std::string error_message,
        std::string error_hint = {})
      : std::runtime_error(http_status ? std::to_string(http_status) + " " + error_code + ": " +
                                             error_message
                                       : error_message),
        status(http_status), code(std::move(error_code)), message(std::move(error_message)),
        hint(std::move(error_hint)) {}
  int status;
  std::string code, message, hint;
  double retry_after_s = -1;  // from a Retry-After header, when there was one
};

// The daemon could not be reached (refused, reset, timed out) after every retry.
class TransportError : public Error {
 public:
  explicit TransportError(const std::string& what) : Error(0, "UNAVAILABLE", what) {}
};

// 409 on a result: the lease is no longer held (LEASE_NOT_HELD) or the task is finished
// (TASK_ALREADY_FINISHED). Not recorded; do not retry.
class LeaseLost : public Error {
 public:
  using Error::Error;
};

namespace detail {

// Set by the SIGTERM/SIGINT handler that Run() installs (async-signal-safe).
inline std::atomic<bool> g_signalled{false};
inline void OnSignal(int) { g_signalled.store(true); }

inline std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

inline std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

inline std::string Timestamp() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

inline std::string UrlEncode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  bool close = false;  // the server will close the connection after this response
  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// One HTTP/1.1 connection with keep-alive. Not thread-safe: one per thread.
// Errors throw TransportError and leave the connection closed (the next call reconnects).
class Connection {
 public:
  Connection(std::string host, std::string port) : host_(std::move(host)), port_(std::move(port)) {}
  ~Connection() { Close(); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    buf_.clear();
  }
  bool open() const { return fd_ >= 0; }

  // Sends one request and reads its response within `timeout`. `cancel` (optional) is
  // polled every 100 ms while waiting; when it returns true the call throws
  // TransportError("cancelled") and closes the connection.
  Response Do(const std::string& method, const std::string& target,
              const std::map<std::string, std::string>& headers, const std::string& body,
              std::chrono::milliseconds timeout, const std::function<bool()>& cancel = {}) {
    const auto deadline = Clock::now() + timeout;
    try {
      if (fd_ < 0) Connect(deadline);
      std::string req = method + " " + target + " HTTP/1.1\r\nHost: " + host_ + ":" + port_ +
                        "\r\nConnection: keep-alive\r\n";
      for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
      if (!body.empty() || method == "POST" || method == "PUT") {
        req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
      }
      req += "\r\n";
      req += body;
      WriteAll(req, deadline, cancel);
      return ReadResponse(method, deadline, cancel);
    } catch (...) {
      Close();
      throw;
    }
  }

 private:
  [[noreturn]] static void Fail(const std::string& what) { throw TransportError(what); }

  void Connect(Clock::time_point deadline) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(host_.c_str(), port_.c_str(), &hints, &res);
    if (rc != 0) Fail("resolve " + host_ + ": " + ::gai_strerror(rc));
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(res, ::freeaddrinfo);
    std::string last = "no address";
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                        ai->ai_protocol);
      if (fd < 0) {
        last = std::strerror(errno);
        continue;
      }
      if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        last = std::strerror(errno);
        ::close(fd);
        continue;
      }
      pollfd p{fd, POLLOUT, 0};
      int left = MsLeft(deadline);
      int n = ::poll(&p, 1, left);
      int err = 0;
      socklen_t len = sizeof err;
      if (n <= 0 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        last = n == 0 ? "connect timed out" : std::strerror(err ? err : errno);
        ::close(fd);
        continue;
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      fd_ = fd;
      buf_.clear();
      return;
    }
    Fail("connect " + host_ + ":" + port_ + ": " + last);
  }

  static int MsLeft(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return static_cast<int>(std::max<int64_t>(0, left.count()));
  }

  // Waits for `events` on the socket, in 100 ms slices so `cancel` is honoured.
  void Wait(short events, Clock::time_point deadline, const std::function<bool()>& cancel) {
    while (true) {
      if (cancel && cancel()) Fail("cancelled");
      int left = MsLeft(deadline);
      if (left <= 0) Fail("timed out");
      pollfd p{fd_, events, 0};
      int n = ::poll(&p, 1, std::min(left, 100));
      if (n > 0) return;
      if (n < 0 && errno != EINTR) Fail(std::string("poll: ") + std::strerror(errno));
    }
  }

  void WriteAll(const std::string& data, Clock::time_point deadline,
                const std::function<bool()>& cancel) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        Wait(POLLOUT, deadline, cancel);
      } else {
        Fail(std::string("send: ") + std::strerror(errno));
      }
    }
  }

  // Reads more bytes into buf_; false at EOF.
  bool Fill(Clock::time_point deadline, const std::function<bool()>& cancel) {
    char chunk[16384];
    while (true) {
      ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n > 0) {
        buf_.append(chunk, static_cast<size_t>(n));
        return true;
      }
      if (n == 0) return false;
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        Wait(POLLIN, deadline, cancel);
        continue;
      }
      Fail(std::string("recv: ") + std::strerror(errno));
    }
  }

  std::string ReadLine(Clock::time_point deadline, const std::function<bool()>& cancel) {
    size_t pos;
    while ((pos = buf_.find("\r\n")) == std::string::npos) {
      if (buf_.size() > 64 * 1024) Fail("response line too long");
      if (!Fill(deadline, cancel)) Fail("connection closed by the daemon");
    }
    std::string line = buf_.substr(0, pos);
    buf_.erase(0, pos + 2);
    return line;
  }

  std::string ReadExactly(size_t n, Clock::time_point deadline,
                          const std::function<bool()>& cancel) {
    while (buf_.size() < n) {
      if (!Fill(deadline, cancel)) Fail("connection closed in the middle of a body");
    }
    std::string out = buf_.substr(0, n);
    buf_.erase(0, n);
    return out;
  }

  Response ReadResponse(const std::string& method, Clock::time_point deadline,
                        const std::function<bool()>& cancel) {
    Response r;
    std::string status_line;
    do {  // skip interim 1xx responses
      status_line = ReadLine(deadline, cancel);
      if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12) {
        Fail("bad status line: " + status_line.substr(0, 80));
      }
      r.status = std::atoi(status_line.c_str() + 9);
      r.headers.clear();
      while (true) {
        std::string line = ReadLine(deadline, cancel);
        if (line.empty()) break;
        size_t colon = line.find(':');
        if (colon == std::string::npos) continue;
        r.headers[Lower(Trim(line.substr(0, colon)))] = Trim(line.substr(colon + 1));
      }
    } while (r.status >= 100 && r.status < 200);
    std::string connection = Lower(r.Header("connection"));
    r.close = connection.find("close") != std::string::npos ||
              status_line.rfind("HTTP/1.0", 0) == 0;
    if (method == "HEAD" || r.status == 204 || r.status == 304) {
      // no body
    } else if (Lower(r.Header("transfer-encoding")).find("chunked") != std::string::npos) {
      while (true) {
        std::string size_line = ReadLine(deadline, cancel);
        size_t n = std::strtoull(size_line.c_str(), nullptr, 16);  // ignores ";ext"
        if (n == 0) {
          while (!ReadLine(deadline, cancel).empty()) {  // trailers
          }
          break;
        }
        if (r.body.size() + n > (64u << 20)) Fail("response body too large");
        r.body += ReadExactly(n, deadline, cancel);
        ReadExactly(2, deadline, cancel);  // CRLF after the chunk
      }
    } else if (auto cl = r.Header("content-length"); !cl.empty()) {
      size_t n = std::strtoull(cl.c_str(), nullptr, 10);
      if (n > (64u << 20)) Fail("response body too large");
      r.body = ReadExactly(n, deadline, cancel);
    } else {
      while (Fill(deadline, cancel)) {
      }
      r.body = std::move(buf_);
      buf_.clear();
      r.close = true;
    }
    if (r.close) Close();
    return r;
  }

  std::string host_, port_;
  int fd_ = -1;
  std::string buf_;  // bytes read past the previous response (none with a sane server)
};

}  // namespace detail

struct Options {
  std::string endpoint = "http://127.0.0.1:7070";
  std::string token;
  std::string instance_id;
  std::string deployment;
  int64_t revision = 0;
  std::string tenant = "default";
  json config = json::object();
  std::chrono::milliseconds timeout{10000};  // per request; long polls add their wait
  int max_retries = 5;                        // extra tries for retryable failures
  double backoff_initial_s = 0.2;             // n-th retry waits U(0, min(max, initial*2^n))
  double backoff_max_s = 5.0;
  std::function<void(const std::string&)> log;  // default: timestamped lines on stderr
};

struct HeartbeatReply {
  bool drain = false;
  bool killed = false;
  int64_t policy_version = 0;
};

struct RunOptions {
  double heartbeat_every_s = 5;
  int wait_s = 30;                        // long-poll wait (0..60)
  std::function<json()> metrics;          // {name: number}, may hold "cost_usd"
  bool exit_on_drain = true;              // return once drain is asked and no task is in hand
  bool serve_health = true;               // GET /healthz on PALM_PORT_HTTP when set
  bool install_signals = true;            // SIGTERM/SIGINT stop Run()
  size_t remember = 1024;                 // posted results kept to answer redeliveries
};

class Agent {
 public:
  // handler(task input, the whole task) -> output; throw to fail the task.
  using Handler = std::function<json(const json& input, const json& task)>;

  explicit Agent(Options options) : o_(std::move(options)) {
    std::string ep = o_.endpoint;
    if (ep.rfind("https://", 0) == 0) {
      throw std::invalid_argument("palm_agent: https endpoints are not supported: " + ep);
    }
    if (ep.rfind("http://", 0) == 0) ep = ep.substr(7);
    size_t slash = ep.find('/');
    std::string hostport = ep.substr(0, slash);
    base_ = slash == std::string::npos ? "" : ep.substr(slash);
    while (!base_.empty() && base_.back() == '/') base_.pop_back();
    if (!hostport.empty() && hostport[0] == '[') {  // [::1]:7070
      size_t close = hostport.find(']');
      host_ = hostport.substr(1, close - 1);
      port_ = close + 1 < hostport.size() && hostport[close + 1] == ':'
                  ? hostport.substr(close + 2) : "80";
    } else if (size_t colon = hostport.rfind(':'); colon != std::string::npos) {
      host_ = hostport.substr(0, colon);
      port_ = hostport.substr(colon + 1);
    } else {
      host_ = hostport;
      port_ = "80";
    }
    if (host_.empty()) host_ = "127.0.0.1";
    if (!o_.log) {
      std::string id = o_.instance_id.empty() ? "agent" : o_.instance_id;
      o_.log = [id](const std::string& m) {
        std::fprintf(stderr, "%s %s %s\n", detail::Timestamp().c_str(), id.c_str(), m.c_str());
        std::fflush(stderr);
      };
    }
  }

  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;
  Agent(Agent&& other) noexcept
      : o_(std::move(other.o_)), host_(std::move(other.host_)), port_(std::move(other.port_)),
        base_(std::move(other.base_)) {}

  // From the environment palm gives an instance (PALM_CONFIG that is not a JSON object is
  // logged and ignored).
  static Agent FromEnv() {
    auto env = [](const char* name, const char* def = "") {
      const char* v = std::getenv(name);
      return std::string(v && *v ? v : def);
    };
    Options o;
    o.endpoint = env("PALM_ENDPOINT", "http://127.0.0.1:7070");
    o.token = env("PALM_TOKEN");
    o.instance_id = env("PALM_INSTANCE_ID");
    o.deployment = env("PALM_DEPLOYMENT");
    o.revision = std::strtoll(env("PALM_REVISION", "0").c_str(), nullptr, 10);
    o.tenant = env("PALM_TENANT", "default");
    Agent a(std::move(o));
    std::string raw = env("PALM_CONFIG");
    if (!raw.empty()) {
      json cfg = json::parse(raw, nullptr, false);
      if (cfg.is_object()) {
        a.o_.config = std::move(cfg);
      } else {
        a.o_.log("PALM_CONFIG ignored (not a JSON object): " + raw.substr(0, 200));
      }
    }
    return a;
  }

  const Options& options() const { return o_; }
  const json& config() const { return o_.config; }
  const std::string& instance_id() const { return o_.instance_id; }
  bool drain() const { return drain_.load(); }
  bool killed() const { return killed_.load(); }
  bool stopping() const { return stop_.load() || detail::g_signalled.load(); }
  void Log(const std::string& m) const { o_.log(m); }

  // POST /v1/agent/heartbeat. Non-numeric metrics are dropped (the daemon refuses them).
  HeartbeatReply Heartbeat(const std::string& status = "ok", const std::string& reason = "",
                           const json& metrics = json::object(),
                           std::optional<double> cost_usd = std::nullopt, int retries = -1) {
    json body = {{"status", status}, {"metrics", json::object()}};
    if (metrics.is_object()) {
      for (const auto& [k, v] : metrics.items()) {
        if (v.is_number() && !(v.is_number_float() && v.get<double>() != v.get<double>())) {
          body["metrics"][k] = v;
        }
      }
    }
    if (!reason.empty()) body["reason"] = reason;
    if (cost_usd) body["cost_usd"] = *cost_usd;
    auto [code, answer] = Call("POST", "/v1/agent/heartbeat", body.dump(), retries);
    HeartbeatReply r;
    if (answer.is_object()) {
      r.drain = answer.value("drain", false);
      r.killed = answer.value("killed", false);
      r.policy_version = answer.value("policy_version", int64_t{0});
    }
    drain_ = r.drain;
    killed_ = r.killed;
    return r;
  }

  // GET /v1/agent/tasks/next?wait_s=N: the task, or nullopt when none came (also at once
  // while draining or not ready, and when Stop() or a signal interrupted the poll).
  std::optional<json> NextTask(int wait_s = 30) {
    wait_s = std::clamp(wait_s, 0, 60);
    try {
      auto [code, task] = Call("GET", "/v1/agent/tasks/next?wait_s=" + std::to_string(wait_s),
                               "", -1, std::chrono::seconds(wait_s), /*long_poll=*/true);
      if (code == 204 || !task.is_object()) return std::nullopt;
      return task;
    } catch (const TransportError&) {
      if (stopping()) return std::nullopt;
      throw;
    }
  }

  // POST /v1/agent/tasks/{id}/result. True once recorded. Throws LeaseLost on 409 (not
  // retried), except TASK_ALREADY_FINISHED after a retry (the first try was recorded).
  bool Complete(const std::string& task_id, bool ok, const json& output = nullptr,
                const std::string& error = "", std::optional<double> cost_usd = std::nullopt,
                std::optional<int64_t> attempt = std::nullopt, int retries = -1) {
    PostResult(task_id, ok, output, error, cost_usd, attempt, retries, std::nullopt);
    return true;
  }

  // Posts the result like Complete() and, in the same round trip, long-polls for the next
  // task (POST .../result?next_wait_s=N): that task, or nullopt when none came within
  // `wait_s` (or the first try was recorded but its answer lost, or Stop() cut the wait).
  std::optional<json> CompleteAndNext(const std::string& task_id, bool ok,
                                      const json& output = nullptr,
                                      const std::string& error = "",
                                      std::optional<double> cost_usd = std::nullopt,
                                      std::optional<int64_t> attempt = std::nullopt,
                                      int wait_s = 30, int retries = -1) {
    return PostResult(task_id, ok, output, error, cost_usd, attempt, retries,
                      std::clamp(wait_s, 0, 60));
  }

 private:
  std::optional<json> PostResult(const std::string& task_id, bool ok, const json& output,
                                 const std::string& error, std::optional<double> cost_usd,
                                 std::optional<int64_t> attempt, int retries,
                                 std::optional<int> next_wait_s) {
    json body = {{"ok", ok}};
    if (!output.is_null()) body["output"] = output;
    if (!error.empty()) {
      body["error"] = error;
    } else if (!ok) {
      body["error"] = "failed";
    }
    if (cost_usd) body["cost_usd"] = *cost_usd;
    if (attempt) body["attempt"] = *attempt;
    std::string path = "/v1/agent/tasks/" + detail::UrlEncode(task_id) + "/result";
    if (next_wait_s) path += "?next_wait_s=" + std::to_string(*next_wait_s);
    bool retried = false;
    try {
      auto [code, answer] =
          Call("POST", path, body.dump(), retries,
               std::chrono::seconds(next_wait_s.value_or(0)), /*long_poll=*/next_wait_s.has_value(),
               /*conflict_is_lease_lost=*/true, &retried);
      if (answer.is_object() && answer.contains("next") && answer["next"].is_object()) {
        return answer["next"];
      }
      return std::nullopt;
    } catch (const LeaseLost& e) {
      if (retried && e.code == "TASK_ALREADY_FINISHED") return std::nullopt;
      throw;
    } catch (const TransportError&) {
      if (!next_wait_s || !stopping()) throw;
      // Stop() cut the call short: make sure the result itself is recorded.
      return PostResult(task_id, ok, output, error, cost_usd, attempt, retries, std::nullopt);
    }
  }

 public:

  // What Run()'s heartbeats report: "ok" or "degraded" (with a reason).
  void SetStatus(const std::string& status, const std::string& reason = "") {
    std::lock_guard<std::mutex> l(mu_);
    status_ = status;
    reason_ = reason;
  }

  // Asks Run() to return after the task in hand; a long poll in flight ends within 100 ms.
  void Stop() {
    stop_ = true;
    cv_.notify_all();
  }

  int Run(const Handler& handler, RunOptions ro = {}) {
    if (ro.install_signals) {
      struct sigaction sa{};
      sa.sa_handler = detail::OnSignal;
      sigemptyset(&sa.sa_mask);
      ::sigaction(SIGTERM, &sa, nullptr);
      ::sigaction(SIGINT, &sa, nullptr);
    }
    std::thread health;
    int health_fd = -1;
    if (const char* port = std::getenv("PALM_PORT_HTTP"); ro.serve_health && port && *port) {
      health_fd = ListenHealth(std::atoi(port));
      if (health_fd >= 0) health = std::thread([this, health_fd] { ServeHealth(health_fd); });
    }
    Log("starting: deployment " + (o_.deployment.empty() ? "-" : o_.deployment) +
        ", revision " + std::to_string(o_.revision) + ", pid " + std::to_string(::getpid()));

    BeatOnce(ro);
    std::thread beat([this, &ro] { HeartbeatLoop(ro); });

    std::unordered_map<std::string, std::tuple<bool, json, std::string>> done;
    std::deque<std::string> order;
    double delay = 0.5;
    bool failing = false;
    std::optional<json> pending;  // the next task, handed over with the last result's answer
    while (!stopping()) {
      if (ro.exit_on_drain && drain()) {
        Log("drain requested and no task in hand: stopping");
        break;
      }
      if (killed()) {
        SleepUnlessStopped(std::min(1.0, ro.heartbeat_every_s));
        continue;
      }
      if (pending) {
        json task = std::move(*pending);
        pending = Handle(handler, task, done, order, ro);
        continue;
      }
      auto started = Clock::now();
      std::optional<json> task;
      try {
        task = NextTask(ro.wait_s);
        if (failing) Log("daemon reachable again");
        failing = false;
        delay = 0.5;
      } catch (const Error& e) {
        if (!failing) Log(std::string("polling for tasks failed (") + e.what() + "); retrying");
        failing = true;
        SleepUnlessStopped(Uniform(0, delay));
        delay = std::min(delay * 2, 30.0);
        continue;
      }
      if (!task) {
        if (Clock::now() - started < std::chrono::milliseconds(500) && !stopping()) {
          wake_ = true;  // an empty answer at once (not ready, draining): beat now, no spin
          cv_.notify_all();
          SleepUnlessStopped(0.5);
        }
        continue;
      }
      pending = Handle(handler, *task, done, order, ro);
    }
    Stop();
    beat.join();
    if (health.joinable()) health.join();
    if (health_fd >= 0) ::close(health_fd);
    CloseConnections();
    Log("stopped");
    return 0;
  }

 private:
  std::tuple<int, json> Call(const std::string& method, const std::string& path,
                             const std::string& body, int retries,
                             std::chrono::milliseconds extra_timeout = {}, bool long_poll = false,
                             bool conflict_is_lease_lost = false, bool* retried = nullptr) {
    if (retries < 0) retries = o_.max_retries;
    std::map<std::string, std::string> headers = {{"Authorization", "Bearer " + o_.token},
                                                  {"Accept", "application/json"}};
    if (!body.empty()) headers["Content-Type"] = "application/json";
    std::optional<Error> last;
    for (int n = 0; n <= retries; ++n) {
      if (n > 0) {
        if (retried) *retried = true;
        double cap = std::min(o_.backoff_max_s, o_.backoff_initial_s * std::pow(2.0, n - 1));
        double d = Uniform(0, cap);
        if (last && last->retry_after_s >= 0) {
          d = std::max(d, std::min(last->retry_after_s, o_.backoff_max_s * 4));
        }
        if (long_poll) {
          SleepUnlessStopped(d);
        } else {
          std::this_thread::sleep_for(std::chrono::duration<double>(d));
        }
      }
      if (long_poll && stopping()) throw TransportError("stopping");
      detail::Connection& conn = ThreadConnection();
      detail::Response r;
      try {
        std::function<bool()> cancel;
        if (long_poll) cancel = [this] { return stopping(); };
        r = conn.Do(method, base_ + path, headers, body, o_.timeout + extra_timeout, cancel);
      } catch (const TransportError& e) {
        if (long_poll && stopping()) throw TransportError("stopping");
        last = TransportError(method + " " + path + ": " + e.what());
        continue;
      }
      if (r.status >= 200 && r.status < 300) {
        if (r.status == 204 || r.body.empty()) return {r.status, nullptr};
        json parsed = json::parse(r.body, nullptr, false);
        if (parsed.is_discarded()) {
          throw Error(r.status, "BAD_RESPONSE", "not JSON: " + r.body.substr(0, 200));
        }
        return {r.status, std::move(parsed)};
      }
      Error err = ErrorFrom(r);
      if (r.status == 429 || r.status >= 500) {
        std::string ra = r.Header("retry-after");
        if (!ra.empty()) err.retry_after_s = std::atof(ra.c_str());
        last = err;
        continue;
      }
      if (r.status == 409 && conflict_is_lease_lost) {
        throw LeaseLost(err.status, err.code, err.message, err.hint);
      }
      throw err;
    }
    if (last->status == 0) throw TransportError(last->message);
    throw *last;
  }

  static Error ErrorFrom(const detail::Response& r) {
    std::string code = "HTTP_" + std::to_string(r.status), message = r.body.substr(0, 500), hint;
    json j = json::parse(r.body, nullptr, false);
    if (j.is_object() && j.contains("error") && j["error"].is_object()) {
      const json& e = j["error"];
      if (e.contains("code") && e["code"].is_string()) code = e["code"];
      if (e.contains("message") && e["message"].is_string()) message = e["message"];
      if (e.contains("hint") && e["hint"].is_string()) hint = e["hint"];
    }
    return Error(r.status, code, message, hint);
  }

  detail::Connection& ThreadConnection() {
    std::lock_guard<std::mutex> l(conn_mu_);
    auto& c = conns_[std::this_thread::get_id()];
    if (!c) c = std::make_unique<detail::Connection>(host_, port_);
    return *c;
  }

  void CloseConnections() {
    std::lock_guard<std::mutex> l(conn_mu_);
    conns_.clear();
  }

  double Uniform(double lo, double hi) {
    std::lock_guard<std::mutex> l(rng_mu_);
    if (hi <= lo) return lo;
    return std::uniform_real_distribution<double>(lo, hi)(rng_);
  }

  void SleepUnlessStopped(double seconds) {
    std::unique_lock<std::mutex> l(mu_);
    auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(seconds));
    // Signals cannot notify a condition variable: wake every 100 ms to look.
    while (!stopping() && Clock::now() < until) {
      cv_.wait_until(l, std::min(until, Clock::now() + std::chrono::milliseconds(100)));
    }
  }

  // Runs the handler and posts the result; returns the next task when the daemon handed
  // one over with the result's answer (one round trip per task).
  std::optional<json> Handle(
      const Handler& handler, const json& task,
      std::unordered_map<std::string, std::tuple<bool, json, std::string>>& done,
      std::deque<std::string>& order, const RunOptions& ro) {
    const size_t remember = ro.remember;
    std::string id = task.value("id", "");
    std::optional<int64_t> attempt;
    if (task.contains("attempt") && task["attempt"].is_number_integer()) {
      attempt = task["attempt"].get<int64_t>();
    }
    bool ok;
    json output;
    std::string error;
    if (auto it = done.find(id); it != done.end()) {
      std::tie(ok, output, error) = it->second;
      Log(id + " redelivered (attempt " + std::to_string(attempt.value_or(0)) +
          "): sending the same result");
    } else {
      try {
        output = handler(task.contains("input") ? task["input"] : json(nullptr), task);
        ok = true;
      } catch (const std::exception& e) {
        ok = false;
        error = e.what();
      } catch (...) {
        ok = false;
        error = "unknown exception";
      }
      if (ok) {
        ++tasks_done_;
      } else {
        ++tasks_failed_;
        Log(id + " failed: " + error);
      }
      done[id] = {ok, ok ? output : json(nullptr), error};
      order.push_back(id);
      while (order.size() > remember) {
        done.erase(order.front());
        order.pop_front();
      }
    }
    // Keep trying through a daemon outage for as long as the lease may last.
    double lease = task.contains("timeout_s") && task["timeout_s"].is_number()
                       ? task["timeout_s"].get<double>() : 60.0;
    auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(std::max(10.0, lease)));
    while (true) {
      try {
        if (stopping() || killed() || (ro.exit_on_drain && drain())) {
          Complete(id, ok, output, error, std::nullopt, attempt);
          return std::nullopt;
        }
        return CompleteAndNext(id, ok, output, error, std::nullopt, attempt, ro.wait_s);
      } catch (const LeaseLost& e) {
        Log(id + " result not recorded: " + e.code + " (" + e.message + ")");
        return std::nullopt;
      } catch (const TransportError& e) {
        if (Clock::now() > deadline) {
          Log(id + " result lost: " + e.what());
          return std::nullopt;
        }
        std::this_thread::sleep_for(std::chrono::duration<double>(Uniform(0.5, 2.0)));
      } catch (const Error& e) {
        Log(id + " result refused: " + e.what());
        return std::nullopt;
      }
    }
  }

  void BeatOnce(const RunOptions& ro) {
    json metrics = {{"tasks_done", tasks_done_.load()}, {"tasks_failed", tasks_failed_.load()}};
    std::optional<double> cost;
    if (ro.metrics) {
      try {
        json extra = ro.metrics();
        if (extra.is_object()) {
          for (auto& [k, v] : extra.items()) {
            if (k == "cost_usd" && v.is_number()) {
              cost = v.get<double>();
            } else {
              metrics[k] = v;
            }
          }
        }
      } catch (const std::exception& e) {
        Log(std::string("metrics callback failed: ") + e.what());
      }
    }
    std::string status, reason;
    {
      std::lock_guard<std::mutex> l(mu_);
      status = status_;
      reason = reason_;
    }
    try {
      Heartbeat(status, reason, metrics, cost, /*retries=*/1);
      if (beat_failing_) Log("heartbeats resumed");
      beat_failing_ = false;
    } catch (const Error& e) {
      if (!beat_failing_) Log(std::string("heartbeat failed (") + e.what() + "); will keep trying");
      beat_failing_ = true;
    }
  }

  void HeartbeatLoop(const RunOptions& ro) {
    bool was_killed = killed();
    auto period = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(ro.heartbeat_every_s));
    auto last = Clock::now();
    while (!stopping()) {
      {
        std::unique_lock<std::mutex> l(mu_);
        auto until = last + period;
        while (!stopping() && !wake_ && Clock::now() < until) {
          cv_.wait_until(l, std::min(until, Clock::now() + std::chrono::milliseconds(100)));
        }
        wake_ = false;
      }
      if (stopping()) break;
      if (Clock::now() - last < std::min<Clock::duration>(period, std::chrono::seconds(1))) {
        continue;  // an early beat asked for right after one: wait for the period
      }
      last = Clock::now();
      BeatOnce(ro);
      if (killed() != was_killed) {
        was_killed = killed();
        Log(was_killed ? "kill switch engaged: idling" : "kill switch lifted");
      }
    }
    std::lock_guard<std::mutex> l(conn_mu_);
    conns_.erase(std::this_thread::get_id());
  }

  int ListenHealth(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd, 16) != 0) {
      Log("cannot serve /healthz on port " + std::to_string(port) + ": " + std::strerror(errno));
      ::close(fd);
      return -1;
    }
    Log("serving GET /healthz on 127.0.0.1:" + std::to_string(port));
    return fd;
  }

  // One request per connection, answered and closed (probes are small and rare).
  void ServeHealth(int fd) {
    while (!stopping()) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::string req;
      char buf[2048];
      auto deadline = Clock::now() + std::chrono::seconds(1);
      while (req.find("\r\n\r\n") == std::string::npos && req.size() < 8192 &&
             Clock::now() < deadline) {
        pollfd q{c, POLLIN, 0};
        if (::poll(&q, 1, 100) <= 0) continue;
        ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      bool healthz = req.rfind("GET /healthz ", 0) == 0 || req.rfind("GET /healthz?", 0) == 0;
      std::string body = healthz ? (stopping() ? "stopping" : "ok") : "not found";
      std::string status = healthz ? (stopping() ? "503 Service Unavailable" : "200 OK")
                                   : "404 Not Found";
      std::string resp = "HTTP/1.1 " + status + "\r\nContent-Type: text/plain\r\nContent-Length: " +
                         std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
      (void)::send(c, resp.data(), resp.size(), MSG_NOSIGNAL);
      ::close(c);
    }
  }

  Options o_;
  std::string host_, port_, base_;
  std::atomic<bool> drain_{false}, killed_{false}, stop_{false};
  std::atomic<int64_t> tasks_done_{0}, tasks_failed_{0};
  std::mutex mu_;  // status_, reason_, wake_, cv_
  std::condition_variable cv_;
  bool wake_ = false;
  std::string status_ = "ok", reason_;
  bool beat_failing_ = false;  // heartbeat thread (and the first beat, before it starts)
  std::mutex conn_mu_;
  std::map<std::thread::id, std::unique_ptr<detail::Connection>> conns_;
  std::mutex rng_mu_;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace palm_agent
