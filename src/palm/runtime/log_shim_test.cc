#include "palm/runtime/log_shim.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace palm::runtime {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kMiB = 1024 * 1024;

std::string Read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

uint64_t SizeOf(const fs::path& p) {
  std::error_code ec;
  const uint64_t size = fs::file_size(p, ec);
  return ec ? 0 : size;
}

std::set<std::string> Files(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

bool WriteAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Waits for our child `pid` to exit (a deadline, never a hang); returns its wait status or
// -1 when it did not exit in time.
int WaitExit(pid_t pid, std::chrono::seconds timeout = std::chrono::seconds(60)) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 || Clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// Lines of kLineBytes: a 16-digit sequence number, a space, filler, '\n'. Deterministic, so
// what survives rotation can be checked against what was written.
constexpr size_t kLineBytes = 128;

void FormatLine(uint64_t n, char* out) {
  for (int i = 15; i >= 0; --i, n /= 10) out[i] = static_cast<char>('0' + n % 10);
  out[16] = ' ';
  std::memset(out + 17, 'x', kLineBytes - 18);
  out[kLineBytes - 1] = '\n';
}

std::string Lines(uint64_t first, uint64_t count) {
  std::string s(count * kLineBytes, '\0');
  for (uint64_t i = 0; i < count; ++i) FormatLine(first + i, s.data() + i * kLineBytes);
  return s;
}

// Writes `lines` numbered lines to `fd` in 64 KiB writes, as fast as the reader allows.
void WriteLines(int fd, uint64_t lines) {
  constexpr uint64_t kPerWrite = 512;  // 64 KiB
  std::string block(kPerWrite * kLineBytes, '\0');
  for (uint64_t done = 0; done < lines;) {
    const uint64_t n = std::min(kPerWrite, lines - done);
    for (uint64_t i = 0; i < n; ++i) FormatLine(done + i, block.data() + i * kLineBytes);
    if (!WriteAll(fd, block.data(), n * kLineBytes)) return;
    done += n;
  }
}

class LogShimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/palm_log_shim_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    log_ = (dir_ / "agent.log").string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Runs PumpToLog in-process over a pipe fed with `chunks`, one write each.
  void Pump(const std::vector<std::string>& chunks, uint64_t max_bytes, int keep) {
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    std::thread writer([&] {
      for (const std::string& c : chunks) WriteAll(fds[1], c.data(), c.size());
      ::close(fds[1]);
    });
    const absl::Status s = PumpToLog(fds[0], {log_, max_bytes, keep});
    writer.join();
    ::close(fds[0]);
    ASSERT_TRUE(s.ok()) << s;
  }

  fs::path dir_;
  std::string log_;
};

TEST_F(LogShimTest, AppendsUnderTheCap) {
  Pump({"one\n", "two\n"}, 100, 3);
  Pump({"three\n"}, 100, 3);  // a later shim appends to what is there
  EXPECT_EQ(Read(log_), "one\ntwo\nthree\n");
  EXPECT_EQ(Files(dir_), std::set<std::string>{"agent.log"});
}

TEST_F(LogShimTest, CutsHardAtTheCapWithoutANewlineNearIt) {
  Pump({"0123456789abcdefghij\n"}, 16, 1);
  EXPECT_EQ(Read(log_ + ".1"), "0123456789abcdef");
  EXPECT_EQ(Read(log_), "ghij\n");
}

TEST_F(LogShimTest, PrefersToEndAFileAfterANewline) {
  // 30-byte lines, cap 100: three whole lines fit (90 bytes), the fourth would cross.
  const std::string line(29, 'a');
  std::string four;
  for (int i = 0; i < 4; ++i) four += line + "\n";
  Pump({four}, 100, 1);
  EXPECT_EQ(Read(log_ + ".1"), four.substr(0, 90));
  EXPECT_EQ(Read(log_), four.substr(90));
}

