#include "palm/daemon/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/signal_set.hpp"
#include "boost/asio/steady_timer.hpp"
#include "palm/api/api.h"
#include "palm/base/clock.h"
#include "palm/base/crypto.h"
#include "palm/base/error.h"
#include "palm/base/log.h"
#include "palm/controller/runner.h"
#include "palm/controller/supervisor.h"
#include "palm/daemon/examples.h"
#include "palm/daemon/task_driver.h"
#include "palm/health/health_manager.h"
#include "palm/http/fd_limit.h"
#include "palm/http/server.h"
#include "palm/runtime/process_runtime.h"
#include "palm/store/store.h"

extern char** environ;

namespace palm::daemon {
namespace {

namespace fs = std::filesystem;

constexpr char kVersion[] = "0.1.0";

// Holds an exclusive lock on <data-dir>/palmd.lock for the daemon's lifetime, so two
// daemons never share a data dir.
class DataDirLock {
 public:
  absl::Status Acquire(const std::string& dir) {
    std::string path = dir + "/palmd.lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) {
      return Error(absl::StatusCode::kUnavailable, "DATA_DIR_UNUSABLE",
                   absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
    }
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      std::string pid;
      std::ifstream(dir + "/palmd.pid") >> pid;
      return Error(absl::StatusCode::kAlreadyExists, "DAEMON_RUNNING",
                   absl::StrCat("another palm daemon (pid ", pid.empty() ? "?" : pid,
                                ") is using the data dir ", dir),
                   "stop it with `palm daemon stop`, or use another --data-dir");
    }
    return absl::OkStatus();
  }
  ~DataDirLock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  int fd_ = -1;
};

absl::Status WriteFileAtomically(const std::string& path, const std::string& content,
                                 mode_t mode) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot write ", tmp, ": ", std::strerror(errno)));
  }
  ::fchmod(fd, mode);
  bool ok = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  ok = ok && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

// Makes sure <data-dir>/admin.token exists (mode 0600) and the store holds its hash.
// A missing file yields a new token: whoever can write the data dir is admin anyway.
absl::StatusOr<std::string> EnsureAdminToken(store::Store& store, const std::string& dir) {
  std::string path = dir + "/admin.token";
  PALM_ASSIGN_OR_RETURN(auto stored, store.GetMeta("admin_token_hash"));
  std::string token;
  std::ifstream in(path);
  if (in) std::getline(in, token);
  if (!token.empty() && stored && ConstantTimeEquals(Sha256Hex(token), *stored)) {
    ::chmod(path.c_str(), 0600);
    return *stored;
  }
  if (stored) PALM_LOG(kWarning, "admin token file missing or changed; issuing a new token");
  token = RandomToken();
  PALM_RETURN_IF_ERROR(WriteFileAtomically(path, token + "\n", 0600));
  std::string hash = Sha256Hex(token);
  PALM_RETURN_IF_ERROR(store.PutMeta("admin_token_hash", hash));
  PALM_LOG(kInfo, "admin token written to ", path);
  return hash;
}

std::map<std::string, std::string> InheritedEnv() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    size_t eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return env;
}

std::string HostOf(const std::string& listen) {
  size_t colon = listen.rfind(':');
  std::string host = colon == std::string::npos ? listen : listen.substr(0, colon);
  if (host.empty() || host == "0.0.0.0" || host == "localhost") return "127.0.0.1";
  if (host == "[::]") return "[::1]";
  return host;
}

int Fail(const absl::Status& s) {
  std::cerr << "palm daemon: " << s.message() << "\n";
  if (std::string hint = ErrorHint(s); !hint.empty()) std::cerr << "hint: " << hint << "\n";
  return 1;
}

}  // namespace

