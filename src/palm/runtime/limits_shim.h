// The `palm __exec-limits` shim: posix_spawn can neither set rlimits nor place the child in
// a cgroup, so such a spawn runs
//   <shim> __exec-limits [--cgroup DIR]... [--as MiB] [--nproc N] [--nofile N] [--argv0 NAME]
//                        -- PROGRAM ARGS...
// which joins each cgroup, sets the limits (soft = hard) on itself and then execs PROGRAM
// with argv [NAME or PROGRAM, ARGS...]. Joining before exec means nothing the agent starts
// can be outside its cgroup. The entry point, RunLimitsShim(), is declared in
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

// True when `limits` sets an rlimit (memory_mb, max_procs or max_open_files; cpu has none).
bool HasLimits(const Limits& limits);

// The argv that makes `shim_path` join `cgroup_dirs`, apply `rlimits` as RLIMIT_AS,
// RLIMIT_NPROC and RLIMIT_NOFILE (cpu is ignored) and exec `program` (a path already
// resolved by the caller) with the caller's `argv` (argv[0] is passed through as --argv0).
std::vector<std::string> LimitsShimArgv(const std::string& shim_path, const Limits& rlimits,
                                        const std::vector<std::string>& cgroup_dirs,
                                        const std::string& program,
                                        const std::vector<std::string>& argv);

}  // namespace palm::runtime
