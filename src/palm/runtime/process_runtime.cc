#include "palm/runtime/process_runtime.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/posix/stream_descriptor.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/thread_pool.hpp"
#include "palm/base/error.h"
#include "palm/base/log.h"
#include "palm/runtime/cgroup.h"
#include "palm/runtime/spawn_attr.h"
#include "palm/runtime/command_lookup.h"
#include "palm/runtime/exec_probe.h"
#include "palm/runtime/limits_shim.h"
#include "palm/runtime/log_rotator.h"
#include "palm/runtime/log_shim.h"
#include "palm/runtime/proc.h"

#ifndef P_PIDFD
#define P_PIDFD 3  // waitid() id type, Linux 5.4+; glibc < 2.36 headers lack it
#endif

namespace palm::runtime {
namespace {

namespace asio = boost::asio;

constexpr char kDefaultPath[] = "/usr/local/bin:/usr/bin:/bin";
// After an instance's process exits: how often its cgroup is checked for the processes it
// left (each check re-sends SIGKILL), and for how long before the exit is reported anyway.
constexpr auto kSettlePoll = std::chrono::milliseconds(5);
constexpr int kMaxSettlePolls = 1000;  // 5 s
// How often a cgroup that could not be removed (still busy) is tried again.
constexpr auto kRemovalRetry = std::chrono::seconds(1);

int PidfdOpen(int pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// Lowers a new child's soft RLIMIT_NOFILE to `soft` (never above its hard limit). The child
// has only just exec'd: descriptors it already holds stay valid whatever their number, and
// rlimits survive exec, so a limits shim's agent gets the lowered limit too.
void RestoreNofileSoftLimit(int pid, uint64_t soft) {
  rlimit cur{};
  if (::prlimit(pid, RLIMIT_NOFILE, nullptr, &cur) != 0 || cur.rlim_cur <= soft) return;
  const rlimit lowered{static_cast<rlim_t>(soft), cur.rlim_max};
  (void)::prlimit(pid, RLIMIT_NOFILE, &lowered, nullptr);
}

int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

std::string Quoted(const std::string& s) { return absl::StrCat("\"", s, "\""); }

// posix_spawn_file_actions_t with RAII.
class FileActions {
 public:
  FileActions() { posix_spawn_file_actions_init(&fa_); }
  FileActions(const FileActions&) = delete;
  FileActions& operator=(const FileActions&) = delete;
  ~FileActions() { posix_spawn_file_actions_destroy(&fa_); }
  posix_spawn_file_actions_t* get() { return &fa_; }

 private:
  posix_spawn_file_actions_t fa_;
};

absl::Status CheckWorkdir(const std::string& workdir) {
  struct stat st;
  if (::stat(workdir.c_str(), &st) != 0) {
    return Error(absl::StatusCode::kFailedPrecondition, "WORKDIR_INVALID",
                 absl::StrCat("workdir ", Quoted(workdir), ": ", std::strerror(errno)),
                 "create the directory or fix the spec's workdir");
  }
  if (!S_ISDIR(st.st_mode)) {
    return Error(absl::StatusCode::kFailedPrecondition, "WORKDIR_INVALID",
                 absl::StrCat("workdir ", Quoted(workdir), " is not a directory"),
                 "fix the spec's workdir");
  }
  return absl::OkStatus();
}

// Creates the log's directory when missing; one stat() when it exists.
absl::Status EnsureLogDir(const std::string& log_path) {
  const size_t slash = log_path.rfind('/');
  if (slash == std::string::npos || slash == 0) return absl::OkStatus();
  const std::string dir = log_path.substr(0, slash);
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return absl::OkStatus();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return Error(absl::StatusCode::kInternal, "LOG_DIR_FAILED",
                 absl::StrCat("cannot create log directory ", Quoted(dir), ": ", ec.message()));
  }
  return absl::OkStatus();
}

absl::Status SpawnError(int err, const SpawnRequest& req) {
  // The program and workdir were checked just before, so these mean a race with the
  // filesystem or a log file we cannot open; the message carries both paths.
  const std::string message =
      absl::StrCat("spawn ", Quoted(req.argv[0]), " (log ", Quoted(req.log_path),
                   req.workdir.empty() ? "" : absl::StrCat(", workdir ", Quoted(req.workdir)),
                   "): ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return Error(absl::StatusCode::kNotFound, "COMMAND_NOT_FOUND", message);
    case EACCES:
    case EPERM:
    case ENOEXEC:
      return Error(absl::StatusCode::kPermissionDenied, "COMMAND_NOT_EXECUTABLE", message);
    default:
      return Error(absl::StatusCode::kInternal, "SPAWN_FAILED", message);
  }
}

absl::Status ValidateRequest(const SpawnRequest& req) {
  if (req.instance_id.empty()) return InvalidArgument("spawn: empty instance id");
  if (req.argv.empty() || req.argv[0].empty()) {
    return InvalidArgument(absl::StrCat("instance ", req.instance_id, ": empty command"));
  }
  if (req.log_path.empty()) {
    return InvalidArgument(absl::StrCat("instance ", req.instance_id, ": empty log path"));
  }
  for (const auto& [key, value] : req.env) {
    if (key.empty() || key.find('=') != std::string::npos) {
      return InvalidArgument(
          absl::StrCat("instance ", req.instance_id, ": bad environment name ", Quoted(key)));
    }
  }
  const Limits& l = req.limits;
  if ((l.memory_mb && *l.memory_mb <= 0) || (l.max_procs && *l.max_procs <= 0) ||
      (l.max_open_files && *l.max_open_files <= 0) || (l.cpu && !(*l.cpu > 0))) {
    return InvalidArgument(absl::StrCat("instance ", req.instance_id, ": limits must be > 0"));
  }
  return absl::OkStatus();
}

std::string SelfExe() {
  std::error_code ec;
  auto path = std::filesystem::read_symlink("/proc/self/exe", ec);
  // "/proc/self/exe" itself still names our binary inside the (vforked) child.
  return ec ? std::string("/proc/self/exe") : path.string();
}

// Whether `pid`'s stdout is a pipe (to a log service or shim) rather than the log file; true
// when we cannot tell, so a log is never rotated from two sides.
bool StdoutIsPipe(int pid) {
  char target[64];
  const std::string link = absl::StrCat("/proc/", pid, "/fd/1");
  const ssize_t n = ::readlink(link.c_str(), target, sizeof(target));
  return n < 0 || std::string_view(target, static_cast<size_t>(n)).starts_with("pipe:");
}

class ProcessRuntime final : public Runtime {
 public:
  ProcessRuntime(asio::io_context& io, ProcessRuntimeOptions options)
      : io_(io),
        options_(std::move(options)),
        shim_path_(options_.limits_shim_path.empty() ? SelfExe() : options_.limits_shim_path),
        boot_id_(options_.boot_id.empty() ? ReadBootId() : options_.boot_id),
        cgroups_(Cgroups::Detect({.enabled = options_.cgroups != CgroupUse::kOff, .parent = options_.cgroup_parent})),
        log_service_(io, options_.log_shim_path.empty() ? SelfExe() : options_.log_shim_path,
                     options_.log_max_bytes, options_.log_keep),
        rotate_timer_(io),
        removal_timer_(io) {
    if (cgroups_->available()) {
      PALM_LOG(kInfo, "instances run in cgroups (", std::string(ToString(cgroups_->version())), ")");
    } else if (options_.cgroups != CgroupUse::kOff) {
      PALM_LOG(kInfo, "limits by rlimits: cannot use cgroups: ", cgroups_->reason());
    }
    if (options_.exec_probes_use_cgroups && cgroups_->available()) {
      SetDefaultExecProbeOptions({cgroups_, shim_path_});
      installed_probe_options_ = true;
    }
    if (const char* p = std::getenv("PATH"); p != nullptr && *p != '\0') {
      daemon_path_ = p;
    } else {
      daemon_path_ = kDefaultPath;
    }
  }