TEST_F(LogShimTest, EndsAFileAtItsOwnLastNewlineBeforeAWriteThatWouldCrossTheCap) {
  // However the pipe delivers them (one read or two), the first line ends the first file.
  Pump({"aaaa\n", "bbbbbbbb"}, 8, 1);
  EXPECT_EQ(Read(log_ + ".1"), "aaaa\n");
  EXPECT_EQ(Read(log_), "bbbbbbbb");
}

TEST_F(LogShimTest, KeepsKFilesAndDropsTheOldest) {
  std::vector<std::string> chunks;
  for (int i = 0; i < 6; ++i) chunks.push_back(absl::StrCat("file", i, "\n"));  // 6 bytes each
  Pump(chunks, 6, 3);
  EXPECT_EQ(Files(dir_),
            (std::set<std::string>{"agent.log", "agent.log.1", "agent.log.2", "agent.log.3"}));
  EXPECT_EQ(Read(log_ + ".3"), "file2\n");
  EXPECT_EQ(Read(log_ + ".2"), "file3\n");
  EXPECT_EQ(Read(log_ + ".1"), "file4\n");
  EXPECT_EQ(Read(log_), "file5\n");
}

TEST_F(LogShimTest, KeepZeroTruncatesInPlace) {
  Pump({"0123456789\n", "abc\n"}, 12, 0);
  EXPECT_EQ(Read(log_), "abc\n");
  EXPECT_EQ(Files(dir_), std::set<std::string>{"agent.log"});
}

TEST_F(LogShimTest, AnOversizedLogFromBeforeIsRotatedFirst) {
  std::ofstream(log_) << std::string(50, 'o');  // e.g. written without a shim
  Pump({"new\n"}, 20, 1);
  EXPECT_EQ(Read(log_ + ".1"), std::string(50, 'o'));
  EXPECT_EQ(Read(log_), "new\n");
}

TEST_F(LogShimTest, ARemovedLogIsCreatedAgain) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  std::thread shim([&] { EXPECT_TRUE(PumpToLog(fds[0], {log_, kMiB, 1}).ok()); });
  ASSERT_TRUE(WriteAll(fds[1], "before\n", 7));
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Read(log_) != "before\n" && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(::unlink(log_.c_str()), 0);
  ASSERT_TRUE(WriteAll(fds[1], "after\n", 6));
  ::close(fds[1]);
  shim.join();
  ::close(fds[0]);
  EXPECT_EQ(Read(log_), "after\n");
}

// A stream passed to a service: the pipe's write end, the service's pid and its control
// socket (-1 once closed, as when the daemon is gone).
struct ServedStream {
  int write_fd = -1;
  pid_t pid = 0;
  int control = -1;
};

// The service as the daemon runs it: the binary, started by StartLogService, streams passed
// by SendLogStream.
class LogShimProcessTest : public LogShimTest {
 protected:
  // Starts a service and passes it one stream on `path` (default: log_). With
  // close_control, the service exits once that stream reaches EOF.
  ServedStream Start(uint64_t max_bytes, int keep, bool close_control = true,
                     std::string path = "") {
    absl::StatusOr<StartedLogService> service = StartLogService(PALM_LOG_SHIM);
    EXPECT_TRUE(service.ok()) << service.status();
    if (!service.ok()) return {};
    ServedStream s{-1, service->pid, service->control_fd};
    s.write_fd = Pass(s.control, 1, path.empty() ? log_ : path, max_bytes, keep);
    if (close_control) {
      ::close(s.control);
      s.control = -1;
    }
    return s;
  }

  // Passes a new pipe for `path` to the service on `control`; returns its write end.
  int Pass(int control, uint64_t token, const std::string& path, uint64_t max_bytes, int keep) {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    const absl::Status sent = SendLogStream(control, token, {path, max_bytes, keep}, fds[0]);
    EXPECT_TRUE(sent.ok()) << sent;
    ::close(fds[0]);
    return fds[1];
  }
};

