#include "palm/runtime/log_shim.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string_view>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/posix/stream_descriptor.hpp"
#include "boost/asio/steady_timer.hpp"
#include "palm/base/error.h"
#include "palm/base/log.h"

#ifndef P_PIDFD
#define P_PIDFD 3  // waitid() id type, Linux 5.4+; glibc < 2.36 headers lack it
#endif

namespace palm::runtime {
namespace {

constexpr int kOpenFlags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY;
constexpr mode_t kLogMode = 0640;
// Rotations in a row that leave no room (other writers filling the new file first) before
// the rest of a chunk is dropped rather than spinning.
constexpr int kMaxRotationsPerChunk = 8;
constexpr int kMaxKeep = 1000;

// How many of the `room` (> 0) bytes of `data` that still fit to write before ending the
// file: up to the last newline among the last kNewlineWindow of them, or 0 when there is
// none.
size_t NewlineCut(const char* data, size_t room) {
  const size_t from = room > kNewlineWindow ? room - kNewlineWindow : 0;
  const void* nl = ::memrchr(data + from, '\n', room - from);
  return nl == nullptr ? 0 : static_cast<size_t>(static_cast<const char*>(nl) - data) + 1;
}

// The live log as this shim sees it: an O_APPEND fd on the file currently at `path`.
class LiveLog {
 public:
  explicit LiveLog(const LogShimOptions& options) : options_(options) {
    for (int i = 1; i <= options_.keep; ++i) {
      rotated_.push_back(absl::StrCat(options_.path, ".", i));
    }
  }
  LiveLog(const LiveLog&) = delete;
  LiveLog& operator=(const LiveLog&) = delete;
  ~LiveLog() { Close(); }

  // Appends `data`, rotating at the cap; drops what cannot be written.
  void Append(const char* data, size_t n) {
    int rotations = 0;
    while (n > 0) {
      if (fd_ < 0 && !Open()) return;
      if (options_.max_bytes == 0) {
        WriteAll(data, n);
        return;
      }
      // The file's real size, not a count of our own writes: another shim may append to
      // the same path, or someone may have truncated or removed it.
      struct stat st;
      if (::fstat(fd_, &st) != 0) return;
      if (st.st_nlink == 0) {  // removed under us: follow the path, as a reader would
        Close();
        continue;
      }
      const uint64_t size = static_cast<uint64_t>(st.st_size);
      const uint64_t room = size < options_.max_bytes ? options_.max_bytes - size : 0;
      if (room >= n) {
        WriteAll(data, n);
        return;
      }
      if (room > 0) {
        // End the file at a newline near the cap: in what still fits, else the file's own
        // last one (already written), else cut exactly at the cap.
        size_t len = NewlineCut(data, static_cast<size_t>(room));
        if (len == 0 && (size == 0 || since_newline_ + room > kNewlineWindow)) {
          len = static_cast<size_t>(room);
        }
        if (len > 0 && !WriteAll(data, len)) return;
        data += len;
        n -= len;
      }
      if (++rotations > kMaxRotationsPerChunk || !Rotate()) return;
    }
  }

