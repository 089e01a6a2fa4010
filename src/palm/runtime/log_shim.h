// The `palm __log-service` process: the one writer of every agent log of a daemon.
//
// An agent's stdout and stderr are the write end of a pipe; the daemon passes the read end
// to its log service (SCM_RIGHTS over a socketpair), which appends what it reads to the log,
// so it owns the file and rotates it exactly at the size cap, by rename: LOG -> LOG.1 (.1 ->
// .2 ... up to `keep`, the oldest dropped), then a fresh LOG. No file ever passes the cap,
// whatever the write rate, and the daemon does no log I/O at all. A write that would cross
// the cap is split there, after the last newline when one falls within the last
// kNewlineWindow bytes before the cap, else exactly at the cap (LogStream).
//
//   <palm> __log-service      (stdin: the daemon's end of the control socketpair)
//
// One service per daemon, one thread, epoll over the control socket and every pipe; a
// spawn costs a pipe and one sendmsg, no process. Control messages (SOCK_SEQPACKET, one per
// datagram):
//   daemon -> service   "<token> <max_bytes> <keep> <absolute path>" + the pipe's read end
//   service -> daemon   "closed <token>"   once that pipe reached EOF and all of it is written
// The service reads kLogShimBufferBytes per readable pipe per round, so a bursting agent
// cannot starve the others. It outlives the daemon (agents do, and their output must keep
// flowing): it runs in its own process group, not an agent's, so stopping an agent's group
// leaves it to drain the pipe; it ignores SIGHUP, SIGINT, SIGTERM and SIGPIPE; when the
// control socket hangs up (the daemon died or stopped) it keeps serving the pipes it has
// and exits 0 once the last one reached EOF. A new daemon starts its own service, so
// services of several daemon generations can coexist. It writes nothing into the logs.
//
// Several writers may append to the same path (an instance restarted while an orphan of its
// previous process still holds the old pipe, served by this or an older service): each
// stream checks the file's real size before every write and rotations are serialized by
// flock() on the live file, so the cap still holds within one read buffer per extra writer.
//
// The daemon's half is LogService: it starts the service lazily, passes it each agent's
// pipe, reaps it through a pidfd and starts a new one when it died; without a service (the
// executable is gone) agents write their logs directly.
//
// Thread-safety: LogStream, PumpToLog and ServeLogs run on the calling thread and share
// nothing; LogService is used on its io_context's thread only; the rest are pure.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/posix/stream_descriptor.hpp"

namespace palm::runtime {

// The verb main() dispatches to RunLogService (as argv[1]).
inline constexpr char kLogServiceVerb[] = "__log-service";

// Bytes read from a pipe at once (per stream per round).
inline constexpr size_t kLogShimBufferBytes = 64 * 1024;
// How far before the cap a newline may be to end the file there instead of a hard cut.
inline constexpr size_t kNewlineWindow = 4 * 1024;

// How long an instance's exit report waits for the service to drain its pipe (WhenDrained).
inline constexpr absl::Duration kLogShimDrainBound = absl::Milliseconds(250);

struct LogShimOptions {
  std::string path;        // the live log
  uint64_t max_bytes = 0;  // 0 = never rotate
  int keep = 0;            // rotated files kept; 0 = truncate in place at the cap
};

// One log as its writer sees it: an O_APPEND fd on the file currently at `path`, rotated as
// described above. Never stops for the log's sake: a chunk that cannot be written (disk
// full, log unopenable) is dropped, so the agent never blocks on a broken log; a rotation
// whose rename fails truncates the live file instead, so the cap holds.
class LogStream {
 public:
  explicit LogStream(LogShimOptions options);
  LogStream(const LogStream&) = delete;
  LogStream& operator=(const LogStream&) = delete;
  ~LogStream();

  const LogShimOptions& options() const { return options_; }
  // Appends `data`, rotating at the cap; drops what cannot be written.
  void Append(const char* data, size_t n);

 private:
  bool Open();
  void Close();
  bool WriteAll(const char* data, size_t n);
  bool Rotate();
  bool ShiftRotated();