  ~ProcessRuntime() override {
    if (installed_probe_options_) SetDefaultExecProbeOptions({});
    alive_.reset();    // queued timer/post handlers become no-ops
    watches_.clear();  // closes pidfds: pending waits complete as aborted, agents live on
    rotate_timer_.cancel();
    if (rotator_) rotator_->join();  // a copy-truncate in progress (direct logs only)
    removal_timer_.cancel();
    cgroups_->RemoveParentIfEmpty();  // agents still running keep it
  }

  void SetExitCallback(ExitCallback cb) override { exit_cb_ = std::move(cb); }

  absl::StatusOr<Spawned> Spawn(const SpawnRequest& req) override {
    PALM_RETURN_IF_ERROR(ValidateRequest(req));
    if (watches_.contains(req.instance_id)) {
      return Error(absl::StatusCode::kAlreadyExists, "INSTANCE_RUNNING",
                   absl::StrCat("instance ", req.instance_id, " already has a process"));
    }
    if (!req.workdir.empty()) PALM_RETURN_IF_ERROR(CheckWorkdir(req.workdir));
    const auto path_it = req.env.find("PATH");
    const std::string& path_env = path_it != req.env.end() ? path_it->second : daemon_path_;
    PALM_ASSIGN_OR_RETURN(std::string program, ResolveCommand(req.argv[0], path_env, req.workdir));
    PALM_RETURN_IF_ERROR(EnsureLogDir(req.log_path));
    // stdout and stderr: a pipe to the log service, or the log itself (log_shim.h).
    PALM_ASSIGN_OR_RETURN(AgentOutput out, log_service_.Open(req.instance_id, req.log_path));

    // Limits: the instance's own cgroup when we can make one, else rlimits.
    Spawned id;
    Limits rlimits = req.limits;
    rlimits.cpu.reset();
    std::vector<std::string> cgroup_dirs;
    const std::string cgroup = CgroupName(req.instance_id);
    const bool limited = req.limits.memory_mb || req.limits.max_procs || req.limits.cpu;
    if (cgroups_->available() && (limited || options_.cgroups == CgroupUse::kAll)) {
      absl::StatusOr<std::vector<std::string>> dirs = cgroups_->Create(
          cgroup, {req.limits.memory_mb, req.limits.max_procs, req.limits.cpu});
      if (dirs.ok()) {
        cgroup_dirs = std::move(*dirs);
        id.enforced_by = cgroups_->version() == CgroupVersion::kV2 ? LimitsMechanism::kCgroupV2
                                                                   : LimitsMechanism::kCgroupV1;
        id.enforced = req.limits;
        rlimits.memory_mb.reset();
        rlimits.max_procs.reset();
      } else {
        PALM_LOG(kWarning, "instance ", req.instance_id, ": no cgroup, limits by rlimits: ",
                 dirs.status().message());
        RemoveCgroupLater(cgroup);
      }
    }
    if (cgroup_dirs.empty() && HasLimits(rlimits)) {
      id.enforced_by = LimitsMechanism::kRlimit;
      id.enforced = rlimits;
    } else if (rlimits.max_open_files) {
      id.enforced.max_open_files = rlimits.max_open_files;
    }

    // argv: the program itself, or the shim joining the cgroup and applying rlimits before
    // exec'ing it.
    std::vector<std::string> shim_argv;
    const std::vector<std::string>* args = &req.argv;
    const char* exe = program.c_str();
    const bool via_shim = HasLimits(rlimits) || !cgroup_dirs.empty();
    if (via_shim) {
      shim_argv = LimitsShimArgv(shim_path_, rlimits, cgroup_dirs, program, req.argv);
      args = &shim_argv;
      exe = shim_path_.c_str();
    }
    std::vector<char*> argv;
    argv.reserve(args->size() + 1);
    for (const std::string& a : *args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);

    std::vector<std::string> env_storage;
    env_storage.reserve(req.env.size());
    std::vector<char*> envp;
    envp.reserve(req.env.size() + 1);
    for (const auto& [key, value] : req.env) {
      env_storage.push_back(absl::StrCat(key, "=", value));
      envp.push_back(env_storage.back().data());
    }
    envp.push_back(nullptr);

    // stdin /dev/null, stdout and stderr `out`; then the child closes every other fd
    // (close_range, glibc 2.34+): what the daemon inherited or a library opened without
    // O_CLOEXEC never reaches an agent, nor does another instance's pipe. chdir comes last.
    FileActions fa;
    posix_spawn_file_actions_addopen(fa.get(), STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(fa.get(), out.fd(), STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(fa.get(), STDOUT_FILENO, STDERR_FILENO);
    posix_spawn_file_actions_addclosefrom_np(fa.get(), STDERR_FILENO + 1);
    if (!req.workdir.empty()) {
      posix_spawn_file_actions_addchdir_np(fa.get(), req.workdir.c_str());
    }

    pid_t pid = 0;
    // glibc runs the child with CLONE_VFORK and returns its exec/chdir/open errno here.
    const int err = ::posix_spawn(&pid, exe, fa.get(), attr_.get(), argv.data(), envp.data());
    // Only the agent may hold the pipe's write end: the log service then sees EOF when the
    // agent's output is closed (at once when the spawn failed) and closes the stream.
    out.Close();
    if (err != 0) {
      if (!cgroup_dirs.empty()) RemoveCgroupLater(cgroup);
      absl::Status s = SpawnError(err, req);
      // Everything but the shim was checked: say so when it is the likely culprit.
      return via_shim ? Annotate(s, absl::StrCat("limits shim ", Quoted(shim_path_))) : s;
    }

    // Our unreaped child keeps its pid (even as a zombie), so no call here can race a reuse.
    if (options_.child_nofile_soft > 0 && !req.limits.max_open_files) {
      RestoreNofileSoftLimit(pid, options_.child_nofile_soft);
    }
    const int pidfd = PidfdOpen(pid);
    id.pid = pid;
    id.start_time = ProcStartTime(pid).value_or(0);
    id.boot_id = boot_id_;
    if (pidfd < 0) {
      // Only when the daemon ignores SIGCHLD (children auto-reaped): the process is gone.
      if (!cgroup_dirs.empty()) RemoveCgroupLater(cgroup);
      ReportGoneLater(req.instance_id);
      return id;
    }
    if (!out.to_shim()) direct_logs_.insert(req.instance_id);
    Watch(req.instance_id, id, pidfd, req.log_path, cgroup_dirs.empty() ? "" : cgroup);
    return id;
  }

  absl::Status Adopt(const std::string& instance_id, const ProcessId& pid,
                     const std::string& log_path) override {
    if (watches_.contains(instance_id)) {
      return Error(absl::StatusCode::kAlreadyExists, "INSTANCE_RUNNING",
                   absl::StrCat("instance ", instance_id, " already has a process"));
    }
    const auto gone = [&](const std::string& why) {
      return NotFound("PROCESS_GONE",
                      absl::StrCat("instance ", instance_id, ": process ", pid.pid, " ", why));
    };
    if (pid.pid <= 0) return gone("is not a valid pid");
    if (!pid.boot_id.empty() && pid.boot_id != boot_id_) {
      // Pids and start times restart with every boot: the same pair can name a stranger.
      return gone(absl::StrCat("was started before a reboot (boot id ", pid.boot_id, ", now ",
                               boot_id_, ")"));
    }
    // Open first, compare after: the pidfd then surely names the process we compared.
    const int pidfd = PidfdOpen(pid.pid);
    if (pidfd < 0) return gone(absl::StrCat("is gone (", std::strerror(errno), ")"));
    const std::optional<uint64_t> start = ProcStartTime(pid.pid);
    if (!start || *start != pid.start_time) {
      ::close(pidfd);
      return gone(start ? absl::StrCat("is now another process (start time ", *start, ", expected ",
                                       pid.start_time, ")")
                        : std::string("is gone"));
    }
    // Its cgroup, when it was started in one (found by its path).
    const std::string cgroup = CgroupName(instance_id);
    const bool in_cgroup = cgroups_->available() && cgroups_->Contains(cgroup, pid.pid);
    // Its log writer (the earlier daemon's log service, or an older palm's shim) runs on; an
    // agent started by a palm without either writes the log itself, rotated here then.
    if (!StdoutIsPipe(pid.pid)) direct_logs_.insert(instance_id);
    Watch(instance_id, pid, pidfd, log_path, in_cgroup ? cgroup : "");
    return absl::OkStatus();
  }

  absl::Status Signal(const std::string& instance_id, int sig) override {
    const auto it = watches_.find(instance_id);
    if (it == watches_.end()) {
      return NotFound("INSTANCE_NOT_RUNNING",
                      absl::StrCat("instance ", instance_id, " has no watched process"));
    }
    WatchState& w = *it->second;
    if (sig == SIGKILL && !w.cgroup.empty()) {
      // Also what left the process group (setsid): everything in the instance's cgroup.
      if (absl::Status st = cgroups_->Kill(w.cgroup); !st.ok()) {
        PALM_LOG(kWarning, "instance ", instance_id, ": ", st.message());
      }
    }
    if (w.exited) return absl::OkStatus();  // the leader is gone; its remnants are being killed
    // pgid == pid (POSIX_SPAWN_SETPGROUP). A pgid is never reused while a member lives.
    if (::kill(-w.pid.pid, sig) == 0) return absl::OkStatus();
    if (errno == ESRCH) {
      // The agent left its process group (setsid/setpgid) and took the group's last
      // member with it: signal the agent itself. The pidfd cannot hit a recycled pid,
      // unlike kill(pid).
      if (PidfdSendSignal(w.pidfd.native_handle(), sig) == 0 || errno == ESRCH) {
        return absl::OkStatus();
      }
    }
    return Error(absl::StatusCode::kInternal, "SIGNAL_FAILED",
                 absl::StrCat("instance ", instance_id, ": signal ", sig, " to process group ",
                              w.pid.pid, ": ", std::strerror(errno)));
  }

  void Forget(const std::string& instance_id) override { watches_.erase(instance_id); }

  size_t Watched() const override { return watches_.size(); }

  std::optional<Usage> UsageOf(const std::string& instance_id) override {
    const auto it = watches_.find(instance_id);
    if (it == watches_.end() || it->second->cgroup.empty()) return std::nullopt;
    return cgroups_->UsageOf(it->second->cgroup);
  }

  std::vector<FoundProcess> FindByEnvKey(const std::string& key) override {
    std::vector<FoundProcess> found = ScanProcessesWithEnvKey(key);
    for (FoundProcess& p : found) p.pid.boot_id = boot_id_;  // live now, so of this boot
    return found;
  }

 private:
  struct WatchState {
    WatchState(asio::io_context& io, int fd) : pidfd(io, fd), settle_timer(io) {}
    std::string instance_id;
    ProcessId pid;
    std::string log_path;
    asio::posix::stream_descriptor pidfd;  // owns the fd
    std::string last_rotation_error;       // reported once, not every period
    std::string cgroup;                    // its cgroup's name, "" = none
    // After the leader exited: its status, reported once the cgroup is empty.
    bool exited = false;
    ExitStatus status;
    int settle_polls = 0;
    asio::steady_timer settle_timer;
    bool log_drained = false;  // its log stream was waited for
  };

  void Watch(const std::string& instance_id, const ProcessId& pid, int pidfd,
             const std::string& log_path, const std::string& cgroup) {
    auto w = std::make_shared<WatchState>(io_, pidfd);
    w->instance_id = instance_id;
    w->pid = pid;
    w->log_path = log_path;
    w->cgroup = cgroup;
    watches_.emplace(instance_id, w);
    AwaitExit(w);
    ArmRotation();
  }

  // The map owns each WatchState; handlers hold weak references, so a handler whose watch
  // was forgotten (or whose runtime was destroyed) does nothing, even when it was already
  // queued as successful before the fd was closed.
  void AwaitExit(const std::shared_ptr<WatchState>& w) {
    w->pidfd.async_wait(
        asio::posix::stream_descriptor::wait_read,
        [this, weak = std::weak_ptr<WatchState>(w)](const boost::system::error_code& ec) {
          if (auto w = weak.lock()) OnPidfdReadable(w, ec);
        });
  }

  static int WaitPidfd(WatchState& w, siginfo_t* info, int flags) {
    std::memset(info, 0, sizeof(*info));
    int r;
    do {
      r = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(w.pidfd.native_handle()),
                   info, WEXITED | WNOHANG | flags);
    } while (r < 0 && errno == EINTR);
    return r;
  }

  void OnPidfdReadable(const std::shared_ptr<WatchState>& w, const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted) return;
    siginfo_t info;
    // Look without reaping: our child stays a zombie meanwhile.
    int r = WaitPidfd(*w, &info, WNOWAIT);
    if (r == 0 && info.si_pid == 0 && !ec) {  // not exited after all: keep waiting
      AwaitExit(w);
      return;
    }
    // The rest of its process group dies with it. Our child is an unreaped zombie here, so
    // its pid, and the pgid equal to it, cannot belong to anyone else. An adopted process
    // (r < 0, ECHILD: not our child) may already be reaped: see process_runtime.h for why
    // killing its group is still safe, and why a cgroup makes it unnecessary.
    if (r == 0 || w->cgroup.empty()) ::kill(-w->pid.pid, SIGKILL);
    ExitStatus status;
    if (r == 0 && WaitPidfd(*w, &info, 0) == 0) {
      if (info.si_code == CLD_EXITED) {
        status.code = info.si_status;
      } else if (info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED) {
        status.signal = info.si_status;
      }
    }
    // r < 0 (ECHILD): an adopted process, not our child; its exit code is unknowable.
    w->exited = true;
    w->status = status;
    Settle(w);
  }