 private:
  bool Open() {
    do {
      fd_ = ::open(options_.path.c_str(), kOpenFlags, kLogMode);
    } while (fd_ < 0 && errno == EINTR);
    // Where the last newline of a file we did not write is, we do not know: as if none.
    struct stat st;
    since_newline_ = fd_ >= 0 && ::fstat(fd_, &st) == 0 && st.st_size == 0 ? 0 : kUnknown;
    return fd_ >= 0;
  }

  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool WriteAll(const char* data, size_t n) {
    const void* nl = ::memrchr(data, '\n', n);
    since_newline_ = nl == nullptr ? std::min(since_newline_ + n, kUnknown)
                                   : n - (static_cast<const char*>(nl) - data) - 1;
    while (n > 0) {
      const ssize_t w = ::write(fd_, data, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        return false;  // ENOSPC, EIO, EFBIG: the rest is dropped
      }
      data += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }

  // Ends the live file: LOG -> LOG.1 (older shifted, the oldest dropped) and a fresh LOG,
  // or, with keep 0 or when a rename fails, truncation in place. When another shim has
  // already replaced the file at `path`, only reopens it. Returns false when nothing
  // writable is left.
  bool Rotate() {
    // The lock serializes with other shims of the same path; close() releases it.
    while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
    }
    struct stat mine, live;
    const bool still_live = ::fstat(fd_, &mine) == 0 && ::stat(options_.path.c_str(), &live) == 0 &&
                            mine.st_ino == live.st_ino && mine.st_dev == live.st_dev;
    if (still_live && !ShiftRotated()) {
      if (::ftruncate(fd_, 0) != 0) {
        Close();
        return false;
      }
      since_newline_ = 0;
      ::flock(fd_, LOCK_UN);
      return true;
    }
    Close();
    return Open();
  }

  // Renames .keep-1 -> .keep ... .1 -> .2, then the live file to .1. False with keep 0 or
  // when a rename fails (the live file then stays where it is).
  bool ShiftRotated() {
    if (rotated_.empty()) return false;
    // The oldest goes first, so no rename replaces an existing file: ext4 (auto_da_alloc)
    // flushes the renamed file to disk when it replaces another, which would make every
    // rotation of a burst wait for the disk.
    if (::unlink(rotated_.back().c_str()) != 0 && errno != ENOENT) return false;
    for (size_t i = rotated_.size() - 1; i >= 1; --i) {
      if (::rename(rotated_[i - 1].c_str(), rotated_[i].c_str()) != 0 && errno != ENOENT) {
        return false;
      }
    }
    return ::rename(options_.path.c_str(), rotated_[0].c_str()) == 0;
  }

  const LogShimOptions& options_;
  static constexpr uint64_t kUnknown = uint64_t{1} << 62;
  std::vector<std::string> rotated_;  // <path>.1 ... <path>.<keep>
  int fd_ = -1;
  uint64_t since_newline_ = kUnknown;  // bytes after the live file's last newline
};

int Usage(const std::string& message) {
  std::fprintf(stderr,
               "palm %s: %s\nusage: palm %s --path LOG --max-bytes N --keep K  (reads stdin)\n",
               kLogShimVerb, message.c_str(), kLogShimVerb);
  return 2;
}

}  // namespace

absl::Status PumpToLog(int in, const LogShimOptions& options) {
  LiveLog log(options);
  const auto buf = std::make_unique<char[]>(kLogShimBufferBytes);
  for (;;) {
    const ssize_t n = ::read(in, buf.get(), kLogShimBufferBytes);
    if (n == 0) return absl::OkStatus();
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error(absl::StatusCode::kInternal, "LOG_SHIM_READ_FAILED",
                   absl::StrCat("log shim for \"", options.path,
                                "\": reading the agent's output: ", std::strerror(errno)));
    }
    log.Append(buf.get(), static_cast<size_t>(n));
  }
}

std::vector<std::string> LogShimArgv(const std::string& exe, const LogShimOptions& options) {
  return {exe,           kLogShimVerb,
          "--path",      options.path,
          "--max-bytes", absl::StrCat(options.max_bytes),
          "--keep",      absl::StrCat(options.keep)};
}

