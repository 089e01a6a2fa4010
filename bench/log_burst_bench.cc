// Log burst benchmark (issue #10, item 10), all in one run on the same machine:
//  (a) throughput: a writer pushing B MiB of 128-byte lines as fast as it can, straight into
//      an O_APPEND file (the floor), then through a pipe into `palm __log-service` with a
//      cap of 10 MiB and 3 kept files (what every agent gets now);
//  (b) the event loop's worst stall during an agent's B MiB burst, measured as the largest
//      gap between ticks of a 10 ms steady timer: first as before the service (the agent
//      writes the file, the loop copy-truncates it every 5 s), then through ProcessRuntime as
//      it is now (the agent writes to the log service). The largest log file left is printed.
// Usage: log_burst_bench PATH/TO/palm [B=1024]
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>

#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/steady_timer.hpp"
#include "palm/runtime/log_rotator.h"
#include "palm/runtime/log_shim.h"
#include "palm/runtime/process_runtime.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using palm::bench::Clock;
using palm::bench::Seconds;

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kCap = 10 * kMiB;
constexpr int kKeep = 3;

// Writes `mib` MiB of 128-byte lines to `fd` in 64 KiB writes; false on a write error.
bool WriteBurst(int fd, uint64_t mib) {
  std::string block(64 * 1024, 'x');
  for (size_t i = 127; i < block.size(); i += 128) block[i] = '\n';
  for (uint64_t done = 0; done < mib * kMiB; done += block.size()) {
    for (size_t off = 0; off < block.size();) {
      const ssize_t w = ::write(fd, block.data() + off, block.size() - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      off += static_cast<size_t>(w);
    }
  }
  return true;
}

// The floor's writer keeps its own file under the cap the way the shim does (drop the oldest,
// shift by rename), so (a) compares the same file work with and without the pipe hop.
bool WriteBurstRotating(const std::string& log, uint64_t mib) {
  int fd = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  for (uint64_t done = 0; done < mib; done += kCap / kMiB) {
    if (fd < 0 || !WriteBurst(fd, std::min(kCap / kMiB, mib - done))) return false;
    ::close(fd);
    ::unlink(absl::StrCat(log, ".", kKeep).c_str());
    for (int i = kKeep - 1; i >= 1; --i) {
      ::rename(absl::StrCat(log, ".", i).c_str(), absl::StrCat(log, ".", i + 1).c_str());
    }
    ::rename(log.c_str(), (log + ".1").c_str());
    fd = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  }
  if (fd >= 0) ::close(fd);
  return fd >= 0;
}

uint64_t LargestFile(const std::string& dir) {
  uint64_t largest = 0;
  for (const auto& e : fs::directory_iterator(dir)) largest = std::max(largest, e.file_size());
  return largest;
}

void Clear(const std::string& dir) {
  fs::remove_all(dir);
  fs::create_directories(dir);
}

// A 10 ms steady timer on `io` recording the largest gap between its ticks.
class StallMeter {
 public:
  explicit StallMeter(boost::asio::io_context& io) : timer_(io) {}
  void Start() {
    last_ = Clock::now();
    Arm();
  }
  void Stop() { timer_.cancel(); }
  double max_gap_ms() const { return max_gap_ms_; }

 private:
  void Arm() {
    timer_.expires_after(std::chrono::milliseconds(10));
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      const auto now = Clock::now();
      max_gap_ms_ = std::max(max_gap_ms_, Seconds(now - last_) * 1000);
      last_ = now;
      Arm();
    });
  }
  boost::asio::steady_timer timer_;
  Clock::time_point last_;
  double max_gap_ms_ = 0;
};

// (b) before: the agent appends to the file itself; every 5 s the loop copy-truncates it.
void BeforeStall(const std::string& dir, uint64_t mib, double* max_gap_ms, uint64_t* largest) {
  const std::string log = dir + "/agent.log";
  boost::asio::io_context io;
  StallMeter meter(io);
  boost::asio::steady_timer check(io);
  bool writer_done = false, checked_after = false;
  std::function<void()> arm_check = [&] {
    check.expires_after(std::chrono::seconds(5));
    check.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      (void)palm::runtime::RotateLogIfLarger(log, kCap, kKeep);  // on the loop, as before
      if (writer_done) {
        checked_after = true;  // the meter's next tick records the stall of that copy
        return;
      }
      arm_check();
    });
  };
  // The agent, as before the shim: `head -c B /dev/zero` appending to the log itself.
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log.c_str(), O_WRONLY | O_APPEND | O_CREAT,
                                   0640);
  std::string count = absl::StrCat(mib * kMiB);
  char* args[] = {const_cast<char*>("head"), const_cast<char*>("-c"), count.data(),
                  const_cast<char*>("/dev/zero"), nullptr};
  pid_t writer = 0;
  const int err = ::posix_spawn(&writer, "/usr/bin/head", &fa, nullptr, args, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (err != 0) {
    std::fprintf(stderr, "spawn head: %s\n", std::strerror(err));
    return;
  }
  meter.Start();
  arm_check();
  *largest = 0;
  while (!checked_after) {
    io.run_for(std::chrono::milliseconds(20));
    if (!writer_done && ::waitpid(writer, nullptr, WNOHANG) == writer) {
      writer_done = true;
      *largest = LargestFile(dir);  // before the next check copies it away
    }
  }
  io.run_for(std::chrono::milliseconds(50));
  meter.Stop();
  *max_gap_ms = meter.max_gap_ms();
}