  // Reports the exit once the instance's cgroup is empty, killing what is left in it on
  // every poll (a member that forked while being frozen, one that was still starting).
  void Settle(const std::shared_ptr<WatchState>& w) {
    if (!w->cgroup.empty() && cgroups_->Populated(w->cgroup)) {
      if (w->settle_polls < kMaxSettlePolls) {
        ++w->settle_polls;
        if (absl::Status st = cgroups_->Kill(w->cgroup); !st.ok() && w->settle_polls == 1) {
          PALM_LOG(kWarning, "instance ", w->instance_id, ": ", st.message());
        }
        w->settle_timer.expires_after(kSettlePoll);
        w->settle_timer.async_wait(
            [this, weak = std::weak_ptr<WatchState>(w)](const boost::system::error_code& ec) {
              if (auto w = weak.lock(); w && !ec) Settle(w);
            });
        return;
      }
      PALM_LOG(kWarning, "instance ", w->instance_id, ": processes of cgroup ", w->cgroup,
               " survive SIGKILL (uninterruptible sleep?); reporting the exit anyway");
    }
    // Then its log stream, which the service acknowledges once it has written everything the
    // instance wrote: the log is complete when the exit is reported, and a respawn's stream
    // never races this one.
    if (!w->log_drained) {
      w->log_drained = true;
      const auto settle = [this, weak = std::weak_ptr<WatchState>(w)] {
        if (auto w = weak.lock()) Settle(w);
      };
      if (log_service_.WhenDrained(w->instance_id, kLogShimDrainBound, settle)) return;
    }
    if (!w->cgroup.empty()) RemoveCgroupLater(w->cgroup);
    const std::string instance_id = w->instance_id;
    const ExitStatus status = w->status;
    watches_.erase(instance_id);  // before the callback, which may Spawn the same id again
    if (exit_cb_) {
      const ExitCallback cb = exit_cb_;  // survives a SetExitCallback from inside
      cb(instance_id, status);
    }
  }

