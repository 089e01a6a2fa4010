#include "palm/runtime/command_lookup.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "palm/base/error.h"

namespace palm::runtime {
namespace {

enum class Check { kOk, kMissing, kNotExecutable, kDirectory };

// `path` as the child will see it: relative paths are relative to its workdir.
std::string AsSeenByChild(const std::string& path, const std::string& workdir) {
  if (path.empty() || path[0] == '/' || workdir.empty()) return path;
  return absl::StrCat(workdir, "/", path);
}

Check CheckExecutable(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Check::kMissing;
  if (S_ISDIR(st.st_mode)) return Check::kDirectory;
  if (!S_ISREG(st.st_mode) || ::access(path.c_str(), X_OK) != 0) return Check::kNotExecutable;
  return Check::kOk;
}

absl::Status NotExecutable(const std::string& argv0, const std::string& path, Check why) {
  const char* reason = why == Check::kDirectory ? "is a directory" : "is not executable";
  std::string where = path == argv0 ? "" : absl::StrCat(" (found at ", path, ")");
  return Error(absl::StatusCode::kPermissionDenied, "COMMAND_NOT_EXECUTABLE",
               absl::StrCat("command \"", argv0, "\"", where, " ", reason),
               "check the file's mode (chmod +x) or the agent spec's command");
}

}  // namespace

absl::StatusOr<std::string> ResolveCommand(const std::string& argv0, const std::string& path_env,
                                           const std::string& workdir) {
  if (argv0.empty()) return InvalidArgument("empty command (argv[0])");
  if (argv0.find('/') != std::string::npos) {
    const Check c = CheckExecutable(AsSeenByChild(argv0, workdir));
    if (c == Check::kMissing) {
      return NotFound("COMMAND_NOT_FOUND", absl::StrCat("command \"", argv0, "\" not found"),
                      "check the agent spec's command");
    }
    if (c != Check::kOk) return NotExecutable(argv0, argv0, c);
    return argv0;
  }
  std::string first_unusable;
  Check first_unusable_why = Check::kOk;
  size_t begin = 0;
  while (begin <= path_env.size()) {
    size_t end = path_env.find(':', begin);
    if (end == std::string::npos) end = path_env.size();
    // An empty entry is the cwd, as in execvp.
    std::string candidate = end == begin ? std::string(".") : path_env.substr(begin, end - begin);
    begin = end + 1;
    if (candidate.back() != '/') candidate.push_back('/');
    candidate.append(argv0);
    const Check c = CheckExecutable(AsSeenByChild(candidate, workdir));
    if (c == Check::kOk) return candidate;
    if (c != Check::kMissing && first_unusable.empty()) {
      first_unusable = std::move(candidate);
      first_unusable_why = c;
    }
  }
  // As execvp: a match that cannot be executed is reported only when no later one can be.
  if (!first_unusable.empty()) return NotExecutable(argv0, first_unusable, first_unusable_why);
  return NotFound("COMMAND_NOT_FOUND",
                  absl::StrCat("command \"", argv0, "\" not found on PATH (", path_env, ")"),
                  "install it, use an absolute path, or set PATH in the spec's env");
}

}  // namespace palm::runtime
