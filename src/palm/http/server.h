// A small HTTP/1.1 server on Boost.Beast/Asio for palm's API.
//
// Keep-alive, a cap on header and body size (413 with a JSON error body), read timeout
// for a started request, idle timeout between requests, and a graceful Stop() that refuses
// new connections, lets in-flight requests finish and then closes idle ones.
// Handlers may answer later (long-poll) or stream (Server-Sent Events) through Exchange.
// Protocol errors are answered by the server itself with the DESIGN.md error body and the
// connection is closed: 400 BAD_REQUEST (malformed), 413 PAYLOAD_TOO_LARGE, 431
// HEADERS_TOO_LARGE, 417 (an Expect other than 100-continue). At max_connections a new
// connection evicts the oldest one that never completed a request, or else gets a 503 and
// is closed; when the process is out of file descriptors a newcomer gets the same 503 (a
// descriptor is kept in reserve for that) and accepting backs off briefly instead of
// spinning. Pipelined requests are answered in order; the next request is not parsed before
// the current one is answered.
// Thread-safety: the server and every Exchange live on one io_context thread; handlers
// are called on it and must call Exchange methods on it. Stop(), port() and the counters
// may be called from any thread. Destroy the Server on the loop thread or after the loop
// has stopped; destroying it closes every connection without calling OnClose callbacks.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"

namespace palm::http {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // raw target, e.g. "/v1/instances?deployment=x"
  std::string path;    // target without the query, percent-decoded
  std::vector<std::pair<std::string, std::string>> query;    // decoded, in order
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::string remote;  // "127.0.0.1:53422"

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

// One in-flight request. Exactly one of Respond() or BeginStream() is called; later calls,
// and any call after the connection closed, are ignored. If the last reference to an
// Exchange is dropped without an answer the server answers 500 (503 while stopping); a
// dropped stream is ended. The Exchange keeps only a small connection object alive.
// Response: the server sets Content-Length, "Server: palm" and Connection; handler headers
// named Content-Length, Transfer-Encoding, Server or Content-Type are ignored, a
// "Connection: close" header closes the connection after the response, headers with CR/LF
// are dropped. 1xx, 204 and 304 responses carry no body.
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
  // Registered after that already happened: called immediately. Stop() counts as closing:
  // a pending handler is notified but may still Respond() (its answer is delivered).
  virtual void OnClose(std::function<void()> cb) = 0;
};

using Handler = std::function<void(Request, std::shared_ptr<Exchange>)>;

struct ServerOptions {
  // Also the cap on each piece of chunked framing (a chunk-size line with its extensions,
  // the trailer section): a request never buffers more than about
  // max_header_bytes + max_body_bytes.
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 1024 * 1024;
  absl::Duration read_timeout = absl::Seconds(30);  // to receive a whole request
  absl::Duration idle_timeout = absl::Seconds(60);  // keep-alive between requests
  // A new connection that has not started its first request by then is closed.
  absl::Duration first_request_timeout = absl::Seconds(10);
  // At the cap a newcomer evicts the oldest connection that has not completed a request
  // yet (idle since accept, or a first request still trickling in); with none, it gets 503.
  size_t max_connections = 4096;
};

class Server {
 public:
  Server(boost::asio::io_context& io, ServerOptions options, Handler handler);
  ~Server();
  // Binds and starts accepting on "host:port" (port 0 = any free port). kInvalidArgument
  // for a malformed address, kUnavailable when the bind fails (the message says why).
  // "localhost" binds 127.0.0.1, an empty host or "*" all IPv4 addresses, "[::1]:0" IPv6.
  // Call on the loop thread or before the loop runs.
  absl::Status Listen(const std::string& address);
  // The bound port (after Listen).
  uint16_t port() const;
  // Refuses new connections, finishes in-flight requests, closes idle and streaming ones,
  // then calls `done` (on the loop). Idle connections and requests not fully received are
  // closed at once; pending exchanges see Closed() and their OnClose callbacks; streams are
  // End()ed. Safe from any thread and from inside a handler (the work is posted).
  void Stop(std::function<void()> done);
  // Open connections now.
  size_t connections() const;
  // Connections accepted since Listen (including ones refused over max_connections).
  uint64_t accepted_connections() const;
  // Requests handed to the handler since Listen.
  uint64_t requests() const;
  // Never-used connections closed to make room for a newcomer at max_connections.
  uint64_t evicted_connections() const;

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

// Test seam (fuzz targets, unit tests): serves the already-connected stream socket `fd`
// (one end of a socketpair(AF_UNIX, SOCK_STREAM) will do) as one connection of a server with
// `options` and `handler`, without a listening socket. Takes ownership of `fd`, also on
// failure. The connection lives on `io` until it closes (peer EOF, error or timeout) and
// holds no other work, so io.run() returns once it is done. kInvalidArgument when asio
// cannot adopt `fd`. Call on the loop thread or before the loop runs.
absl::Status ServeConnectionForTesting(boost::asio::io_context& io, int fd, ServerOptions options,
                                       Handler handler);

}  // namespace palm::http
