#include "palm/runtime/proc.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

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

namespace {

// Reads a small /proc file whole; nullopt when it cannot be opened.
std::optional<std::string> ReadProcFile(const char* path) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[8192];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

}  // namespace

std::map<std::string, std::string> ParseEnviron(std::string_view blob) {
  std::map<std::string, std::string> env;
  while (!blob.empty()) {
    size_t end = blob.find('\0');
    std::string_view entry = blob.substr(0, end);
    size_t eq = entry.find('=');
    if (eq != std::string_view::npos && eq > 0) {
      env.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
    }
    if (end == std::string_view::npos) break;
    blob.remove_prefix(end + 1);
  }
  return env;
}

std::vector<FoundProcess> ScanProcessesWithEnvKey(const std::string& key) {
  std::vector<FoundProcess> found;
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return found;
  const std::string needle = key + "=";
  while (const dirent* e = ::readdir(dir)) {
    int pid = 0;
    const char* name = e->d_name;
    auto [ptr, ec] = std::from_chars(name, name + std::strlen(name), pid);
    if (ec != std::errc() || *ptr != '\0' || pid <= 0) continue;
    char path[48];
    std::snprintf(path, sizeof(path), "/proc/%d/environ", pid);
    std::optional<std::string> blob = ReadProcFile(path);
    if (!blob || blob->find(needle) == std::string::npos) continue;
    std::map<std::string, std::string> env = ParseEnviron(*blob);
    if (!env.count(key)) continue;
    std::snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    std::optional<std::string> stat = ReadProcFile(path);
    if (!stat) continue;
    size_t close = stat->rfind(')');
    if (close == std::string::npos || close + 2 >= stat->size() || (*stat)[close + 2] == 'Z') {
      continue;  // a zombie has already exited
    }
    std::optional<uint64_t> start = ParseStatStartTime(*stat);
    if (!start) continue;
    found.push_back({{pid, *start}, std::move(env)});
  }
  ::closedir(dir);
  return found;
}

}  // namespace palm::runtime
