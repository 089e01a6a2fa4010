// Facts about processes read from /proc (Linux only).
//
// Thread-safe: pure functions over the filesystem; every fd opened is O_CLOEXEC and closed
// before returning.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "palm/runtime/runtime.h"

namespace palm::runtime {

// Parses field 22 (starttime, clock ticks since boot) of a /proc/<pid>/stat line. The comm
// field (2) is parenthesised but may itself contain spaces and ')', so fields are counted
// from the LAST ')'. Returns nullopt when the line is malformed.
std::optional<uint64_t> ParseStatStartTime(std::string_view stat);

// Parses a /proc/<pid>/environ blob ("K=V\0K=V\0..."). Entries without '=' are skipped;
// the first of duplicate keys wins, as getenv() does.
std::map<std::string, std::string> ParseEnviron(std::string_view blob);

// Every live (not zombie) process whose environment has `key`, with its pid, start time and
// environment. Processes that vanish or cannot be read during the scan are skipped.
std::vector<FoundProcess> ScanProcessesWithEnvKey(const std::string& key);

// ProcStartTime(pid) is declared in process_runtime.h and implemented in proc.cc.

}  // namespace palm::runtime
