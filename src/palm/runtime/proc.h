// Facts about processes read from /proc (Linux only).
//
// Thread-safe: pure functions over the filesystem; every fd opened is O_CLOEXEC and closed
// before returning.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace palm::runtime {

// Parses field 22 (starttime, clock ticks since boot) of a /proc/<pid>/stat line. The comm
// field (2) is parenthesised but may itself contain spaces and ')', so fields are counted
// from the LAST ')'. Returns nullopt when the line is malformed.
std::optional<uint64_t> ParseStatStartTime(std::string_view stat);

// ProcStartTime(pid) is declared in process_runtime.h and implemented in proc.cc.

}  // namespace palm::runtime
