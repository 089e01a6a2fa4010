// A blocking HTTP/1.1 client for the CLI, the tests and the benchmarks.
//
// Keeps one keep-alive connection and reconnects once when the server closed it.
// Thread-safety: one Client per thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace palm::http {

struct ClientResponse {
  unsigned status = 0;
  std::string content_type;
  std::string body;
};

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
  absl::Status Stream(const std::string& target,
                      const std::function<bool(std::string_view)>& on_data);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace palm::http
