// A blocking HTTP/1.1 client for the CLI, the tests and the benchmarks.
//
// Keeps one keep-alive connection and reconnects once when the server closed it (checked
// before reuse; a request that fails on a reused connection before any response byte
// arrived is sent once more on a fresh one). Each operation (connect, send, receive) gets
// the whole timeout. Transport errors carry the machine code DAEMON_UNREACHABLE and the
// hint "is it running? try `palm daemon start`" (see palm::ErrorHint); timeouts are
// kDeadlineExceeded with code TIMEOUT. "https://" endpoints fail every call with
// kInvalidArgument (TLS not supported yet).
// Thread-safety: one Client per thread; do not call it from inside an on_data callback.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace palm::http {

struct ClientResponse {
  unsigned status = 0;
  std::string content_type;
  std::string body;
};

// The status for an HTTP answer: OK for 2xx, else an error whose message, code and hint
// come from the DESIGN.md error body {"error":{"code","message","hint"}} when present
// (else "HTTP 404 Not Found: <body start>"), with the absl code matching the HTTP status
// (400/413/422 kInvalidArgument, 401 kUnauthenticated, 403 kPermissionDenied, 404
// kNotFound, 409 kAlreadyExists, 429 kResourceExhausted, 503 kUnavailable, other 5xx
// kInternal).
absl::Status ErrorFromResponse(unsigned status, std::string_view body);

class Client {
 public:
  // `endpoint` is "http://host:port" (a trailing slash is ignored); `token` is sent as
  // "Authorization: Bearer <token>" when not empty.
  Client(std::string endpoint, std::string token, absl::Duration timeout = absl::Seconds(30));
  ~Client();
  // Sends one request. Non-2xx statuses are not errors here (see status); transport
  // failures are kUnavailable ("cannot reach the palm daemon at http://...: connection
  // refused") and kDeadlineExceeded on timeout.
  absl::StatusOr<ClientResponse> Do(const std::string& method, const std::string& target,
                                    const std::string& body = "");
  // Reads a streamed response (SSE) calling `on_data` for each piece received until it
  // returns false, the server ends the stream, or the timeout passes with no data.
  // Pieces are arbitrary slices of the body (an SSE event may span two). Returns OK when
  // on_data stops or the stream ends, kDeadlineExceeded after `timeout` without data,
  // kUnavailable when the connection is lost, ErrorFromResponse() for a non-2xx answer
  // (on_data is not called then).
  absl::Status Stream(const std::string& target,
                      const std::function<bool(std::string_view)>& on_data);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace palm::http
