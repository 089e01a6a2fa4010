#include "palm/base/log.h"

#include <atomic>
#include <cstdio>
#include <string>

#include "absl/time/clock.h"
#include "palm/base/clock.h"
#include "palm/base/utf8.h"

namespace palm {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
constexpr const char* kNames[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
}  // namespace

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }
bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(); }

void LogLine(LogLevel level, std::string_view message) {
  std::string line = palm::FormatTime(absl::Now());
  line += ' ';
  line += kNames[static_cast<int>(level)];
  line += ' ';
  // Messages quote what agents and probes said: the log stays valid UTF-8 whatever they sent.
  if (FindInvalidUtf8(message) == std::string_view::npos) {
    line += message;
  } else {
    line += ToValidUtf8(message);
  }
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace palm
