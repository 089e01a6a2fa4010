#include "palm/http/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <latch>
#include <optional>
#include <thread>

#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palm/base/error.h"
#include "palm/http/client.h"

namespace palm::http {
namespace {

namespace asio = boost::asio;
using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using SteadyClock = std::chrono::steady_clock;

constexpr auto kWait = std::chrono::seconds(5);  // upper bound for "eventually"

// A blocking POSIX socket with a receive timeout, for speaking raw (and broken) HTTP.
class RawConn {
 public:
  explicit RawConn(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawConn() { Close(); }
  bool connected() const { return connected_; }
  void Send(std::string_view s) {
    while (!s.empty()) {
      ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      s.remove_prefix(static_cast<size_t>(n));
    }
  }
  // Reads until EOF, an error or the 5 s receive timeout; `eof` says whether EOF was seen.
  std::string ReadAll(bool* eof = nullptr) {
    std::string out;
    char buf[4096];
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n == 0) {
        if (eof) *eof = true;
        return out;
      }
      if (n < 0) {
        if (eof) *eof = errno == ECONNRESET;
        return out;
      }
      out.append(buf, static_cast<size_t>(n));
    }
  }
  // Reads until `needle` was received (or EOF/timeout).
  std::string ReadUntil(std::string_view needle) {
    std::string out;
    char c;
    while (out.find(needle) == std::string::npos) {
      if (::recv(fd_, &c, 1, 0) != 1) break;
      out.push_back(c);
    }
    return out;
  }
  // What has arrived so far, waiting at most `wait` for the first byte.
  std::string ReadAvailable(std::chrono::milliseconds wait = std::chrono::milliseconds(0)) {
    pollfd p{fd_, POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(wait.count()));
    std::string out;
    char buf[4096];
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
      if (n <= 0) return out;
      out.append(buf, static_cast<size_t>(n));
    }
  }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

Response Text(std::string body, unsigned status = 200) {
  return Response{status, "text/plain", std::move(body), {}};
}

class ServerTest : public ::testing::Test {
 protected:
  void Start(ServerOptions options = {}) {
    server_ = std::make_unique<Server>(
        io_, options,
        [this](Request r, std::shared_ptr<Exchange> ex) { handler_(std::move(r), std::move(ex)); });
    auto st = server_->Listen("127.0.0.1:0");
    ASSERT_TRUE(st.ok()) << st;
    ASSERT_NE(server_->port(), 0);
    endpoint_ = "http://127.0.0.1:" + std::to_string(server_->port());
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    if (server_) {
      EXPECT_TRUE(StopServer());
    }
    work_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
    pending_.clear();
    server_.reset();
  }

  // Stops the server and waits (bounded) for its done callback.
  bool StopServer() {
    auto done = std::make_shared<std::promise<void>>();
    server_->Stop([done] { done->set_value(); });
    return done->get_future().wait_for(kWait) == std::future_status::ready;
  }

  // Runs `f` on the loop thread and returns its result.
  template <typename F>
  auto OnLoop(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto fut = task.get_future();
    asio::post(io_, [&task] { task(); });
    return fut.get();
  }

  // Calls `f` on the loop after `delay`.
  void After(milliseconds delay, std::function<void()> f) {
    auto timer = std::make_shared<asio::steady_timer>(io_, delay);
    timer->async_wait([timer, f = std::move(f)](const boost::system::error_code&) { f(); });
  }

