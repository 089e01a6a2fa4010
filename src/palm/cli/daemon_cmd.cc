// palm daemon start | stop | status.
//
// `start` never forks: it posix_spawn()s this same binary as `daemon start --foreground` in
// its own session, with stdout/stderr appended to <data-dir>/palmd.log, and waits for
// /healthz. `stop` asks the daemon over the API and falls back to SIGTERM on the pid in
// <data-dir>/palmd.pid when the daemon does not answer.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "palm/base/error.h"
#include "palm/cli/commands.h"
#include "palm/cli/output.h"
#include "palm/daemon/daemon.h"
#include "palm/http/client.h"

extern char** environ;

namespace palm::cli {
namespace {

namespace fs = std::filesystem;

struct StartOptions {
  bool foreground = false;
  std::string listen;
  std::string store = "sqlite";
  std::string examples;
};

// The URL a client uses for a listen address ("0.0.0.0:7070" is reached on 127.0.0.1).
std::string UrlForListen(const std::string& listen) {
  std::string host = listen, port;
  if (auto pos = listen.rfind(':'); pos != std::string::npos) {
    host = listen.substr(0, pos);
    port = listen.substr(pos + 1);
  }
  if (host.empty() || host == "0.0.0.0" || host == "*") host = "127.0.0.1";
  if (host == "::" || host == "[::]") host = "[::1]";
  return absl::StrCat("http://", host, port.empty() ? "" : ":", port);
}

bool Answers(const std::string& url) {
  http::Client probe(url, "", absl::Seconds(1));
  auto r = probe.Do("GET", "/healthz");
  return r.ok() && r->status == 200;
}

std::optional<pid_t> ReadPidFile(const std::string& data_dir) {
  std::ifstream in(fs::path(data_dir) / "palmd.pid");
  long pid = 0;
  if (!(in >> pid) || pid <= 1) return std::nullopt;
  return static_cast<pid_t>(pid);
}

// Whether `pid` is alive and is a palm daemon (guards against a stale pid file whose pid
// was reused by an unrelated process).
bool IsPalmDaemon(pid_t pid) {
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  std::ifstream in(absl::StrCat("/proc/", pid, "/cmdline"), std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<std::string> args = absl::StrSplit(ss.str(), '\0');
  bool daemon = false, start = false;
  for (const auto& a : args) {
    daemon |= a == "daemon";
    start |= a == "start";
  }
  return daemon && start;
}

bool ProcessGone(pid_t pid) {
  if (kill(pid, 0) == 0) {
    // A zombie still answers kill(0); treat it as gone.
    std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
    std::string line;
    std::getline(in, line);
    auto rp = line.rfind(')');
    return rp != std::string::npos && rp + 2 < line.size() && line[rp + 2] == 'Z';
  }
  return errno == ESRCH;
}

std::string TailOfFile(const std::string& path, std::streamoff from, int lines) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(from);
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<std::string> all = absl::StrSplit(ss.str(), '\n');
  while (!all.empty() && all.back().empty()) all.pop_back();
  if (static_cast<int>(all.size()) > lines) all.erase(all.begin(), all.end() - lines);
  return absl::StrJoin(all, "\n");
}

std::string SelfExe() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("/proc/self/exe") : p.string();
}

absl::Status StartDaemon(Context& ctx, const StartOptions& opts) {
  const std::string data_dir = ctx.DataDir();
  const std::string listen =
      opts.listen.empty() ? ListenFromEndpoint(ctx.options().endpoint) : opts.listen;
  std::string examples;
  if (!opts.examples.empty()) {
    std::error_code ec;
    examples = fs::absolute(opts.examples, ec).lexically_normal().string();
    if (!fs::is_directory(examples)) {
      return UsageError(absl::StrCat("--examples ", opts.examples, ": not a directory"));
    }
  }
  if (opts.foreground) {
    daemon::DaemonOptions d;
    d.listen = listen;
    d.data_dir = data_dir;
    d.store = opts.store;
    d.examples_dir = examples;
    ctx.set_exit_code(daemon::RunDaemon(d));
    return absl::OkStatus();
  }

  const std::string url = UrlForListen(listen);
  if (Answers(url)) {
    return Error(absl::StatusCode::kAlreadyExists, "DAEMON_RUNNING",
                 absl::StrCat("a palm daemon is already running at ", url),
                 "see it with `palm daemon status`; stop it with `palm daemon stop`");
  }
  std::error_code ec;
  fs::create_directories(data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create data dir ", data_dir, ": ", ec.message()));
  }
  const std::string log = (fs::path(data_dir) / "palmd.log").string();
  std::streamoff log_start = 0;
  if (auto size = fs::file_size(log, ec); !ec) log_start = static_cast<std::streamoff>(size);

  const std::string exe = SelfExe();
  std::vector<std::string> args = {exe,      "--data-dir", data_dir, "daemon",
                                   "start",  "--foreground", "--listen", listen,
                                   "--store", opts.store};
  if (!examples.empty()) {
    args.push_back("--examples");
    args.push_back(examples);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, exe.c_str(), &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("cannot start the daemon (", exe,
                                            "): ", std::strerror(rc)));
  }

  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  while (true) {
    int wstatus = 0;
    if (waitpid(pid, &wstatus, WNOHANG) == pid) {
      const std::string tail = TailOfFile(log, log_start, 20);
      if (!tail.empty()) std::cerr << tail << "\n";
      return Error(absl::StatusCode::kInternal, "DAEMON_START_FAILED",
                   absl::StrCat("the palm daemon exited during start-up (",
                                WIFEXITED(wstatus)
                                    ? absl::StrCat("exit code ", WEXITSTATUS(wstatus))
                                    : absl::StrCat("signal ", WTERMSIG(wstatus)),
                                ")"),
                   absl::StrCat("the lines above are the end of ", log));
    }
    if (Answers(url)) break;
    if (absl::Now() > deadline) {
      const std::string tail = TailOfFile(log, log_start, 20);
      if (!tail.empty()) std::cerr << tail << "\n";
      return Error(absl::StatusCode::kDeadlineExceeded, "TIMEOUT",
                   absl::StrCat("the palm daemon (pid ", pid, ") did not answer on ", url,
                                " within 15s"),
                   absl::StrCat("it is still starting or stuck; see ", log,
                                ", stop it with `palm daemon stop`"));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  if (ctx.format() != OutputFormat::kTable) {
    ApiResult r;
    r.doc = Doc{{"pid", pid}, {"endpoint", url}, {"data_dir", data_dir}, {"log", log}};
    PrintMachine(ctx.format(), r);
  } else {
    std::cout << "palm daemon started (pid " << pid << ") on " << url << ", data dir "
              << data_dir << ", log " << log << "\n";
  }
  return absl::OkStatus();
}

// Waits until `pid` (when known) is gone and the endpoint stops answering.
bool WaitStopped(const std::string& endpoint, std::optional<pid_t> pid, absl::Time deadline) {
  while (absl::Now() < deadline) {
    const bool process_gone = !pid || ProcessGone(*pid);
    if (process_gone && !Answers(endpoint)) return true;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return false;
}

absl::Status StopDaemon(Context& ctx, bool all) {
  const std::string endpoint = ctx.options().endpoint;
  const std::string data_dir = ctx.DataDir();
  std::optional<pid_t> pid = ReadPidFile(data_dir);
  if (pid && !IsPalmDaemon(*pid)) pid.reset();
  auto timeout = ctx.Timeout(all ? absl::Seconds(120) : absl::Seconds(30));
  if (!timeout.ok()) return timeout.status();
  const absl::Time deadline = absl::Now() + *timeout;

  auto r = ctx.Call("POST", "/v1/daemon/stop", Doc{{"all", all}}.dump());
  if (r.ok()) {
    if (!WaitStopped(endpoint, pid, deadline)) {
      return Error(absl::StatusCode::kDeadlineExceeded, "TIMEOUT",
                   absl::StrCat("the palm daemon at ", endpoint, " accepted the stop but is "
                                "still running after ", absl::FormatDuration(*timeout)),
                   all ? "agents may take their grace period to stop; raise --timeout"
                       : "see <data-dir>/palmd.log");
    }
    std::cout << (all ? "palm daemon stopped (agents stopped too)"
                      : "palm daemon stopped (agents left running)")
              << "\n";
    return absl::OkStatus();
  }
  // Not answering (nothing listens, or a hung daemon) -> signal the pid file's process.
  const std::string code = ErrorCode(r.status());
  if (code != "DAEMON_UNREACHABLE" && code != "TIMEOUT") return r.status();
  if (!pid) {
    std::cout << "palm daemon is not running at " << endpoint << "\n";
    return absl::OkStatus();
  }
  // The daemon does not answer but its process exists: ask it to stop with SIGTERM.
  if (kill(*pid, SIGTERM) != 0 && errno != ESRCH) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot signal the palm daemon (pid ", *pid, "): ", std::strerror(errno)));
  }
  if (!WaitStopped(endpoint, pid, deadline)) {
    return Error(absl::StatusCode::kDeadlineExceeded, "TIMEOUT",
                 absl::StrCat("the palm daemon (pid ", *pid, ") is still running ",
                              absl::FormatDuration(*timeout), " after SIGTERM"),
                 absl::StrCat("see ", data_dir, "/palmd.log; `kill -9 ", *pid,
                              "` ends it (agents keep running)"));
  }
  std::cout << "palm daemon stopped (pid " << *pid << ", signalled: it did not answer at "
            << endpoint << ")\n";
  if (all) {
    std::cerr << "warning: the agents were left running (the daemon could not be asked to "
                 "stop them); the next `palm daemon start` adopts them\n";
  }
  return absl::OkStatus();
}

absl::Status DaemonStatus(Context& ctx) {
  auto r = ctx.Get("/v1/daemon");
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  std::cout << "palm daemon running at " << ctx.options().endpoint << "\n";
  Table t({"field", "value"});
  if (r->doc.is_object()) {
    for (auto it = r->doc.begin(); it != r->doc.end(); ++it) {
      std::string value = Cell(it.value());
      if (it.key() == "uptime_s" && it.value().is_number()) {
        value = absl::StrCat(value, " (", FormatAge(absl::Seconds(it.value().get<double>())),
                             ")");
      }
      t.AddRow({it.key(), value});
    }
  }
  std::cout << t.Render();
  return absl::OkStatus();
}

}  // namespace

std::string ListenFromEndpoint(const std::string& endpoint) {
  constexpr std::string_view kHttp = "http://";
  if (endpoint.rfind(kHttp, 0) != 0) return "127.0.0.1:7070";
  std::string hostport = endpoint.substr(kHttp.size());
  if (auto slash = hostport.find('/'); slash != std::string::npos) hostport.resize(slash);
  if (hostport.empty()) return "127.0.0.1:7070";
  // A port is needed to listen; http:// without one means 80, which is rarely meant.
  const auto colon = hostport.rfind(':');
  const auto bracket = hostport.rfind(']');
  if (colon == std::string::npos || (bracket != std::string::npos && colon < bracket)) {
    return absl::StrCat(hostport, ":80");
  }
  return hostport;
}

void AddDaemonCommands(CLI::App& app, Action* action) {
  auto* daemon = app.add_subcommand("daemon", "Run and control the palm control plane");
  daemon->require_subcommand(1);

  auto start_opts = std::make_shared<StartOptions>();
  auto* start = daemon->add_subcommand("start", "Start the daemon (in the background)");
  start->add_flag("--foreground", start_opts->foreground,
                  "Run in this process instead of in the background");
  start->add_option("--listen", start_opts->listen,
                    "Address to listen on (default: host:port of --endpoint)");
  start->add_option("--store", start_opts->store, "Store: sqlite (in the data dir)")
      ->check(CLI::IsMember({"sqlite"}));
  start->add_option("--examples", start_opts->examples,
                    "Register every AgentSpec and apply every Deployment in DIR/specs");
  start->callback([action, start_opts] {
    *action = [start_opts](Context& ctx) { return StartDaemon(ctx, *start_opts); };
  });

  auto all = std::make_shared<bool>(false);
  auto* stop = daemon->add_subcommand("stop", "Stop the daemon (agents keep running)");
  stop->add_flag("--all", *all, "Stop every agent first");
  stop->callback([action, all] {
    *action = [all](Context& ctx) { return StopDaemon(ctx, *all); };
  });

  auto* status = daemon->add_subcommand("status", "Show the daemon's version, pid, uptime");
  status->callback([action] { *action = DaemonStatus; });
}

}  // namespace palm::cli
