#include "palm/runtime/limits_shim.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "palm/runtime/process_runtime.h"

namespace palm::runtime {
namespace {

constexpr int kShimFailure = 127;  // as a shell's "command could not be run"

int Fail(const std::string& message) {
  std::fprintf(stderr, "palm %s: %s\n", kLimitsShimVerb, message.c_str());
  return kShimFailure;
}

bool SetLimit(int resource, uint64_t value, const char* name, std::string* error) {
  const struct rlimit rl = {static_cast<rlim_t>(value), static_cast<rlim_t>(value)};
  if (::setrlimit(resource, &rl) == 0) return true;
  *error = absl::StrCat("setrlimit(", name, ", ", value, "): ", std::strerror(errno));
  return false;
}

// Moves this process into the cgroup directory `dir` (v1: one hierarchy's; v2: the one).
bool JoinCgroup(const char* dir, std::string* error) {
  const std::string path = absl::StrCat(dir, "/cgroup.procs");
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  const std::string pid = absl::StrCat(::getpid(), "\n");
  if (fd >= 0 && ::write(fd, pid.data(), pid.size()) == static_cast<ssize_t>(pid.size())) {
    ::close(fd);
    return true;
  }
  *error = absl::StrCat("join cgroup ", path, ": ", std::strerror(errno));
  if (fd >= 0) ::close(fd);
  return false;
}

}  // namespace

bool HasLimits(const Limits& limits) {
  return limits.memory_mb || limits.max_procs || limits.max_open_files;
}

std::vector<std::string> LimitsShimArgv(const std::string& shim_path, const Limits& limits,
                                        const std::vector<std::string>& cgroup_dirs,
                                        const std::string& program,
                                        const std::vector<std::string>& argv) {
  std::vector<std::string> out;
  out.reserve(argv.size() + 12 + 2 * cgroup_dirs.size());
  out.push_back(shim_path);
  out.push_back(kLimitsShimVerb);
  for (const std::string& dir : cgroup_dirs) {
    out.push_back("--cgroup");
    out.push_back(dir);
  }
  if (limits.memory_mb) {
    out.push_back("--as");
    out.push_back(absl::StrCat(*limits.memory_mb));
  }
  if (limits.max_procs) {
    out.push_back("--nproc");
    out.push_back(absl::StrCat(*limits.max_procs));
  }
  if (limits.max_open_files) {
    out.push_back("--nofile");
    out.push_back(absl::StrCat(*limits.max_open_files));
  }
  if (!argv.empty()) {
    out.push_back("--argv0");
    out.push_back(argv[0]);
  }
  out.push_back("--");
  out.push_back(program);
  for (size_t i = 1; i < argv.size(); ++i) out.push_back(argv[i]);
  return out;
}

int RunLimitsShim(int argc, char** argv) {
  int i = 1;
  if (i < argc && std::string_view(argv[i]) == kLimitsShimVerb) ++i;
  const char* argv0 = nullptr;
  std::string error;
  for (; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--") {
      ++i;
      break;
    }
    if (i + 1 >= argc) return Fail(absl::StrCat("missing value for ", std::string(flag)));
    const char* value = argv[++i];
    if (flag == "--argv0") {
      argv0 = value;
      continue;
    }
    if (flag == "--cgroup") {
      if (!JoinCgroup(value, &error)) return Fail(error);
      continue;
    }
    uint64_t n = 0;
    if (!absl::SimpleAtoi(value, &n)) {
      return Fail(absl::StrCat("bad value \"", value, "\" for ", std::string(flag)));
    }
    bool ok;
    if (flag == "--as") {
      constexpr uint64_t kMiB = uint64_t{1} << 20;
      if (n > UINT64_MAX / kMiB) return Fail(absl::StrCat("--as ", n, " MiB is too large"));
      ok = SetLimit(RLIMIT_AS, n * kMiB, "RLIMIT_AS", &error);
    } else if (flag == "--nproc") {
      ok = SetLimit(RLIMIT_NPROC, n, "RLIMIT_NPROC", &error);
    } else if (flag == "--nofile") {
      ok = SetLimit(RLIMIT_NOFILE, n, "RLIMIT_NOFILE", &error);
    } else {
      return Fail(absl::StrCat("unknown flag \"", std::string(flag), "\""));
    }
    if (!ok) return Fail(error);
  }
  if (i >= argc) return Fail("no program after --");
  char* program = argv[i];
  if (argv0 != nullptr) argv[i] = const_cast<char*>(argv0);
  ::execvp(program, argv + i);
  return Fail(absl::StrCat("exec \"", program, "\": ", std::strerror(errno)));
}

}  // namespace palm::runtime
