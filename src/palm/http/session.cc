// Session: one HTTP/1.1 connection of palm::http::Server (see server_core.h).
#include <algorithm>
#include <cstring>
#include <exception>

#include "absl/strings/str_cat.h"
#include "boost/asio/write.hpp"
#include "boost/beast/http/error.hpp"
#include "palm/http/server_core.h"
#include "palm/http/wire.h"

namespace palm::http::internal {
namespace {

// While a request is with its handler (or a response is being written) we keep reading only
// to notice EOF and to keep pipelined bytes; this caps what is buffered meanwhile.
constexpr size_t kMaxBufferedWhileBusy = 64 * 1024;
// A streaming client that stops reading is cut off once this much is queued for it.
constexpr size_t kMaxQueuedStreamBytes = 8 * 1024 * 1024;
// After an error response we drain (and discard) at most this much of the unread request so
// the client sees the response instead of a connection reset.
constexpr size_t kMaxLingerBytes = 8 * 1024 * 1024;
constexpr size_t kMaxWriteBatch = 16;

std::string_view SV(beast::string_view s) { return std::string_view(s.data(), s.size()); }

void AppendHex(std::string* out, uint64_t v) {
  static constexpr char kHex[] = "0123456789abcdef";
  char buf[20];
  char* end = buf + sizeof(buf);
  char* p = end;
  do {
    *--p = kHex[v & 0xf];
    v >>= 4;
  } while (v != 0);
  out->append(p, static_cast<size_t>(end - p));
}

void AppendStatusLine(std::string* out, unsigned status) {
  out->append("HTTP/1.1 ");
  AppendUint(out, status);
  out->push_back(' ');
  std::string_view reason = ReasonPhrase(status);
  out->append(reason.data(), reason.size());
  out->append("\r\nServer: palm\r\n");
}

class ExchangeImpl final : public Exchange {
 public:
  ExchangeImpl(std::shared_ptr<Session> session, uint64_t id)
      : session_(std::move(session)), id_(id) {}
  ~ExchangeImpl() override { session_->Dropped(id_); }
  void Respond(Response r) override { session_->Respond(id_, std::move(r)); }
  void BeginStream(unsigned status, std::string content_type) override {
    session_->BeginStream(id_, status, std::move(content_type));
  }
  void Write(std::string data) override { session_->Write(id_, std::move(data)); }
  void End() override { session_->End(id_); }
  bool Closed() const override { return session_->ClosedFor(id_); }
  void OnClose(std::function<void()> cb) override { session_->OnClose(id_, std::move(cb)); }