  // Polls `pred` (from the test thread) until true or kWait passes.
  static bool Eventually(const std::function<bool()>& pred) {
    auto deadline = SteadyClock::now() + kWait;
    while (SteadyClock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return pred();
  }

  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{
      asio::make_work_guard(io_)};
  std::thread thread_;
  std::unique_ptr<Server> server_;
  std::string endpoint_;
  Handler handler_ = [](Request r, std::shared_ptr<Exchange> ex) {
    ex->Respond(Text("[" + r.path + "]"));
  };
  std::vector<std::shared_ptr<Exchange>> pending_;  // loop thread only
};

TEST_F(ServerTest, GetAndPostRoundTrip) {
  handler_ = [](Request r, std::shared_ptr<Exchange> ex) {
    Response res = Text(r.method + " " + r.path + " ct=" + r.Header("content-type") +
                        " auth=" + r.Header("authorization") + " ua=" + r.Header("user-agent") +
                        " body=" + r.body + " remote=" + (r.remote.empty() ? "no" : "yes"));
    res.headers.emplace_back("X-Extra", "1");
    if (r.path == "/missing") res.status = 404;
    ex->Respond(std::move(res));
  };
  Start();
  Client client(endpoint_, "tok");
  auto get = client.Do("GET", "/hello");
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(get->status, 200u);
  EXPECT_EQ(get->content_type, "text/plain");
  EXPECT_EQ(get->body, "GET /hello ct= auth=Bearer tok ua=palm-cli body= remote=yes");

  auto post = client.Do("POST", "/things", R"({"a":1})");
  ASSERT_TRUE(post.ok()) << post.status();
  EXPECT_EQ(post->body,
            "POST /things ct=application/json auth=Bearer tok ua=palm-cli body={\"a\":1} "
            "remote=yes");

  auto missing = client.Do("GET", "/missing");  // a non-2xx status is not a transport error
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_EQ(missing->status, 404u);

  Client anonymous(endpoint_, "");
  auto anon = anonymous.Do("GET", "/x");
  ASSERT_TRUE(anon.ok());
  EXPECT_THAT(anon->body, HasSubstr("auth= "));
}

TEST_F(ServerTest, RawResponseHasFramingHeaders) {
  handler_ = [](Request r, std::shared_ptr<Exchange> ex) {
    Response res = Text("hi");
    res.headers.emplace_back("X-Evil", "a\r\nSet-Cookie: x");  // dropped: would break framing
    res.headers.emplace_back("Content-Length", "999");         // ignored: framing is ours
    ex->Respond(std::move(res));
  };
  Start();
  RawConn c(server_->port());
  c.Send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  bool eof = false;
  std::string out = c.ReadAll(&eof);
  EXPECT_TRUE(eof);
  EXPECT_THAT(out, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(out, HasSubstr("\r\nServer: palm\r\n"));
  EXPECT_THAT(out, HasSubstr("\r\nContent-Type: text/plain\r\n"));
  EXPECT_THAT(out, HasSubstr("\r\nContent-Length: 2\r\n"));
  EXPECT_THAT(out, HasSubstr("\r\nConnection: close\r\n"));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("Set-Cookie")));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("999")));
  EXPECT_THAT(out, ::testing::EndsWith("\r\n\r\nhi"));
}

TEST_F(ServerTest, KeepAliveReusesOneConnection) {
  Start();
  Client client(endpoint_, "");
  for (int i = 0; i < 50; ++i) {
    auto r = client.Do("GET", "/n" + std::to_string(i));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->body, "[/n" + std::to_string(i) + "]");
  }
  EXPECT_EQ(server_->accepted_connections(), 1u);
  EXPECT_EQ(server_->requests(), 50u);
  EXPECT_EQ(server_->connections(), 1u);
}

// The server's end of each connection probes a silent peer, so one that vanished without a
// FIN (a long poll or a stream waiting on it) is eventually dropped and its session freed.
TEST_F(ServerTest, AcceptedConnectionsUseTcpKeepalive) {
  Start();
  RawConn c(server_->port());
  ASSERT_TRUE(c.connected());
  c.Send("GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_THAT(c.ReadUntil("[/x]"), HasSubstr("[/x]"));  // served: the session exists
  // The server runs in this process: find its end of the connection among our sockets.
  int checked = 0;
  for (int fd = 3; fd < 1024; ++fd) {
    sockaddr_in local{}, peer{};
    socklen_t ll = sizeof(local), pl = sizeof(peer);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0 ||
        local.sin_family != AF_INET || ntohs(local.sin_port) != server_->port() ||
        ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) {
      continue;
    }
    int on = 0, idle = 0;
    socklen_t len = sizeof(on);
    ASSERT_EQ(::getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, &len), 0);
    len = sizeof(idle);
    ASSERT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, &len), 0);
    EXPECT_EQ(on, 1);
    EXPECT_EQ(idle, 60);
    ++checked;
  }
  EXPECT_EQ(checked, 1);
}

TEST_F(ServerTest, Http10ClosesAfterResponse) {
  Start();
  RawConn c(server_->port());
  c.Send("GET /old HTTP/1.0\r\n\r\n");
  bool eof = false;
  std::string out = c.ReadAll(&eof);
  EXPECT_TRUE(eof);
  EXPECT_THAT(out, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(out, ::testing::EndsWith("[/old]"));
}

TEST_F(ServerTest, BodyTooLargeWithContentLengthIs413) {
  Start();
  Client client(endpoint_, "");
  auto r = client.Do("POST", "/big", std::string(2 * 1024 * 1024, 'x'));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 413u);
  EXPECT_EQ(r->content_type, "application/json");
  EXPECT_THAT(r->body, HasSubstr(R"({"error":{"code":"PAYLOAD_TOO_LARGE",)"
                                 R"("message":"request body exceeds 1048576 bytes","hint":")"));
  EXPECT_EQ(server_->requests(), 0u);       // the handler never saw it
  auto after = client.Do("GET", "/after");  // and the client recovers on a new connection
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->body, "[/after]");
}

