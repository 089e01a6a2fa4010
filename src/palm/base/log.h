// Minimal structured-ish logging to stderr (the daemon's palmd.log):
//   2026-11-22T19:08:06.123Z INFO  instance buyer-001 started (pid 4242)
// Thread-safe (one fwrite per line). Set the minimum level once at start. Lines are valid
// UTF-8: invalid bytes in a message are written as U+FFFD.
#pragma once

#include <string_view>

#include "absl/strings/str_cat.h"

namespace palm {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);
void LogLine(LogLevel level, std::string_view message);

// PALM_LOG(kInfo, "instance ", id, " started (pid ", pid, ")");
#define PALM_LOG(level, ...)                                         \
  do {                                                               \
    if (::palm::LogEnabled(::palm::LogLevel::level)) {               \
      ::palm::LogLine(::palm::LogLevel::level, absl::StrCat(__VA_ARGS__)); \
    }                                                                \
  } while (0)

}  // namespace palm
