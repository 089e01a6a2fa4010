#include "palm/http/server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

#include "boost/asio/post.hpp"
#include "palm/base/error.h"
#include "palm/http/server_core.h"
#include "palm/http/wire.h"

namespace palm::http {

namespace asio = boost::asio;

std::string Request::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return {};
}

std::optional<std::string> Request::Query(std::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return v;
  }
  return std::nullopt;
}

namespace internal {

void AppendUint(std::string* out, uint64_t v) {
  char buf[24];
  char* end = buf + sizeof(buf);
  char* p = end;
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  out->append(p, static_cast<size_t>(end - p));
}

namespace {

std::string FormatEndpoint(const tcp::endpoint& ep) {
  std::string out;
  if (ep.address().is_v6()) {
    out = "[" + ep.address().to_string() + "]:";
  } else {
    out = ep.address().to_string() + ":";
  }
  AppendUint(&out, ep.port());
  return out;
}

}  // namespace

SteadyClock::duration ToSteady(absl::Duration d) {
  if (d < absl::ZeroDuration()) return SteadyClock::duration::zero();
  // Keep "now + d" far from overflow for absl::InfiniteDuration().
  if (d > absl::Hours(24 * 365)) d = absl::Hours(24 * 365);
  return std::chrono::duration_cast<SteadyClock::duration>(absl::ToChronoNanoseconds(d));
}

// ---- ServerCore ----

ServerCore::~ServerCore() {
  if (spare_fd_ >= 0) ::close(spare_fd_);
}

absl::Status ServerCore::Listen(const std::string& address) {
  if (acceptor_.is_open()) {
    return absl::FailedPreconditionError("the server is already listening");
  }
  auto hp = ParseHostPort(address);
  if (!hp.ok()) return hp.status();
  asio::ip::address addr;
  if (hp->host.empty() || hp->host == "*") {
    addr = asio::ip::address_v4::any();
  } else if (hp->host == "localhost") {
    addr = asio::ip::address_v4::loopback();
  } else {
    beast::error_code ec;
    addr = asio::ip::make_address(hp->host, ec);
    if (ec) {
      tcp::resolver resolver(io_);
      auto results = resolver.resolve(hp->host, "", ec);
      if (ec || results.empty()) {
        return palm::InvalidArgument(
            "cannot listen on \"" + address + "\": unknown host \"" + hp->host + "\"",
            "use an IP address such as 127.0.0.1:7070");
      }
      addr = results.begin()->endpoint().address();
    }
  }
  tcp::endpoint ep(addr, hp->port);
  beast::error_code ec;
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    beast::error_code ignored;
    acceptor_.close(ignored);
    std::string hint;
    if (ec == asio::error::address_in_use) {
      hint = "another process (another palm daemon?) uses that port; pick another address";
    } else if (ec == asio::error::access_denied) {
      hint = "ports below 1024 need privileges; use a higher port";
    }
    return palm::Error(absl::StatusCode::kUnavailable, "LISTEN_FAILED",
                       "cannot listen on " + address + ": " + ec.message(), hint);
  }
  port_ = acceptor_.local_endpoint(ec).port();
  // Non-blocking, so that AcceptWithSpareFd's synchronous accept never waits.
  acceptor_.non_blocking(true, ec);
  if (spare_fd_ < 0) spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  Accept();
  return absl::OkStatus();
}

void ServerCore::Accept() {
  if (stopping_ || !acceptor_.is_open()) return;
  acceptor_.async_accept(
      [self = shared_from_this()](const beast::error_code& ec, tcp::socket socket) {
        self->OnAccept(ec, std::move(socket));
      });
}