  // Removes the cgroup now if it is empty, else kills what is in it and tries again every
  // kRemovalRetry (never waiting on the loop). A Spawn of the same instance meanwhile
  // reuses the group; the retry then leaves it alone.
  void RemoveCgroupLater(const std::string& cgroup) {
    if (cgroups_->Remove(cgroup).ok()) return;
    pending_removals_.insert(cgroup);
    ArmRemoval();
  }

  void ArmRemoval() {
    if (removal_armed_ || pending_removals_.empty()) return;
    removal_armed_ = true;
    removal_timer_.expires_after(kRemovalRetry);
    removal_timer_.async_wait(
        [this, alive = std::weak_ptr<int>(alive_)](const boost::system::error_code& ec) {
          if (alive.expired()) return;
          removal_armed_ = false;
          if (ec) return;
          for (auto it = pending_removals_.begin(); it != pending_removals_.end();) {
            const bool in_use = std::any_of(watches_.begin(), watches_.end(), [&](const auto& kv) {
              return kv.second->cgroup == *it;
            });
            if (in_use) {
              it = pending_removals_.erase(it);
              continue;
            }
            if (cgroups_->Populated(*it)) (void)cgroups_->Kill(*it);
            it = cgroups_->Remove(*it).ok() ? pending_removals_.erase(it) : std::next(it);
          }
          ArmRemoval();
        });
  }