int RunLogShim(int argc, char** argv) {
  int i = 1;
  if (i < argc && std::string_view(argv[i]) == kLogShimVerb) ++i;
  LogShimOptions options;
  for (; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) return Usage(absl::StrCat("missing value for ", flag));
    const char* value = argv[i + 1];
    if (flag == "--path") {
      options.path = value;
    } else if (flag == "--max-bytes") {
      if (!absl::SimpleAtoi(value, &options.max_bytes)) {
        return Usage(absl::StrCat("bad --max-bytes \"", value, "\""));
      }
    } else if (flag == "--keep") {
      if (!absl::SimpleAtoi(value, &options.keep) || options.keep < 0 || options.keep > kMaxKeep) {
        return Usage(absl::StrCat("bad --keep \"", value, "\" (0 to ", kMaxKeep, ")"));
      }
    } else {
      return Usage(absl::StrCat("unknown flag \"", flag, "\""));
    }
  }
  if (options.path.empty()) return Usage("--path is required");
  // The daemon's death, a terminal's hangup or ^C, and a stop of the agent must not cost
  // the agent's last words: only EOF on the pipe ends the shim.
  for (const int sig : {SIGHUP, SIGINT, SIGTERM, SIGPIPE}) ::signal(sig, SIG_IGN);
  std::error_code ec;
  if (std::filesystem::path abs = std::filesystem::absolute(options.path, ec); !ec) {
    options.path = abs.string();
    if (::chdir("/") != 0) {
      // Harmless: the path is absolute either way.
    }
  }
  const absl::Status status = PumpToLog(STDIN_FILENO, options);
  if (!status.ok()) {
    std::fprintf(stderr, "palm %s: %s\n", kLogShimVerb, std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}

absl::StatusOr<StartedLogShim> StartLogShim(const std::string& exe, const LogShimOptions& options) {
  const auto failed = [&](const char* what, int err) {
    return Error(absl::StatusCode::kUnavailable, "LOG_SHIM_FAILED",
                 absl::StrCat("log shim \"", exe, "\" for \"", options.path, "\": ", what, ": ",
                              std::strerror(err)),
                 "the palm executable must stay in place while the daemon runs");
  };
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return failed("pipe", errno);
  absl::Cleanup close_read = [&] { ::close(fds[0]); };

  const std::vector<std::string> args = LogShimArgv(exe, options);
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  char* envp[] = {nullptr};

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  absl::Cleanup destroy_fa = [&] { posix_spawn_file_actions_destroy(&fa); };
  posix_spawn_file_actions_adddup2(&fa, fds[0], STDIN_FILENO);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  // Above all the write end: a shim holding it would never see EOF.
  posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1);

  // Its own process group (not a session: see process_runtime.cc on setsid's cost), so a
  // signal to the agent's group or the daemon's never reaches it.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  absl::Cleanup destroy_attr = [&] { posix_spawnattr_destroy(&attr); };
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  pid_t pid = 0;
  if (const int err = ::posix_spawn(&pid, exe.c_str(), &fa, &attr, argv.data(), envp); err != 0) {
    ::close(fds[1]);
    return failed("spawn", err);
  }
  return StartedLogShim{fds[1], pid};
}

void AgentOutput::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

struct LogShims::Shim {
  Shim(boost::asio::io_context& io, int fd) : pidfd(io, fd), bound(io) {}
  pid_t pid = 0;
  std::string instance_id;
  boost::asio::posix::stream_descriptor pidfd;  // owns the fd
  std::function<void()> drained;                // WhenDrained's callback, called once
  boost::asio::steady_timer bound;              // ... or when this fires
};

LogShims::LogShims(boost::asio::io_context& io, std::string exe, uint64_t max_bytes, int keep)
    : io_(io), exe_(std::move(exe)), max_bytes_(max_bytes), keep_(keep) {}

// Closing the pidfds completes pending waits as aborted; the shims live on.
LogShims::~LogShims() { shims_.clear(); }

