// Fuzz target: arbitrary bytes -> one palm::http server connection (no listening socket).
//
// The input is written into one end of a socketpair whose other end is served by
// http::ServeConnectionForTesting, then half-closed; the loop runs until the connection
// closes (or a bound of rounds), draining what the server answers. The handler covers the
// ways a palm handler answers: at once, later, streamed, or not at all (dropped: 500).
// Small limits so that the 413/431/400 paths and the framing cap are reached quickly.
// Build: clang++ -std=c++20 -fsanitize=fuzzer,address,undefined -I src ... (see
// docs/performance.md or the fuzz/ CMake file); link against palm_http.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "palm/http/server.h"

namespace {

namespace http = palm::http;

void Handle(boost::asio::io_context& io, http::Request req, std::shared_ptr<http::Exchange> ex) {
  if (req.path == "/stream") {
    ex->BeginStream(200, "text/event-stream");
    ex->Write("data: " + req.body + "\n\n");
    ex->End();
  } else if (req.path == "/late") {
    boost::asio::post(io, [ex, n = req.body.size()] {
      ex->Respond({200, "text/plain", std::to_string(n), {{"X-Late", "1"}}});
    });
  } else if (req.path == "/drop") {
    // Dropped without an answer: the server answers 500.
  } else if (req.path == "/close") {
    ex->Respond({204, "", "", {{"Connection", "close"}}});
  } else {
    ex->Respond({200, "application/json", "{}", {}});
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  const int peer = sv[1];
  ::fcntl(peer, F_SETFL, ::fcntl(peer, F_GETFL) | O_NONBLOCK);

  boost::asio::io_context io;
  http::ServerOptions options;
  options.max_header_bytes = 2048;
  options.max_body_bytes = 4096;
  auto st = http::ServeConnectionForTesting(
      io, sv[0], options,
      [&io](http::Request r, std::shared_ptr<http::Exchange> ex) {
        Handle(io, std::move(r), std::move(ex));
      });
  if (!st.ok()) {
    ::close(peer);
    return 0;
  }

  size_t off = 0;
  bool half_closed = false;
  char sink[16384];
  for (int round = 0; round < 2000 && !io.stopped(); ++round) {
    if (off < size) {
      ssize_t n = ::send(peer, data + off, size - off, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) off += static_cast<size_t>(n);
    }
    if (off == size && !half_closed) {
      ::shutdown(peer, SHUT_WR);
      half_closed = true;
    }
    io.poll();
    while (::recv(peer, sink, sizeof sink, MSG_DONTWAIT) > 0) {
    }
  }
  // Whatever is left (a write the peer never read, a long linger) ends with the peer gone.
  ::close(peer);
  io.restart();
  io.run();
  return 0;
}
