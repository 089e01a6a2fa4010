#include "palm/runtime/log_shim.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/socket.h>
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
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "boost/asio/posix/stream_descriptor.hpp"
#include "boost/asio/steady_timer.hpp"
#include "palm/base/error.h"
#include "palm/base/log.h"
#include "palm/runtime/spawn_attr.h"

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

}  // namespace

LogStream::LogStream(LogShimOptions options) : options_(std::move(options)) {
  for (int i = 1; i <= options_.keep; ++i) rotated_.push_back(absl::StrCat(options_.path, ".", i));
}

LogStream::~LogStream() { Close(); }

void LogStream::Append(const char* data, size_t n) {
  int rotations = 0;
  while (n > 0) {
    if (fd_ < 0 && !Open()) return;
    if (options_.max_bytes == 0) {
      WriteAll(data, n);
      return;
    }
    // The file's real size, not a count of our own writes: another writer may append to
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

bool LogStream::Open() {
  do {
    fd_ = ::open(options_.path.c_str(), kOpenFlags, kLogMode);
  } while (fd_ < 0 && errno == EINTR);
  // Where the last newline of a file we did not write is, we do not know: as if none.
  struct stat st;
  since_newline_ = fd_ >= 0 && ::fstat(fd_, &st) == 0 && st.st_size == 0 ? 0 : kUnknown;
  return fd_ >= 0;
}

void LogStream::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool LogStream::WriteAll(const char* data, size_t n) {
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

// Ends the live file: LOG -> LOG.1 (older shifted, the oldest dropped) and a fresh LOG, or,
// with keep 0 or when a rename fails, truncation in place. When another writer has already
// replaced the file at `path`, only reopens it. Returns false when nothing writable is left.
bool LogStream::Rotate() {
  // The lock serializes with other writers of the same path; close() releases it.
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

// Renames .keep-1 -> .keep ... .1 -> .2, then the live file to .1. False with keep 0 or when
// a rename fails (the live file then stays where it is).
bool LogStream::ShiftRotated() {
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

absl::Status PumpToLog(int in, const LogShimOptions& options) {
  LogStream log(options);
  const auto buf = std::make_unique<char[]>(kLogShimBufferBytes);
  for (;;) {
    const ssize_t n = ::read(in, buf.get(), kLogShimBufferBytes);
    if (n == 0) return absl::OkStatus();
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error(absl::StatusCode::kInternal, "LOG_SHIM_READ_FAILED",
                   absl::StrCat("log writer for \"", options.path,
                                "\": reading the agent's output: ", std::strerror(errno)));
    }
    log.Append(buf.get(), static_cast<size_t>(n));
  }
}

namespace {

// "<token> <max_bytes> <keep> <path>" -> token and options; false when malformed.
bool ParseStream(absl::string_view msg, uint64_t* token, LogShimOptions* options) {
  std::vector<absl::string_view> parts = absl::StrSplit(msg, absl::MaxSplits(' ', 3));
  if (parts.size() != 4 || parts[3].empty() || parts[3][0] != '/') return false;
  options->path = std::string(parts[3]);
  return absl::SimpleAtoi(parts[0], token) && absl::SimpleAtoi(parts[1], &options->max_bytes) &&
         absl::SimpleAtoi(parts[2], &options->keep) && options->keep >= 0 &&
         options->keep <= kMaxKeep;
}

// One control message: its text (empty when malformed or truncated) and the fds it carried.
struct ControlMessage {
  ssize_t n = 0;  // recvmsg's result: > 0, 0 = hung up, < 0 = errno
  std::string text;
  std::vector<int> fds;
};

ControlMessage ReceiveControl(int control) {
  ControlMessage m;
  char data[8192];
  alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 8)];
  iovec iov{data, sizeof(data)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof(cbuf);
  do {
    m.n = ::recvmsg(control, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (m.n < 0 && errno == EINTR);
  if (m.n <= 0) return m;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      m.fds.push_back(fd);
    }
  }
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) == 0) m.text.assign(data, m.n);
  return m;
}

}  // namespace

absl::Status ServeLogs(int control) {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  const auto failed = [](const char* what) {
    return Error(absl::StatusCode::kInternal, "LOG_SERVICE_FAILED",
                 absl::StrCat("log service: ", what, ": ", std::strerror(errno)));
  };
  if (ep < 0) return failed("epoll_create1");
  absl::Cleanup close_ep = [ep] { ::close(ep); };
  const auto watch = [ep](int fd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    return ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0;
  };
  if (!watch(control)) return failed("epoll_ctl");
  struct Served {
    uint64_t token;
    std::unique_ptr<LogStream> log;
  };
  absl::flat_hash_map<int, Served> streams;  // pipe fd -> its stream
  bool control_open = true;
  const auto close_stream = [&](int fd) {
    const auto it = streams.find(fd);
    if (it == streams.end()) return;
    const std::string ack = absl::StrCat("closed ", it->second.token);
    streams.erase(it);  // closes the file: everything read is written
    ::close(fd);        // also leaves the epoll set
    if (control_open) ::send(control, ack.data(), ack.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  };
  const auto buf = std::make_unique<char[]>(kLogShimBufferBytes);
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  while (control_open || !streams.empty()) {
    const int n = ::epoll_wait(ep, events, kMaxEvents, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return failed("epoll_wait");
    }
    // Level-triggered, one read per ready pipe per round: a pipe with more to read is
    // reported again, after the others (epoll requeues it at the tail).
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd != control) {
        if (!streams.contains(fd)) continue;  // closed earlier in this round
        ssize_t r;
        do {
          r = ::read(fd, buf.get(), kLogShimBufferBytes);
        } while (r < 0 && errno == EINTR);
        if (r > 0) {
          streams.at(fd).log->Append(buf.get(), static_cast<size_t>(r));
        } else if (r == 0 || errno != EAGAIN) {
          close_stream(fd);  // EOF: the agent and all that inherited its output are gone
        }
        continue;
      }
      for (;;) {  // every queued control message
        ControlMessage m = ReceiveControl(control);
        if (m.n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (m.n <= 0) {  // the daemon is gone: serve on what we have
          ::epoll_ctl(ep, EPOLL_CTL_DEL, control, nullptr);
          control_open = false;
          break;
        }
        uint64_t token = 0;
        LogShimOptions options;
        if (m.fds.size() != 1 || !ParseStream(m.text, &token, &options)) {
          for (const int f : m.fds) ::close(f);
          continue;
        }
        const int pipe = m.fds[0];
        ::fcntl(pipe, F_SETFL, ::fcntl(pipe, F_GETFL) | O_NONBLOCK);
        if (!watch(pipe)) {
          ::close(pipe);
          continue;
        }
        streams.emplace(pipe, Served{token, std::make_unique<LogStream>(std::move(options))});
      }
    }
  }
  return absl::OkStatus();
}

int RunLogService(int /*argc*/, char** /*argv*/) {
  // The daemon's death, a terminal's hangup or ^C, and a stop of an agent must not cost the
  // agents their last words: only EOF on its pipes (and the control socket) ends it.
  for (const int sig : {SIGHUP, SIGINT, SIGTERM, SIGPIPE}) ::signal(sig, SIG_IGN);
  if (::chdir("/") != 0) {
    // Harmless: the daemon sends absolute paths.
  }
  const absl::Status status = ServeLogs(STDIN_FILENO);
  if (!status.ok()) {
    std::fprintf(stderr, "palm %s: %s\n", kLogServiceVerb, std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}

absl::StatusOr<StartedLogService> StartLogService(const std::string& exe) {
  const auto failed = [&](const char* what, int err) {
    return Error(absl::StatusCode::kUnavailable, "LOG_SERVICE_FAILED",
                 absl::StrCat("log service \"", exe, "\": ", what, ": ", std::strerror(err)),
                 "the palm executable must stay in place while the daemon runs");
  };
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return failed("socketpair", errno);
  }
  absl::Cleanup close_theirs = [&] { ::close(sv[1]); };
  // Room for a burst of spawns while the service is busy writing (capped by wmem_max).
  const int sndbuf = 4 << 20;
  ::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
  ::fcntl(sv[0], F_SETFL, ::fcntl(sv[0], F_GETFL) | O_NONBLOCK);

  std::string verb = kLogServiceVerb;
  std::string exe_arg = exe;
  char* argv[] = {exe_arg.data(), verb.data(), nullptr};
  char* envp[] = {nullptr};

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  absl::Cleanup destroy_fa = [&] { posix_spawn_file_actions_destroy(&fa); };
  posix_spawn_file_actions_adddup2(&fa, sv[1], STDIN_FILENO);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  // Above all any agent pipe's write end the daemon holds: the service must not keep one.
  posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1);

  // Its own process group (not a session: see process_runtime.cc on setsid's cost), so a
  // signal to an agent's group or the daemon's never reaches it.
  const NewGroupSpawnAttr attr;

  pid_t pid = 0;
  if (const int err = ::posix_spawn(&pid, exe.c_str(), &fa, attr.get(), argv, envp); err != 0) {
    ::close(sv[0]);
    return failed("spawn", err);
  }
  return StartedLogService{sv[0], pid};
}

absl::Status SendLogStream(int control, uint64_t token, const LogShimOptions& options,
                           int read_fd) {
  const std::string text =
      absl::StrCat(token, " ", options.max_bytes, " ", options.keep, " ", options.path);
  iovec iov{const_cast<char*>(text.data()), text.size()};
  alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof(cbuf);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &read_fd, sizeof(int));
  ssize_t n;
  do {
    n = ::sendmsg(control, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n >= 0) return absl::OkStatus();
  const int err = errno;
  return Error(err == EAGAIN || err == EWOULDBLOCK ? absl::StatusCode::kResourceExhausted
                                                   : absl::StatusCode::kUnavailable,
               "LOG_SERVICE_FAILED",
               absl::StrCat("passing the log \"", options.path,
                            "\" to the log service: ", std::strerror(err)));
}

void AgentOutput::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

struct LogService::Stream {
  explicit Stream(boost::asio::io_context& io) : bound(io) {}
  std::string instance_id;
  std::function<void()> drained;  // WhenDrained's callback, called once
  boost::asio::steady_timer bound;  // ... or when this fires
};

LogService::LogService(boost::asio::io_context& io, std::string exe, uint64_t max_bytes, int keep)
    : io_(io), exe_(std::move(exe)), max_bytes_(max_bytes), keep_(keep) {}

// Closing the control socket tells the service we are gone; it serves on what it has.
// Closing the pidfds completes pending waits as aborted.
LogService::~LogService() {
  alive_.reset();
  generation_.reset();
  control_.reset();
  reapers_.clear();
  streams_.clear();
}

absl::Status LogService::EnsureService() {
  if (control_) return absl::OkStatus();
  PALM_ASSIGN_OR_RETURN(StartedLogService started, StartLogService(exe_));
  pid_ = started.pid;
  generation_ = std::make_shared<int>(0);
  control_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, started.control_fd);
  // Our unreaped child keeps its pid, so the pidfd surely names it. Without one (the daemon
  // ignores SIGCHLD) the kernel reaps it, and a dead service shows as a hung-up socket.
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, started.pid, 0));
  if (pidfd >= 0) {
    reapers_[started.pid] = std::make_unique<boost::asio::posix::stream_descriptor>(io_, pidfd);
    if (armed_) AwaitServiceExit(started.pid);
  }
  if (armed_) AwaitAcks();
  return absl::OkStatus();
}