absl::StatusOr<AgentOutput> LogShims::Open(const std::string& instance_id,
                                           const std::string& log_path) {
  // Opened here even when a shim will write it, so a log we cannot write is this spawn's
  // error rather than output silently lost, and the file exists as soon as the agent does.
  AgentOutput log(::open(log_path.c_str(), kOpenFlags, kLogMode), /*to_shim=*/false);
  if (log.fd() < 0) {
    return Error(absl::StatusCode::kInternal, "LOG_UNWRITABLE",
                 absl::StrCat("instance ", instance_id, ": cannot open its log \"", log_path,
                              "\": ", std::strerror(errno)),
                 "make the data dir's logs directory writable by the daemon");
  }
  if (max_bytes_ == 0) return log;
  absl::StatusOr<StartedLogShim> started =
      StartLogShim(exe_, LogShimOptions{log_path, max_bytes_, keep_});
  if (!started.ok()) {
    if (!warned_) {
      PALM_LOG(kWarning, started.status().message(),
               "; agents write their logs directly until it can start again, so the log size "
               "cap is only checked periodically");
      warned_ = true;
    }
    return log;
  }
  AgentOutput pipe(started->write_fd, /*to_shim=*/true);
  // Our unreaped child keeps its pid, so the pidfd surely names it. Without one (the
  // daemon ignores SIGCHLD) the kernel reaps it for us.
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, started->pid, 0));
  if (pidfd >= 0) {
    auto shim = std::make_shared<Shim>(io_, pidfd);
    shim->pid = started->pid;
    shim->instance_id = instance_id;
    shims_.emplace(shim->pid, shim);
    latest_[instance_id] = shim->pid;
    AwaitExit(shim);
  }
  return pipe;
}

void LogShims::AwaitExit(const std::shared_ptr<Shim>& shim) {
  shim->pidfd.async_wait(
      boost::asio::posix::stream_descriptor::wait_read,
      [this, weak = std::weak_ptr<Shim>(shim)](const boost::system::error_code& ec) {
        const std::shared_ptr<Shim> shim = weak.lock();
        if (!shim || ec == boost::asio::error::operation_aborted) return;
        siginfo_t info;
        std::memset(&info, 0, sizeof(info));
        int r;
        do {
          r = ::waitid(static_cast<idtype_t>(P_PIDFD),
                       static_cast<id_t>(shim->pidfd.native_handle()), &info, WEXITED | WNOHANG);
        } while (r < 0 && errno == EINTR);
        if (r == 0 && info.si_pid == 0 && !ec) {  // not exited after all
          AwaitExit(shim);
          return;
        }
        // A shim exits 0 at EOF, after its agent; anything else means the agent's output
        // is lost from then on (and its next write fails with EPIPE).
        if (r == 0 && (info.si_code != CLD_EXITED || info.si_status != 0)) {
          PALM_LOG(kWarning, "instance ", shim->instance_id, ": log shim (pid ", shim->pid, ") ",
                   info.si_code == CLD_EXITED ? "exited with code " : "killed by signal ",
                   info.si_status);
        }
        OnExit(shim);
      });
}

void LogShims::OnExit(const std::shared_ptr<Shim>& shim) {
  shims_.erase(shim->pid);
  if (const auto it = latest_.find(shim->instance_id);
      it != latest_.end() && it->second == shim->pid) {
    latest_.erase(it);
  }
  shim->bound.cancel();
  // Last: the callback may start a shim for the same instance again.
  std::function<void()> drained;
  drained.swap(shim->drained);
  if (drained) drained();
}

bool LogShims::WhenDrained(const std::string& instance_id, absl::Duration bound,
                           std::function<void()> drained) {
  const auto latest = latest_.find(instance_id);
  if (latest == latest_.end()) return false;
  const std::shared_ptr<Shim>& shim = shims_.at(latest->second);
  shim->drained = std::move(drained);
  shim->bound.expires_after(std::chrono::nanoseconds(absl::ToInt64Nanoseconds(bound)));
  shim->bound.async_wait([weak = std::weak_ptr<Shim>(shim)](const boost::system::error_code& ec) {
    const std::shared_ptr<Shim> shim = weak.lock();
    if (ec || !shim) return;
    // Still running: something else holds the agent's output. Stop waiting for it; the
    // shim stays watched, to be reaped when it does exit.
    std::function<void()> drained;
    drained.swap(shim->drained);
    if (drained) drained();
  });
  return true;
}

}  // namespace palm::runtime