// (b) after: ProcessRuntime spawns the agent with its output piped to a real log shim.
bool AfterStall(const std::string& palm, const std::string& dir, uint64_t mib, double* max_gap_ms,
                uint64_t* largest, double* seconds) {
  boost::asio::io_context io;
  palm::runtime::ProcessRuntimeOptions options;
  options.log_max_bytes = kCap;
  options.log_keep = kKeep;
  options.log_shim_path = palm;
  options.limits_shim_path = palm;
  options.cgroups = palm::runtime::CgroupUse::kOff;
  auto rt = palm::runtime::NewProcessRuntime(io, options);
  bool exited = false;
  rt->SetExitCallback([&](const std::string&, palm::runtime::ExitStatus) { exited = true; });
  palm::runtime::SpawnRequest req;
  req.instance_id = "burst-001";
  req.argv = {"head", "-c", absl::StrCat(mib * kMiB), "/dev/zero"};
  req.env = {{"PATH", "/usr/bin:/bin"}};
  req.log_path = dir + "/burst-001.log";
  StallMeter meter(io);
  const auto t0 = Clock::now();
  auto spawned = rt->Spawn(req);
  if (!spawned.ok()) {
    std::fprintf(stderr, "spawn: %s\n", spawned.status().ToString().c_str());
    return false;
  }
  meter.Start();
  while (!exited) io.run_for(std::chrono::milliseconds(20));
  *seconds = Seconds(Clock::now() - t0);
  meter.Stop();
  *max_gap_ms = meter.max_gap_ms();
  *largest = LargestFile(dir);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PATH/TO/palm [MiB=1024]\n", argv[0]);
    return 2;
  }
  const std::string palm = fs::absolute(argv[1]).string();
  const uint64_t mib = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1024;
  palm::bench::BenchDir bench_dir;
  const std::string dir = bench_dir.path() + "/logs";
  Clear(dir);

  // (a) floor: straight into the file, rotated by the writer itself; and, for reference,
  // into one ever-growing file (what an agent did before: the cap did not hold).
  auto t0 = Clock::now();
  if (!WriteBurstRotating(dir + "/direct.log", mib)) return 1;
  const double direct_s = Seconds(Clock::now() - t0);
  Clear(dir);
  t0 = Clock::now();
  {
    const int fd =
        ::open((dir + "/direct.log").c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0 || !WriteBurst(fd, mib)) return 1;
    ::close(fd);
  }
  const double unbounded_s = Seconds(Clock::now() - t0);
  Clear(dir);

  // (a) through the log service (one stream, the daemon gone), until it has written
  // everything and exited.
  t0 = Clock::now();
  auto shim = palm::runtime::StartLogService(palm);
  if (!shim.ok()) {
    std::fprintf(stderr, "%s\n", shim.status().ToString().c_str());
    return 1;
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return 1;
  const absl::Status sent =
      palm::runtime::SendLogStream(shim->control_fd, 1, {dir + "/shim.log", kCap, kKeep}, fds[0]);
  ::close(fds[0]);
  ::close(shim->control_fd);
  if (!sent.ok()) {
    std::fprintf(stderr, "%s\n", sent.ToString().c_str());
    return 1;
  }
  const bool wrote = WriteBurst(fds[1], mib);
  ::close(fds[1]);
  int status = 0;
  ::waitpid(shim->pid, &status, 0);
  const double shim_s = Seconds(Clock::now() - t0);
  const uint64_t shim_largest = LargestFile(dir);
  if (!wrote || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
  Clear(dir);

  double before_gap = 0, after_gap = 0, after_s = 0;
  uint64_t before_largest = 0, after_largest = 0;
  BeforeStall(dir, mib, &before_gap, &before_largest);
  Clear(dir);
  if (!AfterStall(palm, dir, mib, &after_gap, &after_largest, &after_s)) return 1;

  const double m = static_cast<double>(mib);
  const auto mb = [](uint64_t bytes) { return static_cast<double>(bytes) / kMiB; };
  std::printf("palm log burst benchmark (%llu MiB per run, cap %llu MiB, keep %d)\n",
              static_cast<unsigned long long>(mib), static_cast<unsigned long long>(kCap / kMiB),
              kKeep);
  std::printf("  (a) writer -> file, rotated by the writer (floor): %6.0f MiB/s\n", m / direct_s);
  std::printf(
      "      writer -> pipe -> palm __log-service:         %6.0f MiB/s  (%.2fx the floor;"
      " largest file %.1f MiB)\n",
      m / shim_s, direct_s / shim_s, mb(shim_largest));
  std::printf("      writer -> one file, no cap (for reference):   %6.0f MiB/s\n", m / unbounded_s);
  std::printf("  (b) the loop's worst stall (gap of a 10 ms timer) during an agent's burst:\n");
  std::printf(
      "      before: copy-truncate on the loop every 5 s:  %6.1f ms  (largest file %.1f MiB)\n",
      before_gap, mb(before_largest));
  std::printf(
      "      after:  log service, through ProcessRuntime:  %6.1f ms  (largest file %.1f MiB;"
      " %.0f MiB/s end to end)\n",
      after_gap, mb(after_largest), m / after_s);
  return 0;
}
