#include "palm/base/error.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace palm {
namespace {
constexpr std::string_view kCodeUrl = "palm.dev/code";
constexpr std::string_view kHintUrl = "palm.dev/hint";

std::string_view DefaultCode(absl::StatusCode c) {
  switch (c) {
    case absl::StatusCode::kOk: return "OK";
    case absl::StatusCode::kInvalidArgument: return "INVALID_ARGUMENT";
    case absl::StatusCode::kNotFound: return "NOT_FOUND";
    case absl::StatusCode::kAlreadyExists: return "ALREADY_EXISTS";
    case absl::StatusCode::kFailedPrecondition: return "FAILED_PRECONDITION";
    case absl::StatusCode::kPermissionDenied: return "FORBIDDEN";
    case absl::StatusCode::kUnauthenticated: return "UNAUTHENTICATED";
    case absl::StatusCode::kResourceExhausted: return "RATE_LIMITED";
    case absl::StatusCode::kUnavailable: return "UNAVAILABLE";
    case absl::StatusCode::kDeadlineExceeded: return "TIMEOUT";
    case absl::StatusCode::kOutOfRange: return "OUT_OF_RANGE";
    case absl::StatusCode::kAborted: return "CONFLICT";
    default: return "INTERNAL";
  }
}
}  // namespace

absl::Status Error(absl::StatusCode status_code, std::string_view code, std::string_view message,
                   std::string_view hint) {
  absl::Status s(status_code, std::string(message));
  if (!code.empty()) s.SetPayload(std::string(kCodeUrl), absl::Cord(std::string(code)));
  if (!hint.empty()) s.SetPayload(std::string(kHintUrl), absl::Cord(std::string(hint)));
  return s;
}

absl::Status InvalidArgument(std::string_view message, std::string_view hint) {
  return Error(absl::StatusCode::kInvalidArgument, "INVALID_ARGUMENT", message, hint);
}
absl::Status NotFound(std::string_view code, std::string_view message, std::string_view hint) {
  return Error(absl::StatusCode::kNotFound, code, message, hint);
}
absl::Status Conflict(std::string_view code, std::string_view message, std::string_view hint) {
  return Error(absl::StatusCode::kAlreadyExists, code, message, hint);
}

std::string ErrorCode(const absl::Status& s) {
  if (auto p = s.GetPayload(std::string(kCodeUrl))) return std::string(*p);
  return std::string(DefaultCode(s.code()));
}

std::string ErrorHint(const absl::Status& s) {
  if (auto p = s.GetPayload(std::string(kHintUrl))) return std::string(*p);
  return {};
}

absl::Status Annotate(const absl::Status& s, std::string_view context) {
  if (s.ok()) return s;
  absl::Status out(s.code(), absl::StrCat(std::string(context), ": ", s.message()));
  s.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    out.SetPayload(url, payload);
  });
  return out;
}

}  // namespace palm
