#include "palm/cli/basics.h"

#include <cctype>
#include <charconv>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "palm/base/error.h"

namespace palm::cli {
namespace {

absl::StatusCode CodeForHttp(unsigned status) {
  switch (status) {
    case 400: case 413: case 415: case 422: return absl::StatusCode::kInvalidArgument;
    case 401: return absl::StatusCode::kUnauthenticated;
    case 403: return absl::StatusCode::kPermissionDenied;
    case 404: return absl::StatusCode::kNotFound;
    case 409: return absl::StatusCode::kAlreadyExists;
    case 429: return absl::StatusCode::kResourceExhausted;
    case 503: return absl::StatusCode::kUnavailable;
    case 504: return absl::StatusCode::kDeadlineExceeded;
    default: return absl::StatusCode::kUnknown;
  }
}

bool IsRefusal(const std::string& code) {
  return code == "POLICY_DENIED" || code == "KILL_SWITCH_ACTIVE" || code == "BUDGET_EXCEEDED";
}

}  // namespace

absl::Status UsageError(std::string_view message, std::string_view hint) {
  return Error(absl::StatusCode::kInvalidArgument, kUsageError, message, hint);
}

absl::StatusOr<absl::Duration> ParseDuration(std::string_view text) {
  std::string s(absl::StripAsciiWhitespace(std::string(text)));
  auto bad = [&] {
    return UsageError(absl::StrCat("invalid duration \"", std::string(text), "\""),
                      "write it as 30s, 5m, 1h, 500ms, 1m30s or a number of seconds");
  };
  if (s.empty()) return bad();
  double seconds = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), seconds);
  if (ec == std::errc() && end == s.data() + s.size()) {
    if (seconds < 0 || !std::isfinite(seconds)) return bad();
    return absl::Seconds(seconds);
  }
  absl::Duration d;
  if (!absl::ParseDuration(s, &d) || d < absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    return bad();
  }
  return d;
}

int ExitCodeFor(const absl::Status& status) {
  if (status.ok()) return kExitOk;
  const std::string code = ErrorCode(status);
  if (code == kUsageError) return kExitUsage;
  if (IsRefusal(code)) return kExitRefused;
  switch (status.code()) {
    case absl::StatusCode::kNotFound: return kExitNotFound;
    case absl::StatusCode::kDeadlineExceeded: return kExitTimeout;
    default: return kExitFailure;
  }
}

absl::Status StatusFromHttp(unsigned http_status, std::string_view body) {
  std::string code, message, hint;
  const Doc doc = Doc::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_object() && doc.contains("error") && doc["error"].is_object()) {
    const Doc& e = doc["error"];
    if (e.contains("code") && e["code"].is_string()) code = e["code"].get<std::string>();
    if (e.contains("message") && e["message"].is_string()) {
      message = e["message"].get<std::string>();
    }
    if (e.contains("hint") && e["hint"].is_string()) hint = e["hint"].get<std::string>();
  }
  if (message.empty()) {
    std::string snippet(body.substr(0, 200));
    message = absl::StrCat("the daemon answered HTTP ", http_status,
                           snippet.empty() ? "" : ": ", snippet);
  }
  if (http_status == 401 && hint.empty()) {
    hint = "pass the admin token with --token or PALM_TOKEN, or --data-dir pointing at the "
           "daemon's data dir (its admin.token is read)";
  }
  return Error(CodeForHttp(http_status), code, message, hint);
}

std::string FormatError(const absl::Status& status) {
  std::string out = absl::StrCat("error: ", std::string(status.message()));
  const std::string hint = ErrorHint(status);
  if (!hint.empty()) absl::StrAppend(&out, "\nhint: ", hint);
  return out;
}

std::string UrlEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

}  // namespace palm::cli
