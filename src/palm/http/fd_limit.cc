#include "palm/http/fd_limit.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace palm::http {
namespace {

constexpr uint64_t kMinReserve = 256;
constexpr size_t kMinConnections = 16;

// The kernel's ceiling for RLIMIT_NOFILE (setrlimit refuses more than this).
uint64_t NrOpen() {
  uint64_t v = 0;
  std::ifstream("/proc/sys/fs/nr_open") >> v;
  return v > 0 ? v : 1024 * 1024;
}

}  // namespace

absl::StatusOr<FdLimit> RaiseFdLimit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    return absl::InternalError(absl::StrCat("getrlimit(RLIMIT_NOFILE): ", std::strerror(errno)));
  }
  FdLimit out;
  out.previous = rl.rlim_cur;
  const uint64_t target = rl.rlim_max == RLIM_INFINITY ? NrOpen() : rl.rlim_max;
  if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur < target) {
    rlimit raised = rl;
    raised.rlim_cur = static_cast<rlim_t>(target);
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  out.soft = rl.rlim_cur == RLIM_INFINITY ? NrOpen() : rl.rlim_cur;
  out.hard = rl.rlim_max == RLIM_INFINITY ? NrOpen() : rl.rlim_max;
  return out;
}

size_t MaxConnectionsForFdLimit(uint64_t fd_limit) {
  const uint64_t reserve = std::max(kMinReserve, fd_limit / 4);
  const uint64_t usable = fd_limit > reserve ? fd_limit - reserve : 0;
  return static_cast<size_t>(
      std::clamp<uint64_t>(usable, kMinConnections, kMaxConnectionsCeiling));
}

}  // namespace palm::http