TEST_F(ServerTest, BodyTooLargeChunkedIs413) {
  ServerOptions o;
  o.max_body_bytes = 1024;
  Start(o);
  RawConn c(server_->port());
  std::string chunk(600, 'y');
  c.Send("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 3; ++i) c.Send("258\r\n" + chunk + "\r\n");
  c.Send("0\r\n\r\n");
  bool eof = false;
  std::string out = c.ReadAll(&eof);
  EXPECT_TRUE(eof);
  EXPECT_THAT(out, StartsWith("HTTP/1.1 413 Payload Too Large\r\n"));
  EXPECT_THAT(out, HasSubstr("PAYLOAD_TOO_LARGE"));
  EXPECT_THAT(out, HasSubstr("request body exceeds 1024 bytes"));
  EXPECT_EQ(server_->requests(), 0u);
}

TEST_F(ServerTest, ChunkedBodyWithinLimitIsDecoded) {
  handler_ = [](Request r, std::shared_ptr<Exchange> ex) { ex->Respond(Text(r.body)); };
  Start();
  RawConn c(server_->port());
  c.Send(
      "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
      "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  std::string out = c.ReadAll();
  EXPECT_THAT(out, ::testing::EndsWith("\r\n\r\nabcde"));
}

TEST_F(ServerTest, HugeHeadersAre431) {
  Start();
  RawConn c(server_->port());
  c.Send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n");
  bool eof = false;
  std::string out = c.ReadAll(&eof);
  EXPECT_TRUE(eof);
  EXPECT_THAT(out, StartsWith("HTTP/1.1 431 "));
  EXPECT_THAT(out, HasSubstr(R"({"error":{"code":"HEADERS_TOO_LARGE")"));
  EXPECT_THAT(out, HasSubstr("request headers exceed 16384 bytes"));
}

TEST_F(ServerTest, GarbageIs400AndCloses) {
  Start();
  RawConn c(server_->port());
  static constexpr char kTls[] = "\x16\x03\x01\x02\x00 not http at all\r\n\r\n";
  c.Send(std::string(kTls, sizeof(kTls) - 1));  // the literal holds a NUL: size it exactly
  bool eof = false;
  std::string out = c.ReadAll(&eof);
  EXPECT_TRUE(eof);
  EXPECT_THAT(out, StartsWith("HTTP/1.1 400 Bad Request\r\n"));
  EXPECT_THAT(out, HasSubstr(R"("code":"BAD_REQUEST")"));
  EXPECT_EQ(server_->requests(), 0u);
}

TEST_F(ServerTest, DecodesPathQueryAndHeaders) {
  handler_ = [](Request r, std::shared_ptr<Exchange> ex) {
    std::string out = r.path + "|target=" + r.target + "|";
    for (const auto& [k, v] : r.query) out += k + "=" + v + ";";
    out += "|x=" + r.Query("x").value_or("none") + "|nope=" + r.Query("nope").value_or("none");
    out += "|hdr=" + r.Header("x-mixed-case");
    ex->Respond(Text(out));
  };
  Start();
  RawConn c(server_->port());
  c.Send(
      "GET /v1/a%20b/c%2Fd?x=1&y=hello+world&z=%26%3D&x=2 HTTP/1.1\r\nHost: x\r\n"
      "X-Mixed-Case: Value\r\nConnection: close\r\n\r\n");
  std::string out = c.ReadAll();
  EXPECT_THAT(out, ::testing::EndsWith(
                       "\r\n\r\n/v1/a b/c/d|target=/v1/a%20b/c%2Fd?x=1&y=hello+world&z=%26%3D&x=2"
                       "|x=1;y=hello world;z=&=;x=2;|x=1|nope=none|hdr=Value"));
}

TEST_F(ServerTest, HandlerMayRespondLater) {
  handler_ = [this](Request r, std::shared_ptr<Exchange> ex) {
    After(milliseconds(50), [ex, path = r.path] { ex->Respond(Text("late " + path)); });
  };
  Start();
  Client client(endpoint_, "");
  for (int i = 0; i < 2; ++i) {  // the connection stays usable after a late answer
    auto r = client.Do("GET", "/poll");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->body, "late /poll");
  }
  EXPECT_EQ(server_->accepted_connections(), 1u);
}

TEST_F(ServerTest, PipelinedRequestsAreAnsweredInOrder) {
  handler_ = [this](Request r, std::shared_ptr<Exchange> ex) {
    if (r.path == "/slow") {
      After(milliseconds(50), [ex] { ex->Respond(Text("[slow]")); });
    } else {
      ex->Respond(Text("[" + r.path + "]"));
    }
  };
  Start();
  RawConn c(server_->port());
  c.Send(
      "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string out = c.ReadAll();
  size_t slow = out.find("[slow]"), a = out.find("[/a]"), b = out.find("[/b]");
  ASSERT_NE(slow, std::string::npos) << out;
  ASSERT_NE(a, std::string::npos) << out;
  ASSERT_NE(b, std::string::npos) << out;
  EXPECT_LT(slow, a);
  EXPECT_LT(a, b);
}

TEST_F(ServerTest, ExpectContinueGets100BeforeTheBody) {
  handler_ = [](Request r, std::shared_ptr<Exchange> ex) { ex->Respond(Text("got " + r.body)); };
  Start();
  RawConn c(server_->port());
  c.Send(
      "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
      "Connection: close\r\n\r\n");
  EXPECT_EQ(c.ReadUntil("\r\n\r\n"), "HTTP/1.1 100 Continue\r\n\r\n");
  c.Send("hello");
  EXPECT_THAT(c.ReadAll(), ::testing::EndsWith("got hello"));
}

TEST_F(ServerTest, ExpectContinueOverLimitIsRejectedWithoutTheBody) {
  Start();
  RawConn c(server_->port());
  c.Send("POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n");
  bool eof = false;
  std::string out = c.ReadAll(&eof);
  EXPECT_TRUE(eof);
  EXPECT_THAT(out, StartsWith("HTTP/1.1 413 "));
}

TEST_F(ServerTest, StreamsChunksToClient) {
  handler_ = [this](Request r, std::shared_ptr<Exchange> ex) {
    ex->BeginStream(200, "text/event-stream");
    ex->Write("data: 1\n\n");
    After(milliseconds(20), [this, ex] {
      ex->Write("data: 2\n\n");
      After(milliseconds(20), [ex] {
        ex->Write("data: 3\n\n");
        ex->End();
        ex->Write("dropped after End");
      });
    });
  };
  Start();
  Client client(endpoint_, "");
  std::string got;
  int pieces = 0;
  auto st = client.Stream("/v1/events?follow=1", [&](std::string_view d) {
    got.append(d);
    ++pieces;
    return true;
  });
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(got, "data: 1\n\ndata: 2\n\ndata: 3\n\n");
  EXPECT_GE(pieces, 2);  // delivered as they came, not in one piece at the end
}

TEST_F(ServerTest, StreamHeadersOnTheWire) {
  handler_ = [](Request r, std::shared_ptr<Exchange> ex) {
    ex->BeginStream(200, "text/event-stream");
    ex->Write("abc");
    ex->End();
  };
  Start();
  RawConn c(server_->port());
  c.Send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string out = c.ReadAll();
  EXPECT_THAT(out, HasSubstr("\r\nContent-Type: text/event-stream\r\n"));
  EXPECT_THAT(out, HasSubstr("\r\nCache-Control: no-cache\r\n"));
  EXPECT_THAT(out, HasSubstr("\r\nTransfer-Encoding: chunked\r\n"));
  EXPECT_THAT(out, ::testing::EndsWith("\r\n\r\n3\r\nabc\r\n0\r\n\r\n"));
}

TEST_F(ServerTest, ClientStoppingAStreamFiresOnClose) {
  auto closed = std::make_shared<std::promise<void>>();
  handler_ = [this, closed](Request r, std::shared_ptr<Exchange> ex) {
    ex->OnClose([closed] { closed->set_value(); });
    ex->BeginStream(200, "text/event-stream");
    // The pending timer owns the tick, the tick only a weak_ptr to itself: a tick still
    // pending when the test tears the loop down is freed with it (a self-owning tick leaked
    // the Exchange, its Session and the ServerCore unless a tick ran after the close).
    auto tick = std::make_shared<std::function<void()>>();
    *tick = [this, ex, self = std::weak_ptr(tick)] {
      if (ex->Closed()) return;
      ex->Write("data: tick\n\n");
      After(milliseconds(10), [t = self.lock()] { (*t)(); });
    };
    (*tick)();
  };
  Start();
  Client client(endpoint_, "");
  int calls = 0;
  auto st = client.Stream("/follow", [&](std::string_view) { return ++calls < 2; });
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(closed->get_future().wait_for(kWait), std::future_status::ready);
}

TEST_F(ServerTest, PeerCloseFiresOnCloseForPendingLongPoll) {
  std::promise<void> got;
  auto closed = std::make_shared<std::promise<void>>();
  handler_ = [&, closed](Request r, std::shared_ptr<Exchange> ex) {
    ex->OnClose([closed] { closed->set_value(); });
    pending_.push_back(ex);
    got.set_value();
  };
  Start();
  RawConn c(server_->port());
  c.Send("GET /v1/events?wait=60 HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(got.get_future().wait_for(kWait), std::future_status::ready);
  EXPECT_FALSE(OnLoop([this] { return pending_[0]->Closed(); }));
  c.Close();
  ASSERT_EQ(closed->get_future().wait_for(kWait), std::future_status::ready);
  EXPECT_TRUE(OnLoop([this] { return pending_[0]->Closed(); }));
  OnLoop([this] {
    pending_[0]->Respond(Text("too late"));  // dropped silently
    return 0;
  });
  EXPECT_EQ(server_->connections(), 0u);
}

TEST_F(ServerTest, DroppedExchangeIsAnswered500) {
  handler_ = [](Request, std::shared_ptr<Exchange>) {};
  Start();
  Client client(endpoint_, "");
  auto r = client.Do("GET", "/forgotten");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 500u);
  EXPECT_THAT(r->body, HasSubstr("INTERNAL"));
}

TEST_F(ServerTest, ThrowingHandlerIsAnswered500) {
  handler_ = [](Request, std::shared_ptr<Exchange>) { throw std::runtime_error("boom"); };
  Start();
  Client client(endpoint_, "");
  auto r = client.Do("GET", "/throw");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 500u);
  EXPECT_THAT(r->body, HasSubstr("boom"));
}

TEST_F(ServerTest, StopWaitsForInFlightResponse) {
  std::promise<void> got;
  bool responded = false;  // loop thread only
  handler_ = [&](Request r, std::shared_ptr<Exchange> ex) {
    got.set_value();
    After(milliseconds(200), [&responded, ex] {
      responded = true;
      ex->Respond(Text("finished"));
    });
  };
  Start();
  std::optional<absl::StatusOr<ClientResponse>> result;
  std::thread caller([&] {
    Client client(endpoint_, "");
    result = client.Do("GET", "/slow");
  });
  ASSERT_EQ(got.get_future().wait_for(kWait), std::future_status::ready);
  auto done = std::make_shared<std::promise<bool>>();
  server_->Stop([&responded, done] { done->set_value(responded); });
  auto fut = done->get_future();
  ASSERT_EQ(fut.wait_for(kWait), std::future_status::ready);
  EXPECT_TRUE(fut.get()) << "Stop completed before the in-flight response was written";
  caller.join();
  ASSERT_TRUE(result->ok()) << result->status();
  EXPECT_EQ((*result)->body, "finished");
  EXPECT_EQ(server_->connections(), 0u);

  Client late(endpoint_, "");  // no new connections after Stop
  EXPECT_EQ(late.Do("GET", "/").status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(ServerTest, StopClosesIdleConnectionsAndEndsStreams) {
  std::promise<void> streaming;
  handler_ = [&](Request r, std::shared_ptr<Exchange> ex) {
    if (r.path == "/stream") {
      ex->BeginStream(200, "text/event-stream");
      ex->Write("data: hello\n\n");
      pending_.push_back(ex);
      streaming.set_value();
    } else {
      ex->Respond(Text("ok"));
    }
  };
  Start();
  Client idle(endpoint_, "");
  ASSERT_TRUE(idle.Do("GET", "/").ok());
  std::string got;
  absl::Status stream_status;
  std::thread reader([&] {
    Client client(endpoint_, "");
    stream_status = client.Stream("/stream", [&](std::string_view d) {
      got.append(d);
      return true;
    });
  });
  ASSERT_EQ(streaming.get_future().wait_for(kWait), std::future_status::ready);
  EXPECT_EQ(server_->connections(), 2u);
  EXPECT_TRUE(StopServer());
  reader.join();
  EXPECT_TRUE(stream_status.ok()) << stream_status;
  EXPECT_EQ(got, "data: hello\n\n");
  EXPECT_EQ(server_->connections(), 0u);
}

TEST_F(ServerTest, StopFromInsideAHandler) {
  auto done = std::make_shared<std::promise<void>>();
  handler_ = [this, done](Request r, std::shared_ptr<Exchange> ex) {
    server_->Stop([done] { done->set_value(); });
    ex->Respond(Text("bye"));
  };
  Start();
  RawConn c(server_->port());
  c.Send("POST /v1/daemon/stop HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  bool eof = false;
  std::string out = c.ReadAll(&eof);
  EXPECT_TRUE(eof);
  EXPECT_THAT(out, HasSubstr("\r\nConnection: close\r\n"));
  EXPECT_THAT(out, ::testing::EndsWith("bye"));
  EXPECT_EQ(done->get_future().wait_for(kWait), std::future_status::ready);
}

TEST_F(ServerTest, IdleTimeoutClosesConnection) {
  ServerOptions o;
  o.idle_timeout = absl::Milliseconds(200);
  Start(o);
  RawConn c(server_->port());
  c.Send("GET /one HTTP/1.1\r\nHost: x\r\n\r\n");
  auto t0 = SteadyClock::now();
  bool eof = false;
  std::string out = c.ReadAll(&eof);  // the response, then EOF once idle
  auto elapsed = SteadyClock::now() - t0;
  EXPECT_TRUE(eof);
  EXPECT_THAT(out, ::testing::EndsWith("[/one]"));
  EXPECT_GE(elapsed, milliseconds(150));
  EXPECT_LT(elapsed, milliseconds(3000));
}

TEST_F(ServerTest, ReadTimeoutClosesAnIncompleteRequest) {
  ServerOptions o;
  o.read_timeout = absl::Milliseconds(200);
  Start(o);
  RawConn c(server_->port());
  c.Send("GET /partial HTTP/1.1\r\nHost:");
  auto t0 = SteadyClock::now();
  bool eof = false;
  std::string out = c.ReadAll(&eof);
  auto elapsed = SteadyClock::now() - t0;
  EXPECT_TRUE(eof);
  EXPECT_EQ(out, "");  // closed quietly
  EXPECT_GE(elapsed, milliseconds(150));
  EXPECT_LT(elapsed, milliseconds(3000));
  EXPECT_EQ(server_->requests(), 0u);
}

TEST_F(ServerTest, ConnectionsBeyondTheCapGet503) {
  ServerOptions o;
  o.max_connections = 1;
  Start(o);
  RawConn first(server_->port());
  first.Send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(first.ReadUntil("[/a]"), HasSubstr("[/a]"));  // accepted and served
  RawConn second(server_->port());
  bool eof = false;
  std::string out = second.ReadAll(&eof);
  EXPECT_THAT(out, StartsWith("HTTP/1.1 503 "));
  EXPECT_EQ(server_->connections(), 1u);
}

// Sends `head`, then `filler` over and over (up to `limit` bytes), checking after each piece
// whether the server answered; returns what it answered and how much had been sent by then.
struct Flooded {
  std::string answer;
  size_t sent = 0;
};
Flooded Flood(uint16_t port, const std::string& head, const std::string& filler, size_t limit) {
  RawConn c(port);
  c.Send(head);
  Flooded f;
  std::string piece;
  while (piece.size() < 16 * 1024) piece += filler;
  while (f.sent < limit) {
    c.Send(piece);
    f.sent += piece.size();
    // Paces the sender (loopback socket buffers hold megabytes), not a correctness wait.
    f.answer = c.ReadAvailable(milliseconds(20));
    if (!f.answer.empty()) break;
  }
  if (!f.answer.empty()) f.answer += c.ReadAll();
  return f;
}

TEST_F(ServerTest, EndlessChunkSizeLineIs400BeforeMuchIsBuffered) {
  Start();
  auto f = Flood(server_->port(),
                 "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "0123456789abcdef",
                 8 * 1024 * 1024);
  EXPECT_THAT(f.answer, StartsWith("HTTP/1.1 400 Bad Request\r\n"));
  EXPECT_THAT(f.answer, HasSubstr("chunked body"));
  EXPECT_LT(f.sent, 2u * 1024 * 1024);
  EXPECT_EQ(server_->requests(), 0u);
}

TEST_F(ServerTest, EndlessChunkExtensionIs400BeforeMuchIsBuffered) {
  Start();
  auto f = Flood(server_->port(),
                 "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;", "ext=val;",
                 8 * 1024 * 1024);
  EXPECT_THAT(f.answer, StartsWith("HTTP/1.1 400 Bad Request\r\n"));
  EXPECT_LT(f.sent, 2u * 1024 * 1024);
}

TEST_F(ServerTest, EndlessTrailerIs400BeforeMuchIsBuffered) {
  Start();
  auto f = Flood(server_->port(),
                 "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "3\r\nabc\r\n0\r\nX-Trailer: ",
                 "aaaaaaaa", 8 * 1024 * 1024);
  EXPECT_THAT(f.answer, StartsWith("HTTP/1.1 400 Bad Request\r\n"));
  EXPECT_LT(f.sent, 2u * 1024 * 1024);
}

TEST_F(ServerTest, ChunkedBodyOfManySmallChunksIsNotMistakenForEndlessFraming) {
  handler_ = [](Request r, std::shared_ptr<Exchange> ex) {
    ex->Respond(Text(std::to_string(r.body.size())));
  };
  Start();
  RawConn c(server_->port());
  std::string body;
  for (int i = 0; i < 50000; ++i) body += "1;a=b\r\nx\r\n";  // ~500 KB of framing, 50 KB of data
  c.Send("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
         body + "0\r\nX-T: 1\r\n\r\n");
  EXPECT_THAT(c.ReadAll(), ::testing::EndsWith("\r\n\r\n50000"));
}

TEST_F(ServerTest, AtTheCapANeverUsedConnectionIsEvictedForANewcomer) {
  ServerOptions o;
  o.max_connections = 3;
  Start(o);
  RawConn used(server_->port());
  used.Send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(used.ReadUntil("[/a]"), HasSubstr("[/a]"));
  RawConn idle1(server_->port());
  ASSERT_TRUE(Eventually([&] { return server_->connections() == 2; }));
  RawConn idle2(server_->port());  // a slowloris: half a request line, never finished
  idle2.Send("GET /slow HTTP/1.1\r\nHo");
  ASSERT_TRUE(Eventually([&] { return server_->connections() == 3; }));

  RawConn newcomer(server_->port());
  newcomer.Send("GET /new HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(newcomer.ReadUntil("[/new]"), ::testing::EndsWith("[/new]"));
  bool eof = false;
  EXPECT_EQ(idle1.ReadAll(&eof), "");  // the oldest never-used connection made room
  EXPECT_TRUE(eof);
  EXPECT_EQ(server_->evicted_connections(), 1u);

  RawConn second(server_->port());  // the slowloris goes next
  second.Send("GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(second.ReadAll(), ::testing::EndsWith("[/second]"));
  eof = false;
  EXPECT_EQ(idle2.ReadAll(&eof), "");
  EXPECT_TRUE(eof);

  // The connection that completed a request keeps working.
  used.Send("GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(used.ReadUntil("[/b]"), HasSubstr("[/b]"));
  EXPECT_EQ(server_->evicted_connections(), 2u);
}

TEST_F(ServerTest, AtTheCapWithOnlyUsedConnectionsTheNewcomerGets503) {
  ServerOptions o;
  o.max_connections = 2;
  Start(o);
  RawConn a(server_->port());
  RawConn b(server_->port());
  for (auto* c : {&a, &b}) {
    c->Send("GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_THAT(c->ReadUntil("[/x]"), HasSubstr("[/x]"));
  }
  RawConn refused(server_->port());
  EXPECT_THAT(refused.ReadAll(), StartsWith("HTTP/1.1 503 "));
  EXPECT_EQ(server_->evicted_connections(), 0u);
  a.Send("GET /still HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(a.ReadUntil("[/still]"), HasSubstr("[/still]"));
}

TEST_F(ServerTest, NeverUsedConnectionsTimeOutSoonerThanKeepAliveOnes) {
  ServerOptions o;
  o.first_request_timeout = absl::Milliseconds(200);
  o.idle_timeout = absl::Seconds(60);
  Start(o);
  RawConn used(server_->port());
  used.Send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(used.ReadUntil("[/a]"), HasSubstr("[/a]"));
  RawConn fresh(server_->port());
  bool eof = false;
  EXPECT_EQ(fresh.ReadAll(&eof), "");  // closed quietly, long before the 5 s receive timeout
  EXPECT_TRUE(eof);
  // The keep-alive connection is still open.
  EXPECT_TRUE(Eventually([&] { return server_->connections() == 1; }));
  used.Send("GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(used.ReadUntil("[/b]"), HasSubstr("[/b]"));
}

TEST_F(ServerTest, OutOfDescriptorsNewcomersGet503AndServingResumesAfterwards) {
  Start();
  RawConn used(server_->port());
  used.Send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(used.ReadUntil("[/a]"), HasSubstr("[/a]"));
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  std::optional<RawConn> waiting[2];
  // Hold the loop so the two connections wait in the backlog while descriptors run out.
  // Latches, not promises: destroying a promise's result is a virtual call, and UBSan's vptr
  // check of a type it has not seen yet probes memory through a pipe(), which fails with
  // EMFILE here and is reported as "invalid vptr". They outlive the block: the loop thread
  // may still be inside release.wait() after the count_down.
  std::latch release(1);
  std::latch held(1);
  {
    asio::post(io_, [&] {
      held.count_down();
      release.wait();
    });
    held.wait();
    for (auto& w : waiting) w.emplace(server_->port());
    const int lowest_free = ::dup(0);
    ASSERT_GE(lowest_free, 0);
    ::close(lowest_free);
    rlimit low = saved;
    low.rlim_cur = static_cast<rlim_t>(lowest_free);  // no new descriptor can be made
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
    release.count_down();
  }
  std::string answers[2];
  for (int i = 0; i < 2; ++i) answers[i] = waiting[i]->ReadAll();
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  for (const auto& a : answers) {
    EXPECT_THAT(a, StartsWith("HTTP/1.1 503 "));  // refused cleanly, not left hanging
    EXPECT_THAT(a, HasSubstr("too many connections"));
  }
  RawConn later(server_->port());
  later.Send("GET /later HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(later.ReadAll(), ::testing::EndsWith("[/later]"));
}

TEST_F(ServerTest, ClientReconnectsAfterServerClosedIdleConnection) {
  ServerOptions o;
  o.idle_timeout = absl::Milliseconds(100);
  Start(o);
  Client client(endpoint_, "");
  ASSERT_TRUE(client.Do("GET", "/1").ok());
  ASSERT_TRUE(Eventually([&] { return server_->connections() == 0; }));
  auto r = client.Do("POST", "/2", "{}");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "[/2]");
  EXPECT_EQ(server_->accepted_connections(), 2u);
}

TEST_F(ServerTest, ClientTimesOut) {
  handler_ = [this](Request r, std::shared_ptr<Exchange> ex) {
    if (r.path == "/stream") ex->BeginStream(200, "text/event-stream");
    pending_.push_back(ex);  // never answered
  };
  Start();
  Client client(endpoint_, "", absl::Milliseconds(200));
  auto r = client.Do("GET", "/never");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  auto st = client.Stream("/stream", [](std::string_view) { return true; });
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
  // The abandoned exchanges see their peer go away, so Stop() is not held up by them.
  EXPECT_TRUE(Eventually([&] { return server_->connections() == 0; }));
}

TEST_F(ServerTest, StreamReportsHttpErrors) {
  handler_ = [](Request r, std::shared_ptr<Exchange> ex) {
    ex->Respond(Response{404,
                         "application/json",
                         R"({"error":{"code":"DEPLOYMENT_NOT_FOUND","message":"no such)"
                         R"( deployment \"x\"","hint":"list them with palm get deployments"}})",
                         {}});
  };
  Start();
  Client client(endpoint_, "");
  bool called = false;
  auto st = client.Stream("/v1/deployments/x/logs?follow=1", [&](std::string_view) {
    called = true;
    return true;
  });
  EXPECT_FALSE(called);
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
  EXPECT_EQ(st.message(), "no such deployment \"x\"");
  EXPECT_EQ(palm::ErrorCode(st), "DEPLOYMENT_NOT_FOUND");
  EXPECT_EQ(palm::ErrorHint(st), "list them with palm get deployments");
}

TEST(ClientTest, UnreachableDaemonIsUnavailableWithHint) {
  uint16_t port;
  {
    asio::io_context io;
    asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    port = a.local_endpoint().port();
  }  // closed again: nothing listens there now
  std::string endpoint = "http://127.0.0.1:" + std::to_string(port);
  Client client(endpoint + "/", "");
  auto r = client.Do("GET", "/healthz");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(),
            "cannot reach the palm daemon at " + endpoint + ": Connection refused");
  EXPECT_EQ(palm::ErrorHint(r.status()), "is it running? try `palm daemon start`");
  EXPECT_EQ(client.Stream("/x", [](std::string_view) { return true; }).code(),
            absl::StatusCode::kUnavailable);
}

TEST(ClientTest, RejectsUnsupportedEndpoints) {
  Client tls("https://127.0.0.1:7070", "");
  auto r = tls.Do("GET", "/");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("TLS not supported yet"));
  Client bad("ftp://x:1", "");
  EXPECT_EQ(bad.Do("GET", "/").status().code(), absl::StatusCode::kInvalidArgument);
  Client badport("http://127.0.0.1:99999", "");
  EXPECT_EQ(badport.Do("GET", "/").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ClientTest, ErrorFromResponse) {
  EXPECT_TRUE(ErrorFromResponse(204, "").ok());
  auto s = ErrorFromResponse(409, R"({"error":{"code":"NAME_TAKEN","message":"taken"}})");
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(s.message(), "taken");
  EXPECT_EQ(palm::ErrorCode(s), "NAME_TAKEN");
  auto raw = ErrorFromResponse(502, "upstream broke");
  EXPECT_EQ(raw.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(raw.message(), "HTTP 502 Bad Gateway: upstream broke");
}

TEST(ServeConnectionForTestingTest, ServesOneSocketpairEndWithoutAListener) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  asio::io_context io;
  auto st = ServeConnectionForTesting(io, sv[0], {}, [](Request r, std::shared_ptr<Exchange> ex) {
    ex->Respond(Text(r.method + " " + r.path + " " + r.body + " from " + r.remote));
  });
  ASSERT_TRUE(st.ok()) << st;
  std::string in =
      "GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
      "POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
  ASSERT_EQ(::write(sv[1], in.data(), in.size()), static_cast<ssize_t>(in.size()));
  ::shutdown(sv[1], SHUT_WR);
  io.run();  // returns once the connection closed (EOF after both answers)
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(sv[1], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(sv[1]);
  EXPECT_THAT(out, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(out, HasSubstr("GET /one  from test-peer"));
  EXPECT_THAT(out, ::testing::EndsWith("POST /two hi from test-peer"));
}

TEST(ServeConnectionForTestingTest, RefusesABadDescriptor) {
  asio::io_context io;
  auto st = ServeConnectionForTesting(io, -1, {}, [](Request, std::shared_ptr<Exchange>) {});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
}

TEST(ServerListenTest, AddressForms) {
  asio::io_context io;
  auto handler = [](Request, std::shared_ptr<Exchange> ex) { ex->Respond(Text("")); };
  {
    Server s(io, {}, handler);
    EXPECT_TRUE(s.Listen("localhost:0").ok());
    EXPECT_NE(s.port(), 0);
    EXPECT_EQ(s.Listen("localhost:0").code(), absl::StatusCode::kFailedPrecondition);
  }
  {
    Server s(io, {}, handler);
    auto st = s.Listen("[::1]:0");
    // IPv6 may be disabled in a sandbox; then the bind fails cleanly.
    EXPECT_TRUE(st.ok() || st.code() == absl::StatusCode::kUnavailable) << st;
  }
  {
    Server s(io, {}, handler);
    EXPECT_EQ(s.Listen("127.0.0.1").code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(s.Listen("127.0.0.1:http").code(), absl::StatusCode::kInvalidArgument);
  }
  {
    Server a(io, {}, handler);
    ASSERT_TRUE(a.Listen("127.0.0.1:0").ok());
    Server b(io, {}, handler);
    auto st = b.Listen("127.0.0.1:" + std::to_string(a.port()));
    EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(st.message()), HasSubstr("cannot listen on 127.0.0.1:"));
  }
}

}  // namespace
}  // namespace palm::http
