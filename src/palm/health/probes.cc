#include "palm/health/probes.h"

#include <chrono>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http/empty_body.hpp"
#include "boost/beast/http/message.hpp"
#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/read.hpp"
#include "boost/beast/http/write.hpp"
#include "palm/runtime/exec_probe.h"

namespace palm::health {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

constexpr uint32_t kHeaderLimit = 16 * 1024;

// Shared by both network probes: socket, deadline, exactly-once completion.
class NetProbe : public std::enable_shared_from_this<NetProbe> {
 public:
  NetProbe(asio::io_context& io, absl::Duration timeout, ProbeCallback done)
      : io_(io), socket_(io), timer_(io), timeout_(timeout), done_(std::move(done)) {}
  virtual ~NetProbe() = default;

  void Start(const std::string& host, uint16_t port) {
    started_ = SteadyClock::now();
    boost::system::error_code ec;
    asio::ip::address addr = asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
    if (ec) {
      asio::post(io_, [self = shared_from_this(), host] {
        self->Finish(false, absl::StrCat("bad probe host \"", host, "\" (an IP address is needed)"));
      });
      return;
    }
    timer_.expires_after(std::chrono::nanoseconds(absl::ToInt64Nanoseconds(timeout_)));
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->finished_) return;
      self->Finish(false, absl::StrCat("timeout after ", absl::FormatDuration(self->timeout_)));
    });
    socket_.async_connect(tcp::endpoint(addr, port),
                          [self = shared_from_this()](const boost::system::error_code& ec) {
                            if (self->finished_) return;
                            if (ec) return self->Finish(false, absl::StrCat("connect: ", ec.message()));
                            self->Connected();
                          });
  }

 protected:
  virtual void Connected() = 0;

  void Finish(bool ok, std::string message) {
    if (finished_) return;
    finished_ = true;
    boost::system::error_code ignored;
    timer_.cancel();
    socket_.close(ignored);  // pending operations complete as aborted and see finished_
    ProbeResult r;
    r.ok = ok;
    r.message = std::move(message);
    r.latency = absl::FromChrono(SteadyClock::now() - started_);
    auto done = std::move(done_);
    done(std::move(r));
  }

  asio::io_context& io_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  const absl::Duration timeout_;
  ProbeCallback done_;
  SteadyClock::time_point started_;
  bool finished_ = false;
};

class TcpProbe final : public NetProbe {
 public:
  using NetProbe::NetProbe;

 private:
  void Connected() override { Finish(true, "connected"); }
};

class HttpProbe final : public NetProbe {
 public:
  HttpProbe(asio::io_context& io, absl::Duration timeout, ProbeCallback done, const std::string& host,
            uint16_t port, const std::string& path)
      : NetProbe(io, timeout, std::move(done)) {
    req_.method(bhttp::verb::get);
    req_.target(path);
    req_.version(11);
    req_.set(bhttp::field::host, absl::StrCat(host, ":", port));
    req_.set(bhttp::field::user_agent, "palm-probe/1");
    req_.set(bhttp::field::accept, "*/*");
    req_.set(bhttp::field::connection, "close");
    parser_.header_limit(kHeaderLimit);
    parser_.skip(false);
  }

 private:
  void Connected() override {
    bhttp::async_write(socket_, req_,
                       [self = Self()](const boost::system::error_code& ec, size_t) {
                         if (self->finished_) return;
                         if (ec) return self->Finish(false, absl::StrCat("send: ", ec.message()));
                         self->ReadHeader();
                       });
  }

  void ReadHeader() {
    bhttp::async_read_header(
        socket_, buffer_, parser_, [self = Self()](const boost::system::error_code& ec, size_t) {
          if (self->finished_) return;
          if (ec) {
            return self->Finish(false, ec == asio::error::eof || ec == bhttp::error::end_of_stream
                                           ? std::string("connection closed before a response")
                                           : absl::StrCat("read: ", ec.message()));
          }
          const unsigned status = self->parser_.get().result_int();
          self->Finish(status >= 200 && status < 400, absl::StrCat("HTTP ", status));
        });
  }

  std::shared_ptr<HttpProbe> Self() {
    return std::static_pointer_cast<HttpProbe>(shared_from_this());
  }

  bhttp::request<bhttp::empty_body> req_;
  beast::flat_buffer buffer_;
  bhttp::response_parser<bhttp::empty_body> parser_;
};

}  // namespace

void ProbeHttp(boost::asio::io_context& io, const std::string& host, uint16_t port,
               const std::string& path, absl::Duration timeout, ProbeCallback done) {
  auto p = std::make_shared<HttpProbe>(io, timeout, std::move(done), host, port, path);
  p->Start(host, port);
}

void ProbeTcp(boost::asio::io_context& io, const std::string& host, uint16_t port,
              absl::Duration timeout, ProbeCallback done) {
  auto p = std::make_shared<TcpProbe>(io, timeout, std::move(done));
  p->Start(host, port);
}

void ProbeExec(boost::asio::io_context& io, std::vector<std::string> argv,
               std::map<std::string, std::string> env, std::string workdir,
               absl::Duration timeout, ProbeCallback done) {
  runtime::RunExecProbe(io, std::move(argv), std::move(env), std::move(workdir), timeout,
                        [done = std::move(done)](runtime::ExecResult r) {
                          done(ProbeResult{r.ok, std::move(r.message), r.latency});
                        });
}

}  // namespace palm::health
