// A small HTTP/1.1 server on Boost.Beast/Asio for palm's API.
//
// Keep-alive, a cap on header and body size (413 with a JSON error body), read timeout
// for a started request, idle timeout between requests, and a graceful Stop() that refuses
// new connections, lets in-flight requests finish and then closes idle ones.
// Handlers may answer later (long-poll) or stream (Server-Sent Events) through Exchange.
// Thread-safety: the server and every Exchange live on one io_context thread; handlers
// are called on it and must call Exchange methods on it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"

namespace palm::http {

struct Request {
  std::string method;   // "GET", "POST", ...
  std::string target;   // raw target, e.g. "/v1/instances?deployment=x"
  std::string path;     // target without the query, percent-decoded
  std::vector<std::pair<std::string, std::string>> query;  // decoded, in order
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::string remote;   // "127.0.0.1:53422"

  // First value of a header (name lower-case) or "" when absent.
  std::string Header(std::string_view name) const;
  // First value of a query parameter, or nullopt.
  std::optional<std::string> Query(std::string_view name) const;
};

struct Response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

// One in-flight request. Exactly one of Respond() or BeginStream() is called.
class Exchange {
 public:
  virtual ~Exchange() = default;
  virtual void Respond(Response r) = 0;
  // Starts a streamed (chunked) response, e.g. text/event-stream; then Write() pieces and
  // End(). Writes after the peer went away are dropped.
  virtual void BeginStream(unsigned status, std::string content_type) = 0;
  virtual void Write(std::string data) = 0;
  virtual void End() = 0;
  // True once the peer closed the connection or the server is stopping.
  virtual bool Closed() const = 0;
  // Called once when the exchange becomes Closed() before End()/Respond() (for cleanup).
  virtual void OnClose(std::function<void()> cb) = 0;
};

using Handler = std::function<void(Request, std::shared_ptr<Exchange>)>;

struct ServerOptions {
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 1024 * 1024;
  absl::Duration read_timeout = absl::Seconds(30);   // to receive a whole request
  absl::Duration idle_timeout = absl::Seconds(60);   // keep-alive between requests
  size_t max_connections = 4096;
};

class Server {
 public:
  Server(boost::asio::io_context& io, ServerOptions options, Handler handler);
  ~Server();
  // Binds and starts accepting on "host:port" (port 0 = any free port). kInvalidArgument
  // for a malformed address, kUnavailable when the bind fails (the message says why).
  absl::Status Listen(const std::string& address);
  // The bound port (after Listen).
  uint16_t port() const;
  // Refuses new connections, finishes in-flight requests, closes idle and streaming ones,
  // then calls `done` (on the loop).
  void Stop(std::function<void()> done);
  size_t connections() const;

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace palm::http