  static constexpr uint64_t kUnknown = uint64_t{1} << 62;
  const LogShimOptions options_;
  std::vector<std::string> rotated_;  // <path>.1 ... <path>.<keep>
  int fd_ = -1;
  uint64_t since_newline_ = kUnknown;  // bytes after the live file's last newline
};

// Appends everything read from `in` to one LogStream until `in` reaches EOF. Returns OK at
// EOF, or kInternal (naming errno) when reading `in` fails. Does not close `in`.
absl::Status PumpToLog(int in, const LogShimOptions& options);

// The service loop on `control` (a SOCK_SEQPACKET socket, see above) until the control
// socket hung up and every stream reached EOF. Returns OK then, or kInternal when epoll
// fails. Malformed messages are dropped (and their fd closed). Does not close `control`.
absl::Status ServeLogs(int control);

// Entry point of the verb: sets up the signals, leaves its working directory (chdir "/",
// so it pins no mount), then ServeLogs(stdin). Returns 0, or 1 when the loop failed.
int RunLogService(int argc, char** argv);

// A service started by StartLogService: the daemon's end of the control socket
// (non-blocking, O_CLOEXEC) and the service's pid (the caller's child, to be reaped).
struct StartedLogService {
  int control_fd = -1;
  pid_t pid = 0;
};

// Creates the socketpair and posix_spawns "`exe` __log-service" on its other end, in a new
// process group, stdout and stderr /dev/null, every other fd closed, signals default and
// unblocked (it then ignores its own). Fails with kUnavailable naming `exe` and errno when
// the socketpair or the spawn fails; nothing is left open or running then.
absl::StatusOr<StartedLogService> StartLogService(const std::string& exe);

// Passes `read_fd` (not closed) to the service on `control` as stream `token` for
// `options` (path absolute). Fails with kUnavailable naming errno (EAGAIN: the service is
// behind; EPIPE/ECONNRESET: it is gone).
absl::Status SendLogStream(int control, uint64_t token, const LogShimOptions& options,
                           int read_fd);

// What an agent's stdout and stderr are to be: the write end of its pipe to the log service,
// or the log file itself (O_APPEND). Owns the fd, closed by Close() or the destructor: the
// daemon must not keep the write end once the agent has it, or the service never sees EOF.
class AgentOutput {
 public:
  AgentOutput(int fd, bool to_shim) : fd_(fd), to_shim_(to_shim) {}
  AgentOutput(AgentOutput&& other) noexcept : fd_(other.fd_), to_shim_(other.to_shim_) {
    other.fd_ = -1;
  }
  AgentOutput& operator=(AgentOutput&&) = delete;
  ~AgentOutput() { Close(); }
  int fd() const { return fd_; }
  // False when the agent writes the log itself (no cap, or no service).
  bool to_shim() const { return to_shim_; }
  void Close();

 private:
  int fd_;
  bool to_shim_;
};

// The daemon's side: starts the log service (at the first Open that needs it), passes it
// agents' pipes, hears its acknowledgements, reaps it. Destroying it closes the control
// socket; the service serves on until its pipes reach EOF (reparented to init, or a
// subreaper, once the daemon exits). A service of an earlier daemon needs nothing from us.
class LogService {
 public:
  // `exe` runs as "<exe> __log-service". With max_bytes 0 no service is started.
  LogService(boost::asio::io_context& io, std::string exe, uint64_t max_bytes, int keep);
  LogService(const LogService&) = delete;
  LogService& operator=(const LogService&) = delete;
  ~LogService();

  // Opens `log_path` (created 0640 if missing), then passes a new pipe to the service and
  // returns its write end. When the cap is 0, or there is no service (it cannot start, or
  // is behind: logged as a warning, once per LogService), returns the log itself. A dead
  // service is restarted once. Fails with kInternal (LOG_UNWRITABLE, naming the file and
  // errno) when the log cannot be opened; nothing is left open then.
  absl::StatusOr<AgentOutput> Open(const std::string& instance_id, const std::string& log_path);

  // For an instance whose agent has exited: when its latest stream is still open, calls
  // `drained` once the service acknowledged its EOF, i.e. wrote everything the agent wrote,
  // or after `bound` (a process that escaped the instance may hold the pipe open, or the
  // service died), and returns true; returns false, without calling it, when there is no
  // such stream. `drained` runs on the loop, after this returns, and not at all once
  // LogService is destroyed.
  bool WhenDrained(const std::string& instance_id, absl::Duration bound,
                   std::function<void()> drained);

  // Streams passed and not yet acknowledged as closed.
  size_t OpenStreams() const { return streams_.size(); }
  // The running service's pid, 0 when none.
  pid_t ServicePid() const { return pid_; }

 private:
  struct Stream;
  absl::Status EnsureService();
  // While streams are open, the control socket and the service's pidfd are watched; idle,
  // neither is (the loop may run out of work): a service that died meanwhile is found at the
  // next Open (sendmsg fails) and reaped once watched again. A service known to be gone is
  // watched until reaped.
  void Arm();
  void DisarmIfIdle();
  void AwaitAcks();
  void OnAcks();
  void AwaitServiceExit(pid_t pid);
  // The current service died (`why`): logs it, forgets it, finishes its streams.
  void ServiceGone(const std::string& why);
  void Finish(uint64_t token);

  boost::asio::io_context& io_;
  const std::string exe_;
  const uint64_t max_bytes_;
  const int keep_;
  bool warned_ = false;
  bool armed_ = false;
  pid_t pid_ = 0;
  std::unique_ptr<boost::asio::posix::stream_descriptor> control_;  // owns the fd
  std::shared_ptr<int> generation_;  // ack handlers of a forgotten service do nothing
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  // Services started and not yet reaped: pid -> pidfd (owns the fd).
  absl::flat_hash_map<pid_t, std::unique_ptr<boost::asio::posix::stream_descriptor>> reapers_;
  uint64_t next_token_ = 1;
  absl::flat_hash_map<uint64_t, std::shared_ptr<Stream>> streams_;
  absl::flat_hash_map<std::string, uint64_t> latest_;  // instance id -> its newest stream
};

}  // namespace palm::runtime
