#include "palm/runtime/exec_probe.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/buffer.hpp"
#include "boost/asio/posix/stream_descriptor.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "palm/base/log.h"
#include "palm/runtime/cgroup.h"
#include "palm/runtime/command_lookup.h"
#include "palm/runtime/limits_shim.h"
#include "palm/runtime/spawn_attr.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace palm::runtime {
namespace {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

constexpr char kDefaultPath[] = "/usr/local/bin:/usr/bin:/bin";
constexpr size_t kKeptOutput = 200;
// Reads of what is already in the pipe when the probe exits; each is non-blocking.
constexpr int kMaxFinalReads = 8;
// A probe's cgroup is removed once its killed members are gone: tried at these intervals
// (doubling), then given up with a warning.
constexpr auto kFirstRemovalRetry = std::chrono::milliseconds(5);
constexpr auto kMaxRemovalRetry = std::chrono::seconds(1);
constexpr int kMaxRemovalTries = 80;  // ~1 minute

std::atomic<uint64_t> probe_runs{0};

std::mutex default_options_mu;
ExecProbeOptions& DefaultOptions() {
  static ExecProbeOptions* options = new ExecProbeOptions();  // ABSL_GUARDED_BY(default_options_mu)
  return *options;
}

std::string SignalText(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev != nullptr ? absl::StrCat("SIG", abbrev) : absl::StrCat("signal ", sig);
}

// One line of at most kKeptOutput bytes: control characters become spaces, ends trimmed.
std::string Tidy(std::string s) {
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < ' ' || c == 0x7f) c = ' ';
  }
  const size_t b = s.find_first_not_of(' ');
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(' ');
  return s.substr(b, e - b + 1);
}

class ExecProbe : public std::enable_shared_from_this<ExecProbe> {
 public:
  ExecProbe(asio::io_context& io, ExecProbeOptions options, absl::Duration timeout,
            std::function<void(ExecResult)> done)
      : io_(io),
        options_(std::move(options)),
        timeout_(timeout),
        done_(std::move(done)),
        pidfd_(io),
        out_(io),
        timer_(io) {}

  ~ExecProbe() {
    // Only when the io_context is torn down with the probe in flight (or its cleanup
    // pending): leave nothing running.
    if (pid_ > 0 && !reaped_) ::kill(-pid_, SIGKILL);
    if (!cgroup_.empty()) {
      (void)options_.cgroups->Kill(cgroup_);
      (void)options_.cgroups->Remove(cgroup_);  // best effort: busy while they exit
    }
  }

