#include "tests/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

extern char** environ;

namespace palm::testing {

std::string PalmBin() {
  const char* p = std::getenv("PALM_BIN");
  return p ? p : "palm";
}

std::string SourceDir() {
  const char* p = std::getenv("PALM_SOURCE_DIR");
  return p ? p : ".";
}

bool WaitFor(const std::function<bool()>& cond, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (cond()) return true;
    if (absl::Now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

bool ProcessAlive(int pid) {
  if (pid <= 0) return false;
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return false;
  size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/palm-it-XXXXXX";
  path_ = mkdtemp(tmpl);
}
TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Daemon::~Daemon() {
  if (pid_ > 0) Kill9();
}

void Daemon::Start(const std::vector<std::string>& extra) {
  std::filesystem::remove(data_dir_ + "/palmd.endpoint");
  std::vector<std::string> args = {PalmBin(), "daemon", "start", "--foreground", "--listen",
                                   "127.0.0.1:0", "--data-dir", data_dir_};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  std::string out = data_dir_ + "/daemon.out";
  std::filesystem::create_directories(data_dir_);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ASSERT_EQ(rc, 0) << "cannot start " << args[0];
  bool up = WaitFor([&] {
    std::ifstream f(data_dir_ + "/palmd.endpoint");
    std::string ep;
    if (!(f >> ep)) return false;
    endpoint_ = ep;
    http::Client c(endpoint_, "", absl::Seconds(2));
    auto r = c.Do("GET", "/healthz");
    return r.ok() && r->status == 200;
  });
  std::ifstream log(out);
  std::string text((std::istreambuf_iterator<char>(log)), {});
  ASSERT_TRUE(up) << "daemon did not come up; its output:\n" << text;
}

void Daemon::Kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void Daemon::Terminate() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  Wait();
}

void Daemon::StopWithAgents() {
  if (!running()) return;
  Call("POST", "/v1/daemon/stop", {{"all", true}});
  Wait();
}

int Daemon::Wait(absl::Duration timeout) {
  int status = 0;
  bool done = WaitFor([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, timeout);
  if (!done) {
    ADD_FAILURE() << "daemon did not exit within " << timeout;
    Kill9();
    return -1;
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string Daemon::token() const {
  std::ifstream f(data_dir_ + "/admin.token");
  std::string t;
  f >> t;
  return t;
}

Daemon::Reply Daemon::CallRaw(const std::string& method, const std::string& target,
                              const std::string& body, const std::string& token) {
  http::Client c(endpoint_, token, absl::Seconds(30));
  auto r = c.Do(method, target, body);
  Reply reply;
  if (!r.ok()) {
    ADD_FAILURE() << method << " " << target << ": " << r.status();
    return reply;
  }
  reply.status = r->status;
  reply.raw = r->body;
  reply.body = Json::parse(r->body, nullptr, false);
  return reply;
}

Daemon::Reply Daemon::Call(const std::string& method, const std::string& target,
                           const Json& body) {
  return CallRaw(method, target, body.is_null() ? "" : body.dump(), token());
}

std::vector<Json> Daemon::ReadSse(const std::string& target, const std::string& last_event_id,
                                  const std::function<bool(const std::vector<Json>&)>& done,
                                  absl::Duration timeout) {
  std::vector<Json> events;
  size_t colon = endpoint_.rfind(':');
  int port = std::stoi(endpoint_.substr(colon + 1));
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ADD_FAILURE() << "connect to " << endpoint_;
    ::close(fd);
    return events;
  }
  std::string req = absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                                 "Authorization: Bearer ", token(), "\r\n");
  if (!last_event_id.empty()) absl::StrAppend(&req, "Last-Event-ID: ", last_event_id, "\r\n");
  req += "\r\n";
  (void)::write(fd, req.data(), req.size());
  std::string buf;
  absl::Time deadline = absl::Now() + timeout;
  while (!done(events) && absl::Now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char chunk[4096];
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    // Collect every complete "data: {...}" line (chunk-size lines never start with "data").
    size_t pos;
    while ((pos = buf.find("data: ")) != std::string::npos) {
      size_t end = buf.find('\n', pos);
      if (end == std::string::npos) break;
      events.push_back(Json::parse(buf.substr(pos + 6, end - pos - 6), nullptr, false));
      buf.erase(0, end + 1);
    }
  }
  ::close(fd);
  return events;
}

void Daemon::RegisterSpec(const Json& spec) {
  auto r = Call("POST", "/v1/specs", spec);
  ASSERT_TRUE(r.status == 201 || r.status == 200) << r.status << " " << r.raw;
}

void Daemon::CreateDeployment(const Json& d) {
  auto r = Call("POST", "/v1/deployments", d);
  ASSERT_EQ(r.status, 201u) << r.raw;
}

std::vector<Json> Daemon::Instances(const std::string& deployment) {
  auto r = Call("GET", "/v1/instances?deployment=" + deployment);
  std::vector<Json> out;
  if (r.status != 200) return out;
  for (auto& i : r.body["items"]) out.push_back(i);
  return out;
}

bool Daemon::WaitRunning(const std::string& deployment, size_t n, absl::Duration timeout) {
  return WaitFor(
      [&] {
        auto items = Instances(deployment);
        if (items.size() != n) return false;
        for (auto& i : items) {
          if (i["state"] != "Running" || !i["pid"].is_number() ||
              !ProcessAlive(i["pid"].get<int>())) {
            return false;
          }
        }
        return true;
      },
      timeout);
}

}  // namespace palm::testing
