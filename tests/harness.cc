#include "tests/harness.h"

#include <fcntl.h>
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
