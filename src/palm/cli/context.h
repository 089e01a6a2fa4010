// What every verb shares: the resolved global flags and the HTTP client to the daemon,
// which turns API error answers and transport failures into statuses (see basics.h).
// Thread-safety: none; one Context per process (the CLI is single-threaded).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "palm/cli/basics.h"

namespace palm::http {
class Client;
}

namespace palm::cli {

enum class OutputFormat { kTable, kJson, kYaml };

// The global flags of DESIGN.md section 2, after flags, environment and defaults.
struct GlobalOptions {
  std::string endpoint = "http://127.0.0.1:7070";
  std::string token;     // "" = read <data_dir>/admin.token when needed
  std::string data_dir = ".palm";
  std::string output = "table";
  std::string tenant = "default";
  bool yes = false;
  bool wait = false;
  std::string timeout;   // "" = the verb's default
};

// One API answer: the HTTP status, the raw body and, for JSON bodies, the parsed document.
struct ApiResult {
  unsigned status = 0;
  std::string body;
  Doc doc;
};

class Context {
 public:
  explicit Context(GlobalOptions options);
  ~Context();

  const GlobalOptions& options() const { return options_; }
  OutputFormat format() const;
  // --timeout when given, else `fallback`. Fails with a usage error on a bad duration.
  absl::StatusOr<absl::Duration> Timeout(absl::Duration fallback) const;
  // The data dir as an absolute path.
  std::string DataDir() const;
  // --token / PALM_TOKEN, else the content of <data-dir>/admin.token, else "".
  std::string Token() const;

  // Sends one request to the daemon and returns the answer when it is 2xx. Non-2xx answers
  // become statuses with the API's code and hint; transport failures say the daemon is not
  // running at the endpoint and how to start it. `body` is sent as JSON when not empty.
  absl::StatusOr<ApiResult> Call(const std::string& method, const std::string& path,
                                 const std::string& body = "");
  absl::StatusOr<ApiResult> Get(const std::string& path) { return Call("GET", path); }

  // Streams GET `path` (chunked/SSE) into `on_data` until the server ends it; used by
  // `instance logs -f`. No timeout while data is awaited.
  absl::Status Stream(const std::string& path,
                      const std::function<bool(std::string_view)>& on_data);

  // `path` with the tenant query parameter added when --tenant is not the default.
  std::string WithTenant(const std::string& path) const;

  // Asks "question [y/N]" on a terminal. Returns true with -y; fails with a usage error when
  // stdin is not a terminal and -y was not given.
  absl::StatusOr<bool> Confirm(const std::string& question) const;

  // Exit code of a verb that succeeded as a CLI call but reports a code of its own
  // (`daemon start --foreground` returns the daemon's).
  void set_exit_code(int code) { exit_code_ = code; }
  int exit_code() const { return exit_code_; }

 private:
  http::Client& client();

  GlobalOptions options_;
  std::unique_ptr<http::Client> client_;
  int exit_code_ = kExitOk;
};

// Whether stdout / stderr is a terminal (progress displays and prompts).
bool StdoutIsTty();
bool StderrIsTty();


}  // namespace palm::cli
