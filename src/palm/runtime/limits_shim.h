// The `palm __exec-limits` shim: posix_spawn cannot set rlimits, so a spawn with limits runs
//   <shim> __exec-limits [--as MiB] [--nproc N] [--nofile N] [--argv0 NAME] -- PROGRAM ARGS...
// which sets the limits (soft = hard) on itself and then execs PROGRAM with argv
// [NAME or PROGRAM, ARGS...]. The entry point, RunLimitsShim(), is declared in
// process_runtime.h; this header holds the other half of the protocol.
//
// Thread-safe: pure functions.
#pragma once

#include <string>
#include <vector>

#include "palm/runtime/runtime.h"

namespace palm::runtime {

// The verb main() must dispatch to RunLimitsShim (as argv[1]).
inline constexpr char kLimitsShimVerb[] = "__exec-limits";

// True when `limits` sets anything, i.e. a spawn must go through the shim.
bool HasLimits(const Limits& limits);

// The argv that makes `shim_path` apply `limits` and exec `program` (a path already resolved
// by the caller) with the caller's `argv` (argv[0] is passed through as --argv0).
std::vector<std::string> LimitsShimArgv(const std::string& shim_path, const Limits& limits,
                                        const std::string& program,
                                        const std::vector<std::string>& argv);

}  // namespace palm::runtime
