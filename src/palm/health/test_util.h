// Test helpers for the health tests: a real HTTP server on port 0 whose answers tests flip,
// a listening socket that never answers, and a port nothing listens on.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "gtest/gtest.h"
#include "palm/http/server.h"

namespace palm::health::testing {

class FlipServer {
 public:
  explicit FlipServer(boost::asio::io_context& io)
      : server_(io, http::ServerOptions{}, [this](http::Request req, std::shared_ptr<http::Exchange> ex) {
          ++hits[req.path];
          auto it = status.find(req.path);
          if (it == status.end()) return ex->Respond(http::Response{404, "text/plain", "no", {}});
          if (it->second == 0) {  // never answer
            hung_.push_back(std::move(ex));
            return;
          }
          ex->Respond(http::Response{static_cast<unsigned>(it->second), "text/plain", "x", {}});
        }) {
    EXPECT_TRUE(server_.Listen("127.0.0.1:0").ok());
  }
  int port() const { return server_.port(); }

  std::map<std::string, int> status;  // path -> HTTP status; 0 = never answer
  std::map<std::string, int> hits;    // path -> requests received

 private:
  http::Server server_;
  std::vector<std::shared_ptr<http::Exchange>> hung_;
};

// Accepts TCP connections in the kernel backlog but never reads: an HTTP probe hangs.
class SilentListener {
 public:
  explicit SilentListener(boost::asio::io_context& io)
      : acceptor_(io, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)) {}
  int port() const { return acceptor_.local_endpoint().port(); }

 private:
  boost::asio::ip::tcp::acceptor acceptor_;
};

// A port that was free a moment ago (connections are refused).
inline int ClosedPort() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(io, boost::asio::ip::tcp::endpoint(
                                           boost::asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

}  // namespace palm::health::testing
