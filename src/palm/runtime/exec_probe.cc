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
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/buffer.hpp"
#include "boost/asio/posix/stream_descriptor.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "palm/runtime/command_lookup.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace palm::runtime {
namespace {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

constexpr char kDefaultPath[] = "/usr/local/bin:/usr/bin:/bin";
constexpr size_t kKeptOutput = 200;

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
  ExecProbe(asio::io_context& io, absl::Duration timeout, std::function<void(ExecResult)> done)
      : io_(io), timeout_(timeout), done_(std::move(done)), pidfd_(io), out_(io), timer_(io) {}

  ~ExecProbe() {
    // Only when the io_context is torn down with the probe in flight: leave nothing running.
    if (pid_ > 0 && !reaped_) ::kill(-pid_, SIGKILL);
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

    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      return FailLater(absl::StrCat("pipe: ", std::strerror(errno)));
    }
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
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
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = 0;
    const int err = ::posix_spawn(&pid, program->c_str(), &fa, &attr, args.data(), envp.data());
    posix_spawnattr_destroy(&attr);
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
    });
    ReadOutput();
    AwaitExit();
  }

 private:
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
    // in its group (`cmd &`) are killed too.
    ::kill(-pid_, SIGKILL);
    siginfo_t info;
    std::memset(&info, 0, sizeof(info));
    int r;
    do {
      r = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.native_handle()), &info,
                   WEXITED | WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0 && info.si_pid == 0) return AwaitExit();  // spurious wake-up
    reaped_ = true;
    // What the probe wrote before exiting is in the pipe already: take it without waiting.
    while (output_.size() < kKeptOutput) {
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
  }

  asio::io_context& io_;
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

void RunExecProbe(boost::asio::io_context& io, std::vector<std::string> argv,
                  std::map<std::string, std::string> env, std::string workdir,
                  absl::Duration timeout, std::function<void(ExecResult)> done) {
  auto probe = std::make_shared<ExecProbe>(io, timeout, std::move(done));
  probe->Start(argv, env, workdir);
}

}  // namespace palm::runtime
