#include "palm/runtime/proc.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>

#include "palm/runtime/process_runtime.h"

namespace palm::runtime {

std::optional<uint64_t> ParseStatStartTime(std::string_view stat) {
  const size_t close = stat.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  std::string_view rest = stat.substr(close + 1);
  // After ")" come fields 3 (state), 4, ...; starttime is field 22, the 20th of them.
  constexpr int kFieldsToSkip = 22 - 3;
  for (int field = 0;; ++field) {
    const size_t begin = rest.find_first_not_of(' ');
    if (begin == std::string_view::npos) return std::nullopt;
    rest.remove_prefix(begin);
    size_t end = rest.find_first_of(" \n");
    if (end == std::string_view::npos) end = rest.size();
    if (field == kFieldsToSkip) {
      uint64_t value = 0;
      const auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + end, value);
      if (ec != std::errc() || ptr != rest.data() + end) return std::nullopt;
      return value;
    }
    rest.remove_prefix(end);
  }
}

std::optional<uint64_t> ProcStartTime(int pid) {
  if (pid <= 0) return std::nullopt;
  char path[32];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  // A stat line is ~52 numbers plus a comm of at most 64 bytes: well under 4 KiB, and the
  // kernel produces it in one read.
  char buf[4096];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof(buf));
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  return ParseStatStartTime(std::string_view(buf, static_cast<size_t>(n)));
}

}  // namespace palm::runtime