void LogService::Arm() {
  if (armed_) return;
  armed_ = true;
  if (control_) AwaitAcks();
  if (reapers_.contains(pid_)) AwaitServiceExit(pid_);
}

void LogService::DisarmIfIdle() {
  if (!armed_ || !streams_.empty()) return;
  armed_ = false;
  if (control_) control_->cancel();
  // Only the current service's: one already gone is watched until it is reaped.
  if (const auto it = reapers_.find(pid_); it != reapers_.end()) it->second->cancel();
}

void LogService::AwaitAcks() {
  control_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                       [this, gen = std::weak_ptr<int>(generation_)](
                           const boost::system::error_code& ec) {
                         if (gen.expired() || ec == boost::asio::error::operation_aborted) return;
                         OnAcks();
                       });
}

void LogService::OnAcks() {
  const std::weak_ptr<int> gen = generation_;
  for (;;) {
    ControlMessage m = ReceiveControl(control_->native_handle());
    for (const int f : m.fds) ::close(f);
    if (m.n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (m.n <= 0) {
      ServiceGone(m.n == 0 ? "hung up" : std::strerror(errno));
      return;
    }
    uint64_t token = 0;
    absl::string_view text = m.text;
    if (absl::ConsumePrefix(&text, "closed ") && absl::SimpleAtoi(text, &token)) {
      Finish(token);  // may Open (a respawn), even start another service
      if (gen.expired()) return;
    }
  }
  if (armed_) AwaitAcks();
}

void LogService::AwaitServiceExit(pid_t pid) {
  reapers_.at(pid)->async_wait(
      boost::asio::posix::stream_descriptor::wait_read,
      [this, pid, alive = std::weak_ptr<int>(alive_)](const boost::system::error_code& ec) {
        if (alive.expired() || ec == boost::asio::error::operation_aborted) return;
        const auto it = reapers_.find(pid);
        if (it == reapers_.end()) return;
        siginfo_t info;
        std::memset(&info, 0, sizeof(info));
        int r;
        do {
          r = ::waitid(static_cast<idtype_t>(P_PIDFD),
                       static_cast<id_t>(it->second->native_handle()), &info, WEXITED | WNOHANG);
        } while (r < 0 && errno == EINTR);
        if (r == 0 && info.si_pid == 0 && !ec) {  // not exited after all
          if (armed_ || pid != pid_) AwaitServiceExit(pid);
          return;
        }
        reapers_.erase(it);
        // It only exits by itself once we closed the control socket: this one died.
        if (pid == pid_) {
          ServiceGone(r != 0                         ? std::string("reaped elsewhere")
                      : info.si_code == CLD_EXITED ? absl::StrCat("exited with code ", info.si_status)
                                                   : absl::StrCat("killed by signal ", info.si_status));
        }
      });
}

void LogService::ServiceGone(const std::string& why) {
  if (!control_) return;
  PALM_LOG(kWarning, "log service (pid ", pid_, ") is gone: ", why,
           "; the agents it served lose their output from now on (EPIPE on their next write), "
           "new spawns get a new service");
  generation_.reset();
  control_.reset();
  // Watched until reaped, even while idle (when its pidfd was not being watched).
  if (!armed_ && reapers_.contains(pid_)) AwaitServiceExit(pid_);
  pid_ = 0;
  // Nothing more will be written for these streams: their waits end now.
  std::vector<uint64_t> tokens;
  tokens.reserve(streams_.size());
  for (const auto& [token, stream] : streams_) tokens.push_back(token);
  for (const uint64_t token : tokens) Finish(token);
}

void LogService::Finish(uint64_t token) {
  const auto it = streams_.find(token);
  if (it == streams_.end()) return;
  const std::shared_ptr<Stream> stream = it->second;
  streams_.erase(it);
  if (const auto latest = latest_.find(stream->instance_id);
      latest != latest_.end() && latest->second == token) {
    latest_.erase(latest);
  }
  stream->bound.cancel();
  // Last: the callback may open a stream for the same instance again.
  std::function<void()> drained;
  drained.swap(stream->drained);
  if (drained) drained();
  DisarmIfIdle();
}

absl::StatusOr<AgentOutput> LogService::Open(const std::string& instance_id,
                                             const std::string& log_path) {
  // Opened here even when the service will write it, so a log we cannot write is this
  // spawn's error rather than output silently lost, and the file exists as soon as the
  // agent does.
  AgentOutput log(::open(log_path.c_str(), kOpenFlags, kLogMode), /*to_shim=*/false);
  if (log.fd() < 0) {
    return Error(absl::StatusCode::kInternal, "LOG_UNWRITABLE",
                 absl::StrCat("instance ", instance_id, ": cannot open its log \"", log_path,
                              "\": ", std::strerror(errno)),
                 "make the data dir's logs directory writable by the daemon");
  }
  if (max_bytes_ == 0) return log;
  const auto direct = [&](const absl::Status& why) {
    if (!warned_) {
      PALM_LOG(kWarning, why.message(),
               "; agents write their logs directly until it can start again, so the log size "
               "cap is only checked periodically");
      warned_ = true;
    }
    return std::move(log);
  };
  LogShimOptions options{log_path, max_bytes_, keep_};
  if (options.path.front() != '/') {
    std::error_code ec;
    options.path = std::filesystem::absolute(log_path, ec).string();
  }
  absl::Status sent;
  for (int attempt = 0; attempt < 2; ++attempt) {  // a dead service is restarted once
    if (absl::Status s = EnsureService(); !s.ok()) return direct(s);
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      return direct(Error(absl::StatusCode::kUnavailable, "LOG_SERVICE_FAILED",
                          absl::StrCat("pipe for the log \"", log_path,
                                       "\": ", std::strerror(errno))));
    }
    const uint64_t token = next_token_++;
    sent = SendLogStream(control_->native_handle(), token, options, fds[0]);
    ::close(fds[0]);  // the service has its own copy now, or none
    if (sent.ok()) {
      auto stream = std::make_shared<Stream>(io_);
      stream->instance_id = instance_id;
      streams_.emplace(token, stream);
      latest_[instance_id] = token;
      Arm();
      return AgentOutput(fds[1], /*to_shim=*/true);
    }
    ::close(fds[1]);
    // Behind, not gone: a second service would not be faster, this agent writes directly.
    if (absl::IsResourceExhausted(sent)) break;
    ServiceGone(std::string(sent.message()));
  }
  return direct(sent);
}

bool LogService::WhenDrained(const std::string& instance_id, absl::Duration bound,
                             std::function<void()> drained) {
  const auto latest = latest_.find(instance_id);
  if (latest == latest_.end()) return false;
  const std::shared_ptr<Stream>& stream = streams_.at(latest->second);
  stream->drained = std::move(drained);
  stream->bound.expires_after(std::chrono::nanoseconds(absl::ToInt64Nanoseconds(bound)));
  stream->bound.async_wait(
      [weak = std::weak_ptr<Stream>(stream)](const boost::system::error_code& ec) {
        const std::shared_ptr<Stream> stream = weak.lock();
        if (ec || !stream) return;
        // Still open: something else holds the agent's output. Stop waiting for it; the
        // stream stays known until the service acknowledges it.
        std::function<void()> drained;
        drained.swap(stream->drained);
        if (drained) drained();
      });
  return true;
}

}  // namespace palm::runtime
