// Resolving the program of a SpawnRequest before spawning it, so that "command not found" and
// "not executable" are reported synchronously with a clear message instead of surfacing as
// an errno from posix_spawn (or, behind the limits shim, as an exit code 127).
//
// Thread-safe: pure functions over the filesystem.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace palm::runtime {

// Returns the path posix_spawn should execute for `argv0`:
//  - argv0 containing '/' is returned unchanged after checking it (a relative one is
//    checked relative to `workdir`, where the child will resolve it; "" = our cwd);
//  - otherwise each directory of `path_env` (':'-separated; an empty entry means the
//    child's cwd, as in execvp) is searched for an executable regular file.
// Fails with kInvalidArgument for an empty argv0, kNotFound when nothing exists (the
// message names the PATH searched), kPermissionDenied when a match exists but is not an
// executable file (directory, no x bit).
absl::StatusOr<std::string> ResolveCommand(const std::string& argv0, const std::string& path_env,
                                           const std::string& workdir);

}  // namespace palm::runtime