 private:
  std::shared_ptr<Session> session_;
  uint64_t id_;
};

}  // namespace

// ---- reading and parsing ----

void Session::MaybeRead() {
  if (reading_ || read_closed_ || state_ == State::kClosed) return;
  if (state_ != State::kRead && state_ != State::kLinger && buf_.size() >= kMaxBufferedWhileBusy) {
    return;
  }
  reading_ = true;
  socket_.async_read_some(
      asio::buffer(scratch_.get(), kReadChunk),
      [self = shared_from_this()](const beast::error_code& ec, size_t n) { self->OnRead(ec, n); });
}

void Session::OnRead(const beast::error_code& ec, size_t n) {
  reading_ = false;
  if (state_ == State::kClosed) return;
  if (ec) {
    read_closed_ = true;
    if (state_ == State::kWrite) {
      // The peer half-closed while we answer: finish writing, then close.
      keep_alive_ = false;
      return;
    }
    Close();  // idle EOF, a partial request, or the peer left a pending exchange
    return;
  }
  if (state_ == State::kLinger) {
    linger_bytes_ += n;
    if (linger_bytes_ > kMaxLingerBytes) {
      Close();
    } else {
      MaybeRead();
    }
    return;
  }
  auto dst = buf_.prepare(n);
  std::memcpy(dst.data(), scratch_.get(), n);
  buf_.commit(n);
  if (state_ == State::kRead) {
    Process();
  } else {
    MaybeRead();
  }
}

void Session::Process() {
  while (state_ == State::kRead && buf_.size() > 0) {
    if (!parser_) {
      parser_.emplace();
      parser_->header_limit(
          static_cast<uint32_t>(std::min<size_t>(server_->options_.max_header_bytes, UINT32_MAX)));
      parser_->body_limit(server_->options_.max_body_bytes);
      header_checked_ = false;
      expect_continue_ = false;
      request_start_ = SteadyClock::now();
    }
    beast::error_code ec;
    size_t used = parser_->put(buf_.data(), ec);
    buf_.consume(used);
    if (ec == bhttp::error::need_more) {
      if (!CheckBuffered()) return;
      break;
    }
    if (ec) {
      OnParseError(ec);
      return;
    }
    if (!header_checked_ && parser_->is_header_done()) {
      header_checked_ = true;
      if (!CheckHeader()) return;
    }
    if (parser_->is_done()) {
      Dispatch();
      return;
    }
    if (used == 0) break;  // defensive: no progress means we need more bytes
  }
  if (state_ != State::kRead) return;
  if (parser_) {
    read_deadline_ = request_start_ + server_->read_timeout_;
    if (expect_continue_) {
      expect_continue_ = false;
      Queue("HTTP/1.1 100 Continue\r\n\r\n");
    }
  } else {
    if (Stopping()) {
      Close();
      return;
    }
    read_deadline_ = SteadyClock::now() + (fresh_pos ? server_->first_request_timeout_
                                                     : server_->idle_timeout_);
  }
  ArmTimer();
  MaybeRead();
}

bool Session::CheckBuffered() {
  // Unconsumed bytes are the start of a header section, of a chunk-size line (with its
  // extensions) or of a trailer section: the parser consumes body bytes as they come.
  // Beast 1.74 limits only the first, so without this a chunk header that never ends grows
  // the buffer until the read timeout.
  const size_t limit = server_->options_.max_header_bytes;
  if (buf_.size() <= limit) return true;
  if (!parser_->is_header_done()) {
    OnParseError(bhttp::error::header_limit);
  } else {
    SendError(400, "BAD_REQUEST",
              absl::StrCat("malformed chunked body: a chunk-size line or the trailer exceeds ",
                           limit, " bytes"),
              "send chunk sizes as short hex lines and keep trailers small");
  }
  return false;
}

bool Session::CheckHeader() {
  auto& h = parser_->get();
  parser_->eager(true);
  auto expect = h[bhttp::field::expect];
  if (!expect.empty()) {
    if (!EqualsIgnoreCase(SV(expect), "100-continue")) {
      SendError(417, "EXPECTATION_FAILED",
                "unsupported Expect header \"" + std::string(SV(expect)) + "\"",
                "only \"Expect: 100-continue\" is supported");
      return false;
    }
    // A body still to come: tell the client to send it (curl waits ~1s otherwise).
    expect_continue_ = h.version() >= 11 && !parser_->is_done();
  }
  return true;
}

void Session::OnParseError(const beast::error_code& ec) {
  const auto& o = server_->options_;
  if (ec == bhttp::error::body_limit) {
    SendError(413, "PAYLOAD_TOO_LARGE",
              absl::StrCat("request body exceeds ", o.max_body_bytes, " bytes"),
              "send a smaller body (split large changes into several requests)");
  } else if (ec == bhttp::error::header_limit) {
    SendError(431, "HEADERS_TOO_LARGE",
              absl::StrCat("request headers exceed ", o.max_header_bytes, " bytes"),
              "send fewer or shorter headers");
  } else {
    SendError(400, "BAD_REQUEST", "malformed HTTP request: " + ec.message(),
              "send HTTP/1.1 requests to this port");
  }
}

void Session::SendError(unsigned status, std::string_view code, const std::string& message,
                        std::string_view hint) {
  parser_.reset();
  expect_continue_ = false;
  keep_alive_ = false;
  unread_request_ = true;
  state_ = State::kWrite;
  read_deadline_ = kNever;
  std::string body = JsonError(code, message, hint);
  std::string head;
  head.reserve(160);
  AppendStatusLine(&head, status);
  head.append("Content-Type: application/json\r\nContent-Length: ");
  AppendUint(&head, body.size());
  head.append("\r\nConnection: close\r\n\r\n");
  Queue(std::move(head));
  Queue(std::move(body));
}

void Session::Dispatch() {
  auto msg = parser_->release();
  parser_.reset();
  expect_continue_ = false;
  read_deadline_ = kNever;

  Request req;
  req.method = std::string(SV(msg.method_string()));
  req.target = std::string(SV(msg.target()));
  SplitTarget(req.target, &req.path, &req.query);
  for (const auto& f : msg) {
    std::string name(SV(f.name_string()));
    for (char& c : name) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    req.headers.emplace_back(std::move(name), std::string(SV(f.value())));
  }
  req.body = std::move(msg.body());
  req.remote = remote_;

  keep_alive_ = msg.keep_alive();
  http10_ = msg.version() < 11;
  stream_ended_ = false;
  close_fired_ = false;
  close_cbs_.clear();
  ++exchange_id_;
  state_ = State::kHandler;
  server_->requests_.fetch_add(1, std::memory_order_relaxed);
  server_->MarkUsed(this);

  const uint64_t id = exchange_id_;
  {
    // Held here too so that a throwing handler is answered with its error, not as "dropped".
    auto ex = std::make_shared<ExchangeImpl>(shared_from_this(), id);
    try {
      server_->handler_(std::move(req), ex);
    } catch (const std::exception& e) {
      Respond(id, Response{500,
                           "application/json",
                           JsonError("INTERNAL", std::string("handler failed: ") + e.what(), ""),
                           {}});
    }
  }
  if (Awaiting()) MaybeRead();  // watch for the peer going away
}

// ---- responses ----

void Session::Respond(uint64_t id, Response r) {
  if (id != exchange_id_ || state_ != State::kHandler) return;
  close_cbs_.clear();
  bool close = !keep_alive_ || Stopping();
  const bool no_body = r.status < 200 || r.status == 204 || r.status == 304;

  std::string head;
  head.reserve(128 + r.content_type.size());
  AppendStatusLine(&head, r.status);
  if (!r.content_type.empty() && IsSafeHeaderText(r.content_type)) {
    head.append("Content-Type: ");
    head.append(r.content_type);
    head.append("\r\n");
  }
  for (const auto& [k, v] : r.headers) {
    if (k.empty() || !IsSafeHeaderText(k) || !IsSafeHeaderText(v)) continue;
    // Framing is ours.
    if (EqualsIgnoreCase(k, "content-length") || EqualsIgnoreCase(k, "transfer-encoding") ||
        EqualsIgnoreCase(k, "server") || EqualsIgnoreCase(k, "content-type")) {
      continue;
    }
    if (EqualsIgnoreCase(k, "connection")) {
      if (EqualsIgnoreCase(v, "close")) close = true;
      continue;
    }
    head.append(k);
    head.append(": ");
    head.append(v);
    head.append("\r\n");
  }
  if (!no_body) {
    head.append("Content-Length: ");
    AppendUint(&head, r.body.size());
    head.append("\r\n");
  }
  if (close) {
    head.append("Connection: close\r\n");
  } else if (http10_) {
    head.append("Connection: keep-alive\r\n");
  }
  head.append("\r\n");
  keep_alive_ = !close;
  state_ = State::kWrite;
  if (!no_body && !r.body.empty()) {
    if (r.body.size() <= 2048) {
      head.append(r.body);  // one buffer beats a gather write for small bodies
      Queue(std::move(head));
    } else {
      Queue(std::move(head));
      Queue(std::move(r.body));
    }
  } else {
    Queue(std::move(head));
  }
}

void Session::BeginStream(uint64_t id, unsigned status, std::string content_type) {
  if (id != exchange_id_ || state_ != State::kHandler) return;
  chunked_ = !http10_;
  if (!chunked_ || Stopping()) keep_alive_ = false;
  std::string head;
  head.reserve(192);
  AppendStatusLine(&head, status);
  if (!content_type.empty() && IsSafeHeaderText(content_type)) {
    head.append("Content-Type: ");
    head.append(content_type);
    head.append("\r\n");
  }
  head.append("Cache-Control: no-cache\r\n");
  if (chunked_) head.append("Transfer-Encoding: chunked\r\n");
  if (!keep_alive_) head.append("Connection: close\r\n");
  head.append("\r\n");
  state_ = State::kStream;
  stream_ended_ = false;
  Queue(std::move(head));
  if (server_->stopping_) End(id);
}

void Session::Write(uint64_t id, std::string data) {
  if (id != exchange_id_ || state_ != State::kStream || stream_ended_ || data.empty()) return;
  if (queued_bytes_ + data.size() > kMaxQueuedStreamBytes) {
    Close();  // the client stopped reading
    return;
  }
  if (!chunked_) {
    Queue(std::move(data));
    return;
  }
  std::string chunk;
  chunk.reserve(data.size() + 24);
  AppendHex(&chunk, data.size());
  chunk.append("\r\n");
  chunk.append(data);
  chunk.append("\r\n");
  Queue(std::move(chunk));
}

void Session::End(uint64_t id) {
  if (id != exchange_id_ || state_ != State::kStream || stream_ended_) return;
  stream_ended_ = true;
  close_cbs_.clear();
  if (chunked_) {
    Queue("0\r\n\r\n");
  } else if (!writing_) {
    OnDrained();
  }
}

void Session::OnClose(uint64_t id, std::function<void()> cb) {
  if (id != exchange_id_ || !cb) return;
  if (close_fired_) {
    cb();  // already closed before an answer: tell the late subscriber right away
    return;
  }
  if (Awaiting() && state_ != State::kClosed) close_cbs_.push_back(std::move(cb));
}

void Session::Dropped(uint64_t id) {
  if (id != exchange_id_ || state_ == State::kClosed) return;
  if (state_ == State::kHandler) {
    // Nobody will answer; do not leave the client hanging.
    if (Stopping()) {
      Respond(id, Response{503,
                           "application/json",
                           JsonError("UNAVAILABLE", "the server is shutting down", ""),
                           {}});
    } else {
      Respond(id, Response{500,
                           "application/json",
                           JsonError("INTERNAL", "the request was dropped without a response", ""),
                           {}});
    }
  } else if (state_ == State::kStream && !stream_ended_) {
    End(id);
  }
}

// ---- writing ----

void Session::Queue(std::string s) {
  if (state_ == State::kClosed) return;
  queued_bytes_ += s.size();
  out_.push_back(std::move(s));
  if (!writing_) StartWrite();
}

void Session::StartWrite() {
  wbufs_.clear();
  size_t k = 0;
  for (const auto& s : out_) {
    if (k == kMaxWriteBatch) break;
    wbufs_.emplace_back(s.data(), s.size());
    ++k;
  }
  in_flight_ = k;
  writing_ = true;
  write_deadline_ = SteadyClock::now() + server_->read_timeout_;
  ArmTimer();
  asio::async_write(
      socket_, wbufs_,
      [self = shared_from_this()](const beast::error_code& ec, size_t) { self->OnWrite(ec); });
}

void Session::OnWrite(const beast::error_code& ec) {
  writing_ = false;
  write_deadline_ = kNever;
  if (state_ == State::kClosed) return;
  if (ec) {
    Close();
    return;
  }
  for (size_t i = 0; i < in_flight_; ++i) {
    queued_bytes_ -= out_.front().size();
    out_.pop_front();
  }
  in_flight_ = 0;
  if (!out_.empty()) {
    StartWrite();
    return;
  }
  OnDrained();
}

void Session::OnDrained() {
  if (state_ == State::kWrite || (state_ == State::kStream && stream_ended_)) ResponseDone();
}

void Session::ResponseDone() {
  if (!keep_alive_ || Stopping()) {
    GracefulClose();
    return;
  }
  state_ = State::kRead;
  Process();
}

void Session::GracefulClose() {
  beast::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
  if (read_closed_ || (!unread_request_ && buf_.size() == 0)) {
    Close();
    return;
  }
  // The client may still be sending (the rest of a rejected body, pipelined requests):
  // drain and discard it for a while so it reads our response instead of a reset.
  state_ = State::kLinger;
  buf_.consume(buf_.size());
  read_deadline_ = SteadyClock::now() + server_->linger_;
  ArmTimer();
  MaybeRead();
}

// ---- closing and timeouts ----

void Session::FireClose() {
  if (close_fired_ || !Awaiting()) return;
  close_fired_ = true;
  auto cbs = std::move(close_cbs_);
  close_cbs_.clear();
  for (auto& cb : cbs) cb();
}

void Session::Close(bool notify) {
  if (state_ == State::kClosed) return;
  auto self = shared_from_this();
  const bool was_awaiting = Awaiting();
  state_ = State::kClosed;
  beast::error_code ignored;
  socket_.close(ignored);
  timer_.cancel();
  parser_.reset();
  server_->Remove(this);
  if (notify && was_awaiting && !close_fired_) {
    close_fired_ = true;
    auto cbs = std::move(close_cbs_);
    close_cbs_.clear();
    for (auto& cb : cbs) cb();
  } else {
    close_cbs_.clear();
  }
}

void Session::OnServerStop() {
  switch (state_) {
    case State::kRead:
      Close();  // idle, or a request that has not fully arrived
      break;
    case State::kHandler:
      keep_alive_ = false;
      FireClose();  // the answer, whenever it comes, carries "Connection: close"
      break;
    case State::kStream:
      keep_alive_ = false;
      FireClose();
      End(exchange_id_);
      break;
    case State::kWrite:
      keep_alive_ = false;
      break;
    case State::kLinger:
    case State::kClosed:
      break;
  }
}

void Session::ArmTimer() {
  TimePoint d = std::min(read_deadline_, write_deadline_);
  if (d == kNever || (timer_armed_ && d >= timer_at_)) return;
  timer_armed_ = true;
  timer_at_ = d;
  timer_.expires_at(d);
  timer_.async_wait(
      [self = shared_from_this()](const beast::error_code& ec) { self->OnTimer(ec); });
}

void Session::OnTimer(const beast::error_code& ec) {
  if (ec == asio::error::operation_aborted || state_ == State::kClosed) return;
  timer_armed_ = false;
  TimePoint now = SteadyClock::now();
  if (now >= read_deadline_ || now >= write_deadline_) {
    Close();  // read, idle, write or linger timeout: close quietly
    return;
  }
  ArmTimer();
}

}  // namespace palm::http::internal