void ServerCore::OnAccept(const beast::error_code& ec, tcp::socket socket) {
  if (stopping_ || !acceptor_.is_open()) return;
  if (ec) {
    if (ec == asio::error::operation_aborted) return;
    const bool out_of_fds = ec == asio::error::no_descriptors ||
                            ec == beast::error_code(ENFILE, beast::system_category());
    if (out_of_fds && AcceptWithSpareFd()) {
      Accept();  // progress was made (a connection served or refused): no back-off
    } else {
      RetryAcceptSoon();  // never spin on a listening socket that stays readable
    }
    return;
  }
  Admit(std::move(socket), /*out_of_fds=*/false);
  Accept();
}

void ServerCore::RetryAcceptSoon() {
  accept_retry_.expires_after(std::chrono::milliseconds(100));
  accept_retry_.async_wait([self = shared_from_this()](const beast::error_code& e) {
    if (!e) self->Accept();
  });
}

bool ServerCore::AcceptWithSpareFd() {
  if (spare_fd_ < 0) return false;
  ::close(spare_fd_);
  spare_fd_ = -1;
  tcp::socket socket(io_);
  beast::error_code ec;
  acceptor_.accept(socket, ec);
  const bool took_one = !ec;
  if (took_one) Admit(std::move(socket), /*out_of_fds=*/true);
  // Reopened in the slot the refused or evicted connection freed; if something else took
  // it first, the next EMFILE backs off and this is retried then.
  spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  return took_one && spare_fd_ >= 0;
}

bool ServerCore::EvictOldestFresh() {
  if (fresh_.empty()) return false;
  Session* victim = fresh_.front();
  evicted_.fetch_add(1, std::memory_order_relaxed);
  victim->Close();  // removes it from fresh_ and sessions_
  return true;
}

namespace {

// A peer that vanished without a FIN or RST (a host gone, a cable pulled) while we wait on it
// (a long poll, an SSE or `logs -f` stream with nothing to say) is found by TCP keepalive:
// probes after 60 s of silence, every 10 s, dropped after 3 unanswered (~90 s), so its
// session is freed. Best effort: a socket that refuses the options (AF_UNIX in tests) keeps
// working without them.
void EnableTcpKeepalive(tcp::socket& socket) {
  beast::error_code ignored;
  socket.set_option(asio::socket_base::keep_alive(true), ignored);
  if (ignored) return;
  const int fd = socket.native_handle();
  const int idle_s = 60, interval_s = 10, count = 3;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof(idle_s));
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof(interval_s));
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
}

}  // namespace

void ServerCore::Admit(tcp::socket socket, bool out_of_fds, std::string remote) {
  accepted_.fetch_add(1, std::memory_order_relaxed);
  if ((out_of_fds || sessions_.size() >= options_.max_connections) && !EvictOldestFresh()) {
    RejectBusy(socket);
    return;
  }
  beast::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  EnableTcpKeepalive(socket);
  if (remote.empty()) {
    beast::error_code rec;
    auto remote_ep = socket.remote_endpoint(rec);
    remote = rec ? std::string("unknown") : FormatEndpoint(remote_ep);
  }
  auto session =
      std::make_shared<Session>(shared_from_this(), std::move(socket), std::move(remote));
  session->slot = sessions_.size();
  sessions_.push_back(session);
  session->fresh_pos = fresh_.insert(fresh_.end(), session.get());
  connections_.store(sessions_.size(), std::memory_order_relaxed);
  session->Start();
}

void ServerCore::MarkUsed(Session* s) {
  if (!s->fresh_pos) return;
  fresh_.erase(*s->fresh_pos);
  s->fresh_pos.reset();
}

void ServerCore::RejectBusy(tcp::socket& socket) {
  static const std::string kBusy = [] {
    std::string body =
        JsonError("UNAVAILABLE", "too many connections", "retry later or raise max_connections");
    std::string r =
        "HTTP/1.1 503 Service Unavailable\r\nServer: palm\r\n"
        "Content-Type: application/json\r\nConnection: close\r\nContent-Length: ";
    AppendUint(&r, body.size());
    r += "\r\n\r\n" + body;
    return r;
  }();
  beast::error_code ignored;
  socket.non_blocking(true, ignored);
  socket.write_some(asio::buffer(kBusy), ignored);  // best effort into the socket buffer
  socket.shutdown(tcp::socket::shutdown_send, ignored);
  socket.close(ignored);
}

