// The single mapping from absl::Status to HTTP status and the API error object
// {"error": {"code", "message", "hint"}} (DESIGN.md section 5). Pure, thread-safe.
#pragma once

#include "absl/status/status.h"
#include "palm/http/server.h"
#include "palm/model/objects.h"

namespace palm::api {

// kInvalidArgument 400, kUnauthenticated 401, kPermissionDenied 403, kNotFound 404,
// kAlreadyExists/kAborted 409, kFailedPrecondition 422, kResourceExhausted 429,
// kUnavailable 503, kDeadlineExceeded 504, anything else 500. A payload code may override:
// UNSUPPORTED_MEDIA_TYPE 415, PAYLOAD_TOO_LARGE 413, CURSOR_EXPIRED 410 (a list's `after`
// names an object no longer in it).
unsigned HttpStatusFor(const absl::Status& s);
model::Json ErrorBody(const absl::Status& s);
http::Response ErrorResponse(const absl::Status& s);
http::Response JsonResponse(unsigned status, const model::Json& body);
// What a route returns when it answered (or started streaming) through the Exchange itself:
// status 0, which the router does not send.
http::Response AlreadyAnswered();

}  // namespace palm::api
