#include "palm/api/errors.h"

#include "palm/base/error.h"

namespace palm::api {

unsigned HttpStatusFor(const absl::Status& s) {
  std::string code = ErrorCode(s);
  if (code == "UNSUPPORTED_MEDIA_TYPE") return 415;
  if (code == "PAYLOAD_TOO_LARGE") return 413;
  if (code == "CURSOR_EXPIRED") return 410;
  switch (s.code()) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kInvalidArgument: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted: return 409;
    case absl::StatusCode::kFailedPrecondition: return 422;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kUnavailable: return 503;
    case absl::StatusCode::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

model::Json ErrorBody(const absl::Status& s) {
  model::Json err = {{"code", ErrorCode(s)}, {"message", std::string(s.message())}};
  std::string hint = ErrorHint(s);
  if (!hint.empty()) err["hint"] = hint;
  return {{"error", err}};
}

http::Response JsonResponse(unsigned status, const model::Json& body) {
  http::Response r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, model::Json::error_handler_t::replace);
  r.body += '\n';
  return r;
}

http::Response AlreadyAnswered() {
  http::Response r;
  r.status = 0;
  return r;
}

http::Response ErrorResponse(const absl::Status& s) {
  return JsonResponse(HttpStatusFor(s), ErrorBody(s));
}

}  // namespace palm::api
