// The `palm __log-shim` process: the one writer of an agent's log file.
//
// An agent's stdout and stderr are the write end of a pipe; the shim reads the other end and
// appends to the log, so it owns the file and rotates it exactly at the size cap, by rename:
// LOG -> LOG.1 (.1 -> .2 ... up to `keep`, the oldest dropped), then a fresh LOG. No file ever
// passes the cap, whatever the write rate, and the daemon does no log I/O at all. A write
// that would cross the cap is split there, after the last newline when one falls within the
// last kNewlineWindow bytes before the cap, else exactly at the cap.
//
//   <palm> __log-shim --path LOG --max-bytes N --keep K      (stdin: the pipe)
//
// The shim outlives the daemon (agents do, and their output must keep flowing): it runs in
// its own process group, not the agent's, so stopping the agent's group leaves it to drain
// the pipe; it ignores SIGHUP, SIGINT, SIGTERM and SIGPIPE; it exits 0 once the pipe reaches
// EOF, i.e. when the agent and everything that inherited its stdout are gone, with every
// byte written to the log. It writes nothing of its own into the log.
//
// Several shims may append to the same path (an instance restarted while a child of its
// previous process still holds the old pipe): each checks the file's real size before every
// write and rotations are serialized by flock() on the live file, so the cap still holds
// within one read buffer per extra writer.
//
// The daemon's half is LogShims: it opens an agent's output (the pipe to a new shim) and
// reaps the shims, which are its children, through pidfds on the event loop.
//
// Thread-safety: PumpToLog runs on the calling thread and shares nothing; LogShims is used
// on its io_context's thread only; the rest are pure.
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

namespace palm::runtime {

// The verb main() dispatches to RunLogShim (as argv[1]).
inline constexpr char kLogShimVerb[] = "__log-shim";

// Bytes read from the pipe at once.
inline constexpr size_t kLogShimBufferBytes = 64 * 1024;
// How far before the cap a newline may be to end the file there instead of a hard cut.
inline constexpr size_t kNewlineWindow = 4 * 1024;

// How long an instance's exit report waits for its shim to drain the pipe (see WhenDrained).
inline constexpr absl::Duration kLogShimDrainBound = absl::Milliseconds(250);

struct LogShimOptions {
  std::string path;        // the live log
  uint64_t max_bytes = 0;  // 0 = never rotate
  int keep = 0;            // rotated files kept; 0 = truncate in place at the cap
};

// Appends everything read from `in` to `options.path` (opened O_APPEND, created 0640),
// rotating as described above, until `in` reaches EOF. Never stops for the log's sake: a
// chunk that cannot be written (disk full, log unopenable) is dropped, so the agent never
// blocks on a broken log; a rotation whose rename fails truncates the live file instead, so
// the cap holds. Returns OK at EOF, or kInternal (naming errno) when reading `in` fails.
// Does not close `in`.
absl::Status PumpToLog(int in, const LogShimOptions& options);

// argv that runs `exe` as the shim for `options` (exe, kLogShimVerb, flags).
std::vector<std::string> LogShimArgv(const std::string& exe, const LogShimOptions& options);

// Entry point of the verb. argv[0] is ignored and a leading kLogShimVerb after it is
// skipped, so main may pass (argc, argv) or (argc-1, argv+1). Sets up the signals, makes the
// path absolute and leaves its working directory (chdir "/", so it pins no mount), then runs
// PumpToLog on stdin. Returns 0 at EOF, 1 when reading stdin fails, 2 for bad arguments.
int RunLogShim(int argc, char** argv);

// A shim started by StartLogShim: the pipe's write end (O_CLOEXEC; the caller hands it to
// the agent as stdout and stderr, then closes it) and the shim's pid (the caller's child,
// which the caller must reap).
struct StartedLogShim {
  int write_fd = -1;
  pid_t pid = 0;
};

// Creates the pipe and posix_spawns `exe` as the shim for `options` reading it, in a new
// process group, stdout and stderr /dev/null, every other fd closed. Fails with
// kUnavailable naming `exe` and errno (ENOENT, EACCES, ...) when the pipe or the spawn
// fails; nothing is left open or running then.
absl::StatusOr<StartedLogShim> StartLogShim(const std::string& exe, const LogShimOptions& options);

// What an agent's stdout and stderr are to be: the write end of the pipe to its log shim,
// or the log file itself (O_APPEND). Owns the fd, closed by Close() or the destructor: the
// daemon must not keep the write end once the agent has it, or the shim never sees EOF.
class AgentOutput {
 public:
  AgentOutput(int fd, bool to_shim) : fd_(fd), to_shim_(to_shim) {}
  AgentOutput(AgentOutput&& other) noexcept : fd_(other.fd_), to_shim_(other.to_shim_) {
    other.fd_ = -1;
  }
  AgentOutput& operator=(AgentOutput&&) = delete;
  ~AgentOutput() { Close(); }
  int fd() const { return fd_; }
  // False when the agent writes the log itself (no cap, or the shim could not start).
  bool to_shim() const { return to_shim_; }
  void Close();

 private:
  int fd_;
  bool to_shim_;
};

// Starts log shims for agents and reaps them. Destroying it stops watching; the shims run
// on until their pipes reach EOF (reparented to init, or a subreaper, once the daemon exits).
// A shim started by an earlier daemon is not our child and needs nothing from us.
class LogShims {
 public:
  // `exe` runs as "<exe> __log-shim ...". With max_bytes 0 no shim is started.
  LogShims(boost::asio::io_context& io, std::string exe, uint64_t max_bytes, int keep);
  LogShims(const LogShims&) = delete;
  LogShims& operator=(const LogShims&) = delete;
  ~LogShims();

  // Opens `log_path` (created 0640 if missing), then starts a shim writing it and returns
  // the pipe to it; the shim is watched from now on and reaped once it exits. When the cap
  // is 0, or the shim cannot start (logged as a warning, once per LogShims), returns the
  // log itself. Fails with kInternal (LOG_UNWRITABLE, naming the file and errno) when the
  // log cannot be opened; nothing is left open or running then.
  absl::StatusOr<AgentOutput> Open(const std::string& instance_id, const std::string& log_path);

  // For an instance whose agent has exited: when its latest shim is still running, calls
  // `drained` once that shim has exited, i.e. written everything the agent wrote, or after
  // `bound` (a process that escaped the instance may hold the pipe open), and returns true;
  // returns false, without calling it, when there is no such shim. `drained` runs on the
  // loop, after this returns, and not at all once LogShims is destroyed.
  bool WhenDrained(const std::string& instance_id, absl::Duration bound,
                   std::function<void()> drained);

  // Shims started and not yet exited.
  size_t Running() const { return shims_.size(); }

 private:
  struct Shim;
  void AwaitExit(const std::shared_ptr<Shim>& shim);
  void OnExit(const std::shared_ptr<Shim>& shim);

  boost::asio::io_context& io_;
  const std::string exe_;
  const uint64_t max_bytes_;
  const int keep_;
  bool warned_ = false;
  absl::flat_hash_map<pid_t, std::shared_ptr<Shim>> shims_;
  absl::flat_hash_map<std::string, pid_t> latest_;  // instance id -> its newest shim
};

}  // namespace palm::runtime
