// Internals of palm::http::Server shared by server.cc and session.cc. Not part of the API:
// only those two files include it (server.cc also builds ServeConnectionForTesting on it).
//
// ServerCore owns the acceptor and the set of live Sessions; a Session is one connection
// (parsing, keep-alive, timeouts, the response queue). Everything runs on the loop thread
// except the atomics marked as such.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/string_body.hpp"
#include "palm/http/server.h"

namespace palm::http::internal {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

// Appends the decimal digits of `v` (header values without a locale or allocation).
void AppendUint(std::string* out, uint64_t v);
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;

inline constexpr TimePoint kNever = TimePoint::max();
// Bytes read per read_some; also the size of each connection's read scratch buffer.
inline constexpr size_t kReadChunk = 8 * 1024;

// Clamped to [0, 1 year] so that "now + d" cannot overflow.
SteadyClock::duration ToSteady(absl::Duration d);

class Session;

// The server's state; Server::Impl is this under the name the header declares (Session
// needs the type and cannot name Server's private member).
class ServerCore : public std::enable_shared_from_this<ServerCore> {
 public:
  ServerCore(asio::io_context& io, ServerOptions options, Handler handler)
      : io_(io),
        options_(options),
        handler_(std::move(handler)),
        acceptor_(io),
        accept_retry_(io),
        read_timeout_(ToSteady(options.read_timeout)),
        idle_timeout_(ToSteady(options.idle_timeout)),
        first_request_timeout_(ToSteady(options.first_request_timeout)),
        linger_(std::min<SteadyClock::duration>(ToSteady(options.read_timeout),
                                                std::chrono::seconds(2))) {}

  ~ServerCore();

  absl::Status Listen(const std::string& address);
  void Stop(std::function<void()> done);
  void Shutdown();
  void Remove(Session* s);
  // Starts serving an accepted socket. At the cap, or when `out_of_fds`, it first closes the
  // oldest never-used connection; with none it answers 503 and closes `socket` instead.
  // `remote` names the peer in Request::remote; empty: its address.
  void Admit(tcp::socket socket, bool out_of_fds, std::string remote = {});
  // A session completed its first request: it is no longer evictable.
  void MarkUsed(Session* s);

  asio::io_context& io_;
  const ServerOptions options_;
  Handler handler_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_;
  const SteadyClock::duration read_timeout_;
  const SteadyClock::duration idle_timeout_;
  const SteadyClock::duration first_request_timeout_;
  const SteadyClock::duration linger_;

  std::vector<std::shared_ptr<Session>> sessions_;
  // Sessions that have not completed a request, oldest first: the ones evicted at the cap.
  std::list<Session*> fresh_;
  // An open /dev/null held in reserve: when accept fails for want of descriptors it is
  // closed to accept (and answer) one connection, then reopened.
  int spare_fd_ = -1;
  bool stopping_ = false;
  // Set by Server::Stop() at once (any thread); the rest of Stop runs later on the loop.
  // Lets a handler that calls Stop() and then answers send "Connection: close".
  std::atomic<bool> stop_requested_{false};
  bool shut_down_ = false;
  std::vector<std::function<void()>> stop_done_;

  std::atomic<uint16_t> port_{0};
  std::atomic<size_t> connections_{0};
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> evicted_{0};

 private:
  void Accept();
  void OnAccept(const beast::error_code& ec, tcp::socket socket);
  // accept() failed with EMFILE/ENFILE: uses the spare descriptor to take one connection
  // off the backlog. False when that was impossible (then back off).
  bool AcceptWithSpareFd();
  void RetryAcceptSoon();
  bool EvictOldestFresh();
  void RejectBusy(tcp::socket& socket);
  void MaybeFinishStop();
};

// One connection. Lives on the loop thread. Reads are a single always-outstanding
// read_some into a scratch buffer whose bytes are appended to `buf_`; the request parser is
// fed from `buf_` only while no request is in flight, so responses stay in order, and EOF is
// noticed even while a handler holds the request (long-poll, SSE).
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<ServerCore> server, tcp::socket socket, std::string remote)
      : server_(std::move(server)),
        socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        remote_(std::move(remote)),
        scratch_(new char[kReadChunk]) {}

  size_t slot = 0;  // index in ServerCore::sessions_
  // Position in ServerCore::fresh_ while the session has not completed a request.
  std::optional<std::list<Session*>::iterator> fresh_pos;

  void Start() { Process(); }

  // Exchange entry points; `id` identifies the request the exchange was made for.
  void Respond(uint64_t id, Response r);
  void BeginStream(uint64_t id, unsigned status, std::string content_type);
  void Write(uint64_t id, std::string data);
  void End(uint64_t id);
  bool ClosedFor(uint64_t id) const {
    return state_ == State::kClosed || Stopping() || id != exchange_id_;
  }
  void OnClose(uint64_t id, std::function<void()> cb);
  void Dropped(uint64_t id);

  void OnServerStop();
  // Hard close. Fires OnClose callbacks of a pending exchange when `notify`.
  void Close(bool notify = true);

 private:
  enum class State { kRead, kHandler, kWrite, kStream, kLinger, kClosed };

  bool Stopping() const {
    return server_->stopping_ || server_->stop_requested_.load(std::memory_order_relaxed);
  }
  bool Awaiting() const {
    return state_ == State::kHandler || (state_ == State::kStream && !stream_ended_);
  }

  void Process();
  bool CheckHeader();
  // The parser needs more bytes but holds `buf_.size()` unconsumed ones: answers an error
  // and returns false when that is more than a request may buffer.
  bool CheckBuffered();
  void Dispatch();
  void SendError(unsigned status, std::string_view code, const std::string& message,
                 std::string_view hint);
  void OnParseError(const beast::error_code& ec);

  void MaybeRead();
  void OnRead(const beast::error_code& ec, size_t n);

  void Queue(std::string s);
  void StartWrite();
  void OnWrite(const beast::error_code& ec);
  void OnDrained();
  void ResponseDone();
  void GracefulClose();

  void ArmTimer();
  void OnTimer(const beast::error_code& ec);
  void FireClose();

  std::shared_ptr<ServerCore> server_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  std::string remote_;

  State state_ = State::kRead;
  beast::flat_buffer buf_;
  std::unique_ptr<char[]> scratch_;
  bool reading_ = false;
  bool read_closed_ = false;  // EOF or error seen; no more reads
  size_t linger_bytes_ = 0;
  bool unread_request_ = false;  // closing with part of a request unread (error answers)

  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bool header_checked_ = false;
  bool expect_continue_ = false;
  TimePoint request_start_;

  // Current exchange.
  uint64_t exchange_id_ = 0;
  bool keep_alive_ = true;
  bool http10_ = false;
  bool chunked_ = false;
  bool stream_ended_ = false;
  bool close_fired_ = false;
  std::vector<std::function<void()>> close_cbs_;

  // Output queue; elements stay put while written (deque never moves them on push_back).
  std::deque<std::string> out_;
  std::vector<asio::const_buffer> wbufs_;
  size_t in_flight_ = 0;
  size_t queued_bytes_ = 0;
  bool writing_ = false;

  // Lazy timer: deadlines are plain fields; the timer is re-armed only when a deadline moves
  // earlier than the pending wait, and re-checks the fields when it fires.
  TimePoint read_deadline_ = kNever;
  TimePoint write_deadline_ = kNever;
  TimePoint timer_at_ = kNever;
  bool timer_armed_ = false;
};

}  // namespace palm::http::internal
