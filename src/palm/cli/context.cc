#include "palm/cli/context.h"

#include <unistd.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "palm/base/error.h"
#include "palm/http/client.h"

namespace palm::cli {

Context::Context(GlobalOptions options) : options_(std::move(options)) {}
Context::~Context() = default;

OutputFormat Context::format() const {
  if (options_.output == "json") return OutputFormat::kJson;
  if (options_.output == "yaml") return OutputFormat::kYaml;
  return OutputFormat::kTable;
}

absl::StatusOr<absl::Duration> Context::Timeout(absl::Duration fallback) const {
  if (options_.timeout.empty()) return fallback;
  return ParseDuration(options_.timeout);
}

std::string Context::DataDir() const {
  std::error_code ec;
  auto abs = std::filesystem::absolute(options_.data_dir, ec);
  if (ec) return options_.data_dir;
  return abs.lexically_normal().string();
}

std::string Context::Token() const {
  if (!options_.token.empty()) return options_.token;
  std::ifstream in(std::filesystem::path(DataDir()) / "admin.token");
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  return std::string(absl::StripAsciiWhitespace(ss.str()));
}

http::Client& Context::client() {
  if (!client_) {
    // Requests answer quickly; --timeout bounds them too when it is shorter.
    absl::Duration timeout = absl::Seconds(30);
    if (auto t = Timeout(timeout); t.ok() && *t > absl::ZeroDuration() && *t < timeout) {
      timeout = *t;
    }
    client_ = std::make_unique<http::Client>(options_.endpoint, Token(), timeout);
  }
  return *client_;
}

namespace {
absl::Status TransportError(const absl::Status& s, const std::string& endpoint) {
  if (s.code() == absl::StatusCode::kDeadlineExceeded) {
    return Error(absl::StatusCode::kDeadlineExceeded, "TIMEOUT",
                 absl::StrCat("the palm daemon at ", endpoint,
                              " did not answer in time (", std::string(s.message()), ")"),
                 "raise --timeout, or check the daemon's log (<data-dir>/palmd.log)");
  }
  // The client says "cannot reach the palm daemon at URL: <reason>"; keep the reason.
  std::string reason(s.message());
  if (auto pos = reason.rfind(": "); pos != std::string::npos) reason = reason.substr(pos + 2);
  return Error(absl::StatusCode::kUnavailable, "DAEMON_UNREACHABLE",
               absl::StrCat("the palm daemon is not running at ", endpoint, " (",
                            absl::AsciiStrToLower(reason), ")"),
               "start it with `palm daemon start`, or point --endpoint / PALM_ENDPOINT at a "
               "running daemon");
}
}  // namespace

absl::StatusOr<ApiResult> Context::Call(const std::string& method, const std::string& path,
                                        const std::string& body) {
  auto resp = client().Do(method, path, body);
  if (!resp.ok()) return TransportError(resp.status(), options_.endpoint);
  ApiResult out;
  out.status = resp->status;
  out.body = std::move(resp->body);
  if (out.status < 200 || out.status >= 300) return StatusFromHttp(out.status, out.body);
  if (!out.body.empty()) {
    out.doc = Doc::parse(out.body, nullptr, /*allow_exceptions=*/false);
    if (out.doc.is_discarded()) out.doc = nullptr;
  }
  return out;
}

absl::Status Context::Stream(const std::string& path,
                             const std::function<bool(std::string_view)>& on_data) {
  // A follow stream may be silent for a long time; it ends with Ctrl-C or the server.
  http::Client streamer(options_.endpoint, Token(), absl::Hours(24 * 365));
  absl::Status s = streamer.Stream(path, on_data);
  if (s.code() == absl::StatusCode::kUnavailable) return TransportError(s, options_.endpoint);
  return s;
}

std::string Context::WithTenant(const std::string& path) const {
  if (options_.tenant.empty() || options_.tenant == "default") return path;
  return absl::StrCat(path, path.find('?') == std::string::npos ? "?" : "&",
                      "tenant=", UrlEncode(options_.tenant));
}

absl::StatusOr<bool> Context::Confirm(const std::string& question) const {
  if (options_.yes) return true;
  if (!isatty(STDIN_FILENO)) {
    return UsageError(absl::StrCat("refusing to ", question, " without confirmation"),
                      "pass -y to confirm when stdin is not a terminal");
  }
  std::cerr << question << "? [y/N] " << std::flush;
  std::string answer;
  if (!std::getline(std::cin, answer)) return false;
  answer = absl::AsciiStrToLower(absl::StripAsciiWhitespace(answer));
  return answer == "y" || answer == "yes";
}

bool StdoutIsTty() { return isatty(STDOUT_FILENO) == 1; }
bool StderrIsTty() { return isatty(STDERR_FILENO) == 1; }

}  // namespace palm::cli