void ServerCore::Remove(Session* s) {
  MarkUsed(s);
  size_t i = s->slot;
  if (i >= sessions_.size() || sessions_[i].get() != s) return;
  if (i + 1 != sessions_.size()) {
    sessions_[i] = std::move(sessions_.back());
    sessions_[i]->slot = i;
  }
  sessions_.pop_back();
  connections_.store(sessions_.size(), std::memory_order_relaxed);
  MaybeFinishStop();
}

void ServerCore::Stop(std::function<void()> done) {
  if (done) stop_done_.push_back(std::move(done));
  if (!stopping_) {
    stopping_ = true;
    beast::error_code ignored;
    acceptor_.close(ignored);
    accept_retry_.cancel();
    auto snapshot = sessions_;  // sessions remove themselves as they close
    for (auto& s : snapshot) s->OnServerStop();
  }
  MaybeFinishStop();
}

void ServerCore::MaybeFinishStop() {
  if (!stopping_ || !sessions_.empty() || stop_done_.empty() || shut_down_) return;
  auto cbs = std::move(stop_done_);
  stop_done_.clear();
  asio::post(io_, [cbs = std::move(cbs)] {
    for (const auto& cb : cbs) cb();
  });
}

void ServerCore::Shutdown() {
  shut_down_ = true;
  stopping_ = true;
  beast::error_code ignored;
  acceptor_.close(ignored);
  accept_retry_.cancel();
  auto snapshot = sessions_;
  for (auto& s : snapshot) s->Close(/*notify=*/false);
  sessions_.clear();
  fresh_.clear();
  connections_ = 0;
  stop_done_.clear();
  handler_ = nullptr;
}

}  // namespace internal

class Server::Impl : public internal::ServerCore {
 public:
  using ServerCore::ServerCore;
};

// ---- Server ----

Server::Server(asio::io_context& io, ServerOptions options, Handler handler)
    : impl_(std::make_shared<Impl>(io, options, std::move(handler))) {}

Server::~Server() { impl_->Shutdown(); }

absl::Status Server::Listen(const std::string& address) { return impl_->Listen(address); }

uint16_t Server::port() const { return impl_->port_.load(); }

void Server::Stop(std::function<void()> done) {
  impl_->stop_requested_.store(true, std::memory_order_relaxed);
  asio::post(impl_->io_,
             [impl = impl_, done = std::move(done)]() mutable { impl->Stop(std::move(done)); });
}

size_t Server::connections() const { return impl_->connections_.load(std::memory_order_relaxed); }

uint64_t Server::accepted_connections() const {
  return impl_->accepted_.load(std::memory_order_relaxed);
}

uint64_t Server::requests() const { return impl_->requests_.load(std::memory_order_relaxed); }

uint64_t Server::evicted_connections() const {
  return impl_->evicted_.load(std::memory_order_relaxed);
}

absl::Status ServeConnectionForTesting(asio::io_context& io, int fd, ServerOptions options,
                                       Handler handler) {
  // asio does not check the address family of an adopted descriptor, so an AF_UNIX stream
  // socket works as a tcp::socket for everything a Session does (read, write, shutdown).
  internal::tcp::socket socket(io);
  boost::system::error_code ec;
  socket.assign(internal::tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    return palm::InvalidArgument("cannot serve descriptor " + std::to_string(fd) + ": " +
                                 ec.message());
  }
  auto core = std::make_shared<internal::ServerCore>(io, options, std::move(handler));
  // The session keeps `core` alive; no acceptor is opened.
  core->Admit(std::move(socket), /*out_of_fds=*/false, "test-peer");
  return absl::OkStatus();
}

}  // namespace palm::http