int RunDaemon(const DaemonOptions& options) {
  std::error_code ec;
  fs::create_directories(options.data_dir, ec);
  fs::create_directories(fs::path(options.data_dir) / "logs", ec);
  std::string data_dir = fs::absolute(options.data_dir, ec).lexically_normal().string();
  if (!data_dir.empty() && data_dir.back() == '/') data_dir.pop_back();
  ::chmod(data_dir.c_str(), 0700);
  if (options.store != "sqlite") {
    return Fail(InvalidArgument(absl::StrCat("--store ", options.store, " is not supported yet"),
                                "use the embedded store: --store sqlite"));
  }

  DataDirLock lock;
  if (auto st = lock.Acquire(data_dir); !st.ok()) return Fail(st);
  std::string pid_path = data_dir + "/palmd.pid";
  if (auto st = WriteFileAtomically(pid_path, absl::StrCat(::getpid(), "\n"), 0644); !st.ok()) {
    return Fail(st);
  }
  ::signal(SIGPIPE, SIG_IGN);

  auto store = store::OpenSqliteStore(data_dir + "/palm.db");
  if (!store.ok()) return Fail(store.status());
  auto admin_hash = EnsureAdminToken(**store, data_dir);
  if (!admin_hash.ok()) return Fail(admin_hash.status());

  boost::asio::io_context io(1);
  const Clock& clock = RealClock::Get();
  absl::Time started_at = clock.Now();
  // Every connection costs a descriptor, so do agents' pidfds, spawns, probes, log files
  // and the store: raise the soft limit (1024 by default) to the hard one and keep a
  // reserve, so the connection cap (a clean 503) comes before running out of descriptors.
  // Agents get the soft limit the daemon was started with back (see child_nofile_soft).
  runtime::ProcessRuntimeOptions runtime_options;
  http::ServerOptions server_options;
  std::string fd_note;
  auto fds = http::RaiseFdLimit();
  if (fds.ok()) {
    runtime_options.child_nofile_soft = fds->previous;
    server_options.max_connections = http::MaxConnectionsForFdLimit(fds->soft);
    fd_note = absl::StrCat(" (RLIMIT_NOFILE ", fds->soft,
                           fds->previous != fds->soft ? absl::StrCat(", raised from ", fds->previous)
                                                      : std::string(),
                           ", hard ", fds->hard, ")");
  } else {
    PALM_LOG(kWarning, "cannot read the file descriptor limit: ", fds.status().message());
  }
  // Instances' cgroups per data dir: two daemons on one host never share an instance's group.
  runtime_options.cgroup_parent = "palm/" + Sha256Hex(data_dir).substr(0, 12);
  auto runtime = runtime::NewProcessRuntime(io, runtime_options);
  controller::KernelPortAllocator ports;

  std::unique_ptr<api::Api> api;
  http::Server server(io, server_options,
                      [&api](http::Request req, std::shared_ptr<http::Exchange> ex) {
                        api->Handle(std::move(req), std::move(ex));
                      });
  if (auto st = server.Listen(options.listen); !st.ok()) {
    return Fail(Annotate(st, absl::StrCat("cannot listen on ", options.listen)));
  }
  std::string endpoint = absl::StrCat("http://", HostOf(options.listen), ":", server.port());
  // Where this daemon answers, for tools started with --listen ...:0 (tests, scripts).
  std::string endpoint_path = data_dir + "/palmd.endpoint";
  if (auto st = WriteFileAtomically(endpoint_path, endpoint + "\n", 0644); !st.ok()) {
    return Fail(st);
  }

  controller::SupervisorOptions sup_options;
  sup_options.data_dir = data_dir;
  sup_options.endpoint = endpoint;
  sup_options.base_env = InheritedEnv();
  events::EventLog event_log;
  if (auto st = event_log.Load(**store); !st.ok()) return Fail(Annotate(st, "loading events"));
  controller::Supervisor supervisor(**store, *runtime, clock, ports, sup_options, &event_log);
  runtime->SetExitCallback([&supervisor](const std::string& key, runtime::ExitStatus status) {
    supervisor.OnExit(key, status);
  });
  health::HealthManager health(io, clock, [&supervisor](const health::HealthReport& report) {
    supervisor.OnHealthReport(report);
  });
  supervisor.SetHealthManager(&health);
  tasks::TaskEngine task_engine(**store, clock, tasks::EngineOptions{}, &event_log);
  task_engine.SetIdleCallback([&supervisor](const std::string& tenant, const std::string& id) {
    supervisor.OnInstanceIdle(tenant, id);
  });
  supervisor.SetTaskEngine(&task_engine);
  controller::Runner runner(io, supervisor, clock);
  if (auto st = supervisor.Load(); !st.ok()) return Fail(Annotate(st, "loading state"));
  // After the supervisor: queued work is routed to the instances it re-adopted.
  if (auto st = task_engine.Load(); !st.ok()) return Fail(Annotate(st, "loading tasks"));
  TaskDriver task_driver(io, task_engine, clock);

  bool stopping = false;
  boost::asio::steady_timer stop_timer(io);
  std::function<void(bool)> request_stop;
  auto finish = [&] {
    server.Stop([&] {
      task_driver.Stop();
      runner.Stop();
      supervisor.Detach();
      io.stop();
    });
  };
  std::function<void()> wait_agents = [&] {
    if (supervisor.AgentsRunning() == 0) return finish();
    stop_timer.expires_after(std::chrono::milliseconds(20));
    stop_timer.async_wait([&](boost::system::error_code e) {
      if (!e) wait_agents();
    });
  };
  request_stop = [&](bool all) {
    if (stopping) return;
    stopping = true;
    PALM_LOG(kInfo, "stopping", all ? " (and every agent)" : " (agents keep running)");
    if (all) {
      supervisor.StopAllAgents();
      wait_agents();
    } else {
      finish();
    }
  };

  api::ApiOptions api_options;
  api_options.admin_token_hash = *admin_hash;
  api_options.events = &event_log;
  api_options.store = store->get();
  api_options.tasks = &task_engine;
  api_options.request_stop = request_stop;
  api_options.ready = [&](std::string* reason) {
    if (!(*store)->Healthy()) {
      *reason = "store does not answer";
      return false;
    }
    if (!runner.running()) {
      *reason = "controllers not running";
      return false;
    }
    return true;
  };
  api_options.daemon_info = [&]() -> model::Json {
    return {{"version", kVersion},
            {"pid", ::getpid()},
            {"started_at", palm::FormatTime(started_at)},
            {"uptime_s", absl::ToInt64Seconds(clock.Now() - started_at)},
            {"listen", absl::StrCat(HostOf(options.listen), ":", server.port())},
            {"endpoint", endpoint},
            {"data_dir", data_dir},
            {"store", "sqlite"},
            {"schema_version", (*store)->SchemaVersion()},
            {"instances", supervisor.InstanceCount()},
            {"instances_watched", runtime->Watched()}};
  };
  api = std::make_unique<api::Api>(io, supervisor, api_options);

  if (!options.examples_dir.empty()) {
    if (auto st = LoadExamples(supervisor, options.examples_dir); !st.ok()) {
      PALM_LOG(kError, "examples: ", st.message());
    }
  }

  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](boost::system::error_code e, int sig) {
    if (e) return;
    PALM_LOG(kInfo, "received ", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    request_stop(false);
  });

  runner.Start();
  task_driver.Start();
  PALM_LOG(kInfo, "palm daemon ", kVersion, " (pid ", ::getpid(), ") serving on ", endpoint,
           ", data dir ", data_dir, ", up to ", server_options.max_connections, " connections",
           fd_note);
  io.run();
  signals.cancel();
  ::unlink(pid_path.c_str());
  ::unlink(endpoint_path.c_str());
  PALM_LOG(kInfo, "palm daemon stopped");
  return 0;
}

}  // namespace palm::daemon