// The acknowledgement the daemon waits for: "closed <token>" once the pipe reached EOF and
// what was read is written; a malformed message is dropped and the service serves on.
TEST_F(LogShimProcessTest, AcknowledgesAStreamsEofAfterWritingIt) {
  ServedStream s = Start(kMiB, 3, /*close_control=*/false);
  ASSERT_GT(s.pid, 0);
  int junk[2];
  ASSERT_EQ(::pipe2(junk, O_CLOEXEC), 0);
  ASSERT_TRUE(SendLogStream(s.control, 7, {"relative/path", kMiB, 3}, junk[0]).ok());
  ::close(junk[0]);
  ::close(junk[1]);
  const std::string lines = Lines(0, 1000);
  ASSERT_TRUE(WriteAll(s.write_fd, lines.data(), lines.size()));
  ::close(s.write_fd);
  pollfd p{s.control, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 60000), 1);
  char ack[64];
  const ssize_t n = ::recv(s.control, ack, sizeof(ack), 0);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(ack, n), "closed 1");
  EXPECT_EQ(Read(log_), lines);  // all written when acknowledged
  // Still serving (the control socket is open), until the daemon hangs up.
  EXPECT_EQ(::waitpid(s.pid, nullptr, WNOHANG), 0);
  ::close(s.control);
  const int status = WaitExit(s.pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(LogShimProcessTest, ExitsAtEofWithEverythingWritten) {
  ServedStream shim = Start(kMiB, 3);
  ASSERT_GT(shim.pid, 0);
  // Its own process group, not ours (nor, in the runtime, the agent's).
  EXPECT_EQ(::getpgid(shim.pid), shim.pid);
  // Signals that would end an ordinary process (the daemon's death, ^C, a stop) do not.
  for (const int sig : {SIGHUP, SIGINT, SIGTERM}) {
    // It ignores them once it has started: write until it has surely passed that point.
    ASSERT_TRUE(WriteAll(shim.write_fd, "x\n", 2));
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (SizeOf(log_) == 0 && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_EQ(::kill(shim.pid, sig), 0);
  }
  const std::string tail = Lines(0, 100);
  ASSERT_TRUE(WriteAll(shim.write_fd, tail.data(), tail.size()));
  ::close(shim.write_fd);
  const int status = WaitExit(shim.pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(Read(log_), "x\nx\nx\n" + tail);
}

TEST_F(LogShimProcessTest, StartFailsClearlyForAMissingExecutable) {
  absl::StatusOr<StartedLogService> shim = StartLogService("/nonexistent/palm");
  ASSERT_FALSE(shim.ok());
  EXPECT_EQ(shim.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(shim.status().message().find("/nonexistent/palm"), std::string::npos);
}

// The defect: a burst of output left one rotated file of that size. Through the shim every
// file stays within the cap, the files are one contiguous tail of the output (nothing lost
// at a cut), and the last line written is at the end of the live log.
TEST_F(LogShimProcessTest, AGigabyteBurstKeepsEveryFileWithinTheCap) {
  const uint64_t total_bytes =
      std::getenv("PALM_LOG_BURST_MIB")
          ? std::strtoull(std::getenv("PALM_LOG_BURST_MIB"), nullptr, 10) * kMiB
          : 1024 * kMiB;
  const uint64_t lines = total_bytes / kLineBytes;
  constexpr uint64_t kCap = 10 * kMiB;
  constexpr int kKeep = 3;
  ServedStream shim = Start(kCap, kKeep, /*close_control=*/false);
  ASSERT_GT(shim.pid, 0);
  // A second agent's stream, to another log, through the same service at the same time.
  const fs::path other_dir = dir_ / "other";
  fs::create_directory(other_dir);
  const std::string other = (other_dir / "b.log").string();
  constexpr uint64_t kOtherCap = kMiB;
  constexpr uint64_t kOtherLines = 4 * kMiB / kLineBytes;
  const int other_fd = Pass(shim.control, 2, other, kOtherCap, 2);
  ::close(shim.control);  // the daemon is gone: the service serves on, exits after both
  const auto t0 = Clock::now();
  std::atomic<bool> burst_done = false;
  std::thread burst([&] {
    WriteLines(shim.write_fd, lines);
    ::close(shim.write_fd);
    burst_done = true;
  });
  // Not starved: its lines are all written while the burst is still going on.
  WriteLines(other_fd, kOtherLines);
  ::close(other_fd);
  const std::string last = Lines(kOtherLines - 1, 1);
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  while (!Read(other).ends_with(last) && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const bool other_done_first = !burst_done;
  EXPECT_TRUE(Read(other).ends_with(last));
  burst.join();
  if (total_bytes >= 256 * kMiB) {
    EXPECT_TRUE(other_done_first) << "the bursting stream starved the other one";
  }
  const int status = WaitExit(shim.pid, std::chrono::seconds(150));
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  std::printf("burst: %.0f MiB through the shim in %.2f s (%.0f MiB/s)\n",
              static_cast<double>(total_bytes) / kMiB, seconds,
              static_cast<double>(total_bytes) / kMiB / seconds);

  EXPECT_EQ(Files(dir_), (std::set<std::string>{"agent.log", "agent.log.1", "agent.log.2",
                                                 "agent.log.3", "other"}));
  EXPECT_EQ(Files(other_dir), (std::set<std::string>{"b.log", "b.log.1", "b.log.2"}));
  for (const std::string name : {".2", ".1", ""}) {
    EXPECT_LE(fs::file_size(other + name), kOtherCap) << other + name;
  }
  std::string kept;
  for (const std::string name : {".3", ".2", ".1", ""}) {
    const std::string path = log_ + name;
    const uint64_t size = fs::file_size(path);
    EXPECT_LE(size, kCap) << path;  // exactly within the cap: the shim owns the file
    if (!name.empty()) {
      EXPECT_GE(size, kCap - kNewlineWindow) << path;  // a full file, cut near the cap
    }
    kept += Read(path);
  }
  ASSERT_GE(kept.size(), kLineBytes);
  ASSERT_EQ(kept.size() % kLineBytes, 0u) << "a file was cut inside a line";
  const uint64_t first = std::strtoull(kept.substr(0, 16).c_str(), nullptr, 10);
  const uint64_t count = kept.size() / kLineBytes;
  EXPECT_EQ(first + count, lines) << "the last line written is not the last line kept";
  EXPECT_TRUE(kept == Lines(first, count)) << "the kept files are not one contiguous tail";
}

// Two shims on one path (an instance restarted while a child of its previous process still
// holds the old pipe) still hold the cap: each checks the real size, rotations are locked.
TEST_F(LogShimProcessTest, TwoShimsOnOneLogStillHoldTheCap) {
  constexpr uint64_t kCap = 4 * kMiB;
  ServedStream a = Start(kCap, 2);
  ServedStream b = Start(kCap, 2);
  ASSERT_GT(a.pid, 0);
  ASSERT_GT(b.pid, 0);
  std::thread wa([&] { WriteLines(a.write_fd, 64 * kMiB / kLineBytes); });
  std::thread wb([&] { WriteLines(b.write_fd, 64 * kMiB / kLineBytes); });
  wa.join();
  wb.join();
  ::close(a.write_fd);
  ::close(b.write_fd);
  EXPECT_TRUE(WIFEXITED(WaitExit(a.pid)));
  EXPECT_TRUE(WIFEXITED(WaitExit(b.pid)));
  EXPECT_EQ(Files(dir_), (std::set<std::string>{"agent.log", "agent.log.1", "agent.log.2"}));
  for (const std::string name : {".2", ".1", ""}) {
    EXPECT_LE(fs::file_size(log_ + name), kCap + kCap / 10) << name;
  }
}

}  // namespace
}  // namespace palm::runtime