  void ReportGoneLater(const std::string& instance_id) {
    asio::post(io_, [this, alive = std::weak_ptr<int>(alive_), instance_id] {
      if (alive.expired() || !exit_cb_) return;
      const ExitCallback cb = exit_cb_;
      cb(instance_id, ExitStatus{});
    });
  }

  // Logs written by their agents directly (no shim: see log_shim.h) are copy-truncated,
  // off the loop. The timer runs only while there are such logs, so a runtime whose agents
  // all have shims, or an idle one, leaves the io_context free to run out of work.
  void ArmRotation() {
    if (rotation_armed_ || direct_logs_.empty() || options_.log_max_bytes == 0 ||
        options_.log_check_period <= absl::ZeroDuration()) {
      return;
    }
    rotation_armed_ = true;
    rotate_timer_.expires_after(
        std::chrono::nanoseconds(absl::ToInt64Nanoseconds(options_.log_check_period)));
    rotate_timer_.async_wait(
        [this, alive = std::weak_ptr<int>(alive_)](const boost::system::error_code& ec) {
          if (alive.expired()) return;
          rotation_armed_ = false;
          if (ec) return;
          RotateLogs();
          ArmRotation();
        });
  }

  // One pass at a time on the rotator thread (a copy of a big log takes a while); the
  // results come back to the loop, which alone touches the watches.
  void RotateLogs() {
    if (rotation_running_) return;
    std::vector<std::pair<std::string, std::string>> logs;  // instance id, log path
    for (auto it = direct_logs_.begin(); it != direct_logs_.end();) {
      const auto w = watches_.find(*it);
      if (w == watches_.end()) {
        direct_logs_.erase(it++);  // exited or forgotten
        continue;
      }
      if (!w->second->log_path.empty()) logs.emplace_back(*it, w->second->log_path);
      ++it;
    }
    if (logs.empty()) return;
    if (!rotator_) rotator_ = std::make_unique<asio::thread_pool>(1);
    rotation_running_ = true;
    asio::post(*rotator_, [&io = io_, alive = std::weak_ptr<int>(alive_), this,
                           logs = std::move(logs), max = options_.log_max_bytes,
                           keep = options_.log_keep] {
      std::vector<std::pair<std::string, absl::Status>> results;
      for (const auto& [id, path] : logs) {
        results.emplace_back(id, RotateLogIfLarger(path, max, keep).status());
      }
      asio::post(io, [this, alive, results = std::move(results)] {
        if (alive.expired()) return;
        rotation_running_ = false;
        for (const auto& [id, status] : results) {
          const auto it = watches_.find(id);
          if (it == watches_.end()) continue;
          WatchState& w = *it->second;
          if (status.ok()) {
            w.last_rotation_error.clear();
          } else if (std::string msg(status.message()); msg != w.last_rotation_error) {
            // Logged once per new error, not every period; the agent keeps running regardless.
            PALM_LOG(kWarning, "instance ", id, ": ", msg);
            w.last_rotation_error = std::move(msg);
          }
        }
      });
    });
  }