  void Start(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
             const std::string& workdir) {
    started_ = SteadyClock::now();
    if (argv.empty() || argv[0].empty()) return FailLater("empty command");
    std::string path_env = kDefaultPath;
    if (auto it = env.find("PATH"); it != env.end()) {
      path_env = it->second;
    } else if (const char* p = std::getenv("PATH"); p != nullptr && *p != '\0') {
      path_env = p;
    }
    absl::StatusOr<std::string> program = ResolveCommand(argv[0], path_env, workdir);
    if (!program.ok()) {
      const char* what = program.status().code() == absl::StatusCode::kNotFound
                             ? "command not found: "
                             : "cannot run command: ";
      return FailLater(absl::StrCat(what, program.status().message()));
    }

    // A cgroup of its own, joined by the shim before exec, so nothing the probe starts can
    // outlive it. Without one (none available, or it cannot be made) it runs as it is.
    std::vector<std::string> shim_argv;
    const std::vector<std::string>* run = &argv;
    const char* exe = program->c_str();
    if (options_.cgroups && options_.cgroups->available() && !options_.shim_path.empty()) {
      const std::string name = ProbeCgroupName(++probe_runs);
      absl::StatusOr<std::vector<std::string>> dirs = options_.cgroups->Create(name, {});
      if (dirs.ok()) {
        cgroup_ = name;
        shim_argv = LimitsShimArgv(options_.shim_path, {}, *dirs, *program, argv);
        run = &shim_argv;
        exe = options_.shim_path.c_str();
      } else {
        PALM_LOG(kWarning, "exec probe runs without a cgroup: ", dirs.status().message());
        (void)options_.cgroups->Remove(name);
      }
    }

    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      return FailLater(absl::StrCat("pipe: ", std::strerror(errno)));
    }
    std::vector<char*> args;
    args.reserve(run->size() + 1);
    for (const std::string& a : *run) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    std::vector<std::string> env_storage;
    env_storage.reserve(env.size());
    std::vector<char*> envp;
    envp.reserve(env.size() + 1);
    for (const auto& [k, v] : env) {
      env_storage.push_back(absl::StrCat(k, "=", v));
      envp.push_back(env_storage.back().data());
    }
    envp.push_back(nullptr);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDERR_FILENO);
    posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1);
    if (!workdir.empty()) posix_spawn_file_actions_addchdir_np(&fa, workdir.c_str());
    const NewGroupSpawnAttr attr;
    pid_t pid = 0;
    const int err = ::posix_spawn(&pid, exe, &fa, attr.get(), args.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    if (err != 0) {
      ::close(fds[0]);
      return FailLater(absl::StrCat(err == ENOENT ? "command not found: " : "cannot run command: ",
                                    "\"", argv[0], "\"",
                                    workdir.empty() ? "" : absl::StrCat(" in \"", workdir, "\""),
                                    ": ", std::strerror(err)));
    }
    pid_ = pid;
    out_.assign(fds[0]);
    // Non-blocking: whoever else holds the write end (a child the probe left running) can
    // never make a read wait.
    boost::system::error_code ignored;
    out_.non_blocking(true, ignored);
    // Our unreaped child keeps its pid, so the pidfd surely names it.
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) {
      // Only when SIGCHLD is ignored (the child is auto-reaped): its exit code is lost.
      ::kill(-pid_, SIGKILL);
      reaped_ = true;
      return FailLater(absl::StrCat("cannot watch the probe process: ", std::strerror(errno)));
    }
    pidfd_.assign(pidfd);

    auto self = shared_from_this();
    timer_.expires_after(std::chrono::nanoseconds(absl::ToInt64Nanoseconds(timeout_)));
    timer_.async_wait([self](const boost::system::error_code& ec) {
      if (ec || self->reaped_) return;
      self->timed_out_ = true;
      ::kill(-self->pid_, SIGKILL);  // the group: the leader is unreaped, so pgid is still ours
      self->KillCgroup();
    });
    ReadOutput();
    AwaitExit();
  }

 private:
  void KillCgroup() {
    if (cgroup_.empty()) return;
    if (absl::Status st = options_.cgroups->Kill(cgroup_); !st.ok()) {
      PALM_LOG(kWarning, "exec probe: ", st.message());
    }
  }

  // Removes the probe's cgroup once what was killed in it has exited; never waits.
  void RemoveCgroup(std::chrono::milliseconds delay, int tries) {
    if (cgroup_.empty()) return;
    if (options_.cgroups->Populated(cgroup_)) {
      KillCgroup();
    } else if (options_.cgroups->Remove(cgroup_).ok()) {
      cgroup_.clear();
      return;
    }
    if (tries >= kMaxRemovalTries) {
      PALM_LOG(kWarning, "exec probe: cgroup ", cgroup_, " still busy; left in place");
      cgroup_.clear();
      return;
    }
    timer_.expires_after(delay);
    timer_.async_wait([self = shared_from_this(), delay, tries](const boost::system::error_code& ec) {
      if (ec) return;
      self->RemoveCgroup(std::min<std::chrono::milliseconds>(delay * 2, kMaxRemovalRetry),
                         tries + 1);
    });
  }

  void FailLater(std::string message) {
    asio::post(io_, [self = shared_from_this(), message = std::move(message)]() mutable {
      self->Finish(false, std::move(message));
    });
  }

  void ReadOutput() {
    out_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](
                                                 const boost::system::error_code& ec, size_t n) {
      self->Keep(n);
      if (!ec && !self->finished_) self->ReadOutput();
    });
  }

  void Keep(size_t n) {
    if (output_.size() < kKeptOutput) {
      output_.append(buf_.data(), std::min(n, kKeptOutput - output_.size()));
    }
  }

  void AwaitExit() {
    pidfd_.async_wait(asio::posix::stream_descriptor::wait_read,
                      [self = shared_from_this()](const boost::system::error_code& ec) {
                        if (ec == asio::error::operation_aborted || self->finished_) return;
                        self->OnExit();
                      });
  }

  void OnExit() {
    // The leader is a zombie, so its pgid cannot have been reused: stragglers the probe left
    // in its group (`cmd &`) are killed too, and with a cgroup those that left the group.
    ::kill(-pid_, SIGKILL);
    KillCgroup();
    siginfo_t info;
    std::memset(&info, 0, sizeof(info));
    int r;
    do {
      r = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.native_handle()), &info,
                   WEXITED | WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0 && info.si_pid == 0) return AwaitExit();  // spurious wake-up
    reaped_ = true;
    // What the probe wrote before exiting is in the pipe already: take it without waiting
    // (the pipe is non-blocking: would_block ends the loop, as does EOF), a few reads at most.
    for (int i = 0; i < kMaxFinalReads && output_.size() < kKeptOutput; ++i) {
      boost::system::error_code ec;
      const size_t n = out_.read_some(asio::buffer(buf_), ec);
      if (ec || n == 0) break;
      Keep(n);
    }
    const std::string out = Tidy(output_);
    const std::string suffix = out.empty() ? "" : absl::StrCat(": ", out);
    if (timed_out_) {
      return Finish(false, absl::StrCat("timed out after ", absl::FormatDuration(timeout_),
                                        " (killed)", suffix));
    }
    if (r != 0) return Finish(false, absl::StrCat("waitid: ", std::strerror(errno)));
    if (info.si_code == CLD_EXITED) {
      if (info.si_status == 0) return Finish(true, out);
      return Finish(false, absl::StrCat("exit code ", info.si_status, suffix));
    }
    Finish(false, absl::StrCat("killed by ", SignalText(info.si_status), suffix));
  }

  void Finish(bool ok, std::string message) {
    if (finished_) return;
    finished_ = true;
    boost::system::error_code ignored;
    timer_.cancel();
    out_.close(ignored);
    pidfd_.close(ignored);
    ExecResult result;
    result.ok = ok;
    result.message = std::move(message);
    result.latency = absl::FromChrono(SteadyClock::now() - started_);
    auto done = std::move(done_);
    done(std::move(result));
    RemoveCgroup(kFirstRemovalRetry, 0);  // after the answer: it need not wait for this
  }

  asio::io_context& io_;
  const ExecProbeOptions options_;
  std::string cgroup_;  // this run's cgroup while it exists, "" = none
  const absl::Duration timeout_;
  std::function<void(ExecResult)> done_;
  asio::posix::stream_descriptor pidfd_;
  asio::posix::stream_descriptor out_;
  asio::steady_timer timer_;
  std::array<char, 512> buf_;
  std::string output_;
  SteadyClock::time_point started_;
  pid_t pid_ = 0;
  bool reaped_ = false;
  bool timed_out_ = false;
  bool finished_ = false;
};

}  // namespace

void SetDefaultExecProbeOptions(ExecProbeOptions options) {
  std::lock_guard<std::mutex> lock(default_options_mu);
  DefaultOptions() = std::move(options);
}

ExecProbeOptions DefaultExecProbeOptions() {
  std::lock_guard<std::mutex> lock(default_options_mu);
  return DefaultOptions();
}

void RunExecProbe(boost::asio::io_context& io, const ExecProbeOptions& options,
                  std::vector<std::string> argv, std::map<std::string, std::string> env,
                  std::string workdir, absl::Duration timeout,
                  std::function<void(ExecResult)> done) {
  auto probe = std::make_shared<ExecProbe>(io, options, timeout, std::move(done));
  probe->Start(argv, env, workdir);
}

void RunExecProbe(boost::asio::io_context& io, std::vector<std::string> argv,
                  std::map<std::string, std::string> env, std::string workdir,
                  absl::Duration timeout, std::function<void(ExecResult)> done) {
  RunExecProbe(io, DefaultExecProbeOptions(), std::move(argv), std::move(env),
               std::move(workdir), timeout, std::move(done));
}

}  // namespace palm::runtime