  asio::io_context& io_;
  const ProcessRuntimeOptions options_;
  const std::string shim_path_;
  const std::string boot_id_;
  const std::shared_ptr<Cgroups> cgroups_;
  std::string daemon_path_;
  const NewGroupSpawnAttr attr_;  // one for every spawn (spawn_attr.h)
  ExitCallback exit_cb_;
  absl::flat_hash_map<std::string, std::shared_ptr<WatchState>> watches_;
  LogService log_service_;
  absl::flat_hash_set<std::string> direct_logs_;  // instances whose agent writes its log
  std::unique_ptr<asio::thread_pool> rotator_;     // copy-truncates direct logs, made on need
  bool rotation_running_ = false;
  asio::steady_timer rotate_timer_;
  bool rotation_armed_ = false;
  bool installed_probe_options_ = false;
  std::set<std::string> pending_removals_;
  asio::steady_timer removal_timer_;
  bool removal_armed_ = false;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace

std::unique_ptr<Runtime> NewProcessRuntime(boost::asio::io_context& io,
                                           ProcessRuntimeOptions options) {
  if (const char* v = std::getenv("PALM_CGROUPS"); v != nullptr && *v != '\0') {
    const std::string_view use(v);
    if (use == "off") {
      options.cgroups = CgroupUse::kOff;
    } else if (use == "limited") {
      options.cgroups = CgroupUse::kLimited;
    } else if (use == "all") {
      options.cgroups = CgroupUse::kAll;
    } else {
      PALM_LOG(kWarning, "PALM_CGROUPS=", std::string(use), " is not off, limited or all: ignored");
    }
  }
  if (const char* v = std::getenv("PALM_CGROUP_PARENT"); v != nullptr && *v != '\0') {
    options.cgroup_parent = v;
  }
  return std::make_unique<ProcessRuntime>(io, std::move(options));
}

std::string ReadBootId() {
  const int fd = ::open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  char buf[64];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof(buf));
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  std::string id(buf, n > 0 ? static_cast<size_t>(n) : 0);
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id;
}

}  // namespace palm::runtime
