#include "palm/http/client.h"

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>

#include "absl/strings/str_cat.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/http/buffer_body.hpp"
#include "boost/beast/http/error.hpp"
#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/read.hpp"
#include "boost/beast/http/string_body.hpp"
#include "boost/beast/http/write.hpp"
#include "nlohmann/json.hpp"
#include "palm/base/error.h"
#include "palm/http/wire.h"

namespace palm::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr std::string_view kUnreachableHint = "is it running? try `palm daemon start`";

absl::StatusCode StatusCodeForHttp(unsigned status) {
  switch (status) {
    case 400:
    case 413:
    case 415:
    case 422:
    case 431:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 409:
      return absl::StatusCode::kAlreadyExists;
    case 412:
      return absl::StatusCode::kFailedPrecondition;
    case 429:
      return absl::StatusCode::kResourceExhausted;
    case 501:
      return absl::StatusCode::kUnimplemented;
    case 503:
      return absl::StatusCode::kUnavailable;
    case 504:
      return absl::StatusCode::kDeadlineExceeded;
    default:
      return status >= 500 ? absl::StatusCode::kInternal : absl::StatusCode::kUnknown;
  }
}

bool Retryable(const beast::error_code& ec) {
  return ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::connection_aborted;
}

}  // namespace

absl::Status ErrorFromResponse(unsigned status, std::string_view body) {
  if (status >= 200 && status < 300) return absl::OkStatus();
  std::string code, message, hint;
  try {
    auto j = nlohmann::json::parse(body.begin(), body.end());
    const auto& e = j.at("error");
    if (auto it = e.find("code"); it != e.end() && it->is_string()) code = *it;
    if (auto it = e.find("message"); it != e.end() && it->is_string()) message = *it;
    if (auto it = e.find("hint"); it != e.end() && it->is_string()) hint = *it;
  } catch (const std::exception&) {
    // Not the JSON error shape: fall back to the raw body below.
  }
  if (message.empty()) {
    message = absl::StrCat("HTTP ", status, " ", std::string(ReasonPhrase(status)));
    if (!body.empty()) {
      message += ": " + std::string(body.substr(0, 200));
    }
  }
  return palm::Error(StatusCodeForHttp(status), code, message, hint);
}

class Client::Impl {
 public:
  Impl(std::string endpoint, std::string token, absl::Duration timeout)
      : token_(std::move(token)), timeout_abs_(timeout) {
    if (timeout < absl::Milliseconds(1)) timeout_abs_ = absl::Milliseconds(1);
    if (timeout_abs_ > absl::Hours(24 * 365)) timeout_abs_ = absl::Hours(24 * 365);
    timeout_ = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        absl::ToChronoNanoseconds(timeout_abs_));
    init_ = ParseEndpoint(std::move(endpoint));
  }

  ~Impl() { Drop(); }

  absl::StatusOr<ClientResponse> Do(const std::string& method, const std::string& target,
                                    const std::string& body);
  absl::Status Stream(const std::string& target,
                      const std::function<bool(std::string_view)>& on_data);

 private:
  absl::Status ParseEndpoint(std::string endpoint);
  absl::Status Connect();
  // Reuses the kept connection when the server has not closed it, else connects. Sets
  // `*reused` to whether an old connection is used (a failure on it earns one retry).
  absl::Status EnsureConnected(bool* reused);
  bool StillOpen();
  void Drop();
  void RunLoop() {
    io_.restart();
    io_.run();
  }
  absl::Status TransportError(const beast::error_code& ec, std::string_view doing);
  bhttp::request<bhttp::string_body> MakeRequest(const std::string& method,
                                                 const std::string& target,
                                                 const std::string& body) const;
  void Send(const bhttp::request<bhttp::string_body>& req, beast::error_code* ec);

  absl::Status init_;
  std::string endpoint_;  // "http://host:port", for messages
  std::string host_;
  std::string port_;
  std::string host_header_;
  std::string token_;
  absl::Duration timeout_abs_;
  std::chrono::steady_clock::duration timeout_{};

  asio::io_context io_{1};
  std::optional<tcp::resolver::results_type> resolved_;
  std::optional<beast::tcp_stream> stream_;
  beast::flat_buffer buf_;
};

absl::Status Client::Impl::ParseEndpoint(std::string endpoint) {
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  std::string_view rest = endpoint;
  if (rest.substr(0, 8) == "https://") {
    return palm::InvalidArgument("cannot use " + endpoint + ": TLS not supported yet",
                                 "use an http:// endpoint");
  }
  if (rest.substr(0, 7) == "http://") {
    rest.remove_prefix(7);
  } else if (rest.find("://") != std::string_view::npos) {
    return palm::InvalidArgument("unsupported endpoint \"" + endpoint + "\"",
                                 "use http://host:port, e.g. http://127.0.0.1:7070");
  }
  if (rest.empty() || rest.find('/') != std::string_view::npos) {
    return palm::InvalidArgument("malformed endpoint \"" + endpoint + "\"",
                                 "use http://host:port, e.g. http://127.0.0.1:7070");
  }
  std::string hostport(rest);
  bool has_port = hostport.back() != ']' && hostport.find(':') != std::string::npos &&
                  (hostport.front() == '[' || hostport.find(':') == hostport.rfind(':'));
  auto hp = ParseHostPort(has_port ? hostport : hostport + ":80");
  if (!hp.ok()) {
    return palm::InvalidArgument(
        "malformed endpoint \"" + endpoint + "\": " + std::string(hp.status().message()),
        "use http://host:port, e.g. http://127.0.0.1:7070");
  }
  host_ = hp->host;
  port_ = std::to_string(hp->port);
  host_header_ = hostport;
  endpoint_ = "http://" + hostport;
  return absl::OkStatus();
}

absl::Status Client::Impl::TransportError(const beast::error_code& ec, std::string_view doing) {
  if (ec == beast::error::timeout) {
    return palm::Error(
        absl::StatusCode::kDeadlineExceeded, "TIMEOUT",
        absl::StrCat("the palm daemon at ", endpoint_, " did not answer within ",
                     absl::FormatDuration(timeout_abs_), " (", std::string(doing), ")"),
        "the daemon may be overloaded; retry or raise the timeout");
  }
  return palm::Error(
      absl::StatusCode::kUnavailable, "DAEMON_UNREACHABLE",
      absl::StrCat("cannot reach the palm daemon at ", endpoint_, ": ", ec.message()),
      kUnreachableHint);
}

void Client::Impl::Drop() {
  if (stream_) {
    beast::error_code ignored;
    stream_->socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_->socket().close(ignored);
    stream_.reset();
  }
  buf_.consume(buf_.size());
}

absl::Status Client::Impl::Connect() {
  Drop();
  beast::error_code ec;
  if (!resolved_) {
    tcp::resolver resolver(io_);
    auto results = resolver.resolve(host_, port_, ec);
    if (ec) return TransportError(ec, "resolving");
    resolved_ = std::move(results);
  }
  stream_.emplace(io_);
  stream_->expires_after(timeout_);
  ec = asio::error::would_block;
  stream_->async_connect(*resolved_,
                         [&ec](const beast::error_code& e, const tcp::endpoint&) { ec = e; });
  RunLoop();
  if (ec) {
    Drop();
    return TransportError(ec, "connecting");
  }
  beast::error_code ignored;
  stream_->socket().set_option(tcp::no_delay(true), ignored);
  return absl::OkStatus();
}

bool Client::Impl::StillOpen() {
  auto& sock = stream_->socket();
  beast::error_code ec;
  sock.non_blocking(true, ec);
  if (ec) return false;
  char c;
  sock.receive(asio::buffer(&c, 1), tcp::socket::message_peek, ec);
  beast::error_code ignored;
  sock.non_blocking(false, ignored);
  // Nothing to read is the healthy state; EOF, an error or unexpected bytes mean stale.
  return ec == asio::error::would_block || ec == asio::error::try_again;
}

absl::Status Client::Impl::EnsureConnected(bool* reused) {
  PALM_RETURN_IF_ERROR(init_);
  *reused = false;
  if (stream_ && buf_.size() == 0 && StillOpen()) {
    *reused = true;
    return absl::OkStatus();
  }
  return Connect();
}

bhttp::request<bhttp::string_body> Client::Impl::MakeRequest(const std::string& method,
                                                             const std::string& target,
                                                             const std::string& body) const {
  bhttp::request<bhttp::string_body> req;
  req.method_string(method);
  req.target(target);
  req.version(11);
  req.set(bhttp::field::host, host_header_);
  req.set(bhttp::field::user_agent, "palm-cli");
  if (!token_.empty()) req.set(bhttp::field::authorization, "Bearer " + token_);
  if (!body.empty()) {
    req.set(bhttp::field::content_type, "application/json");
    req.body() = body;
  }
  req.prepare_payload();
  return req;
}

void Client::Impl::Send(const bhttp::request<bhttp::string_body>& req, beast::error_code* ec) {
  stream_->expires_after(timeout_);
  *ec = asio::error::would_block;
  bhttp::async_write(*stream_, req, [ec](const beast::error_code& e, size_t) { *ec = e; });
  RunLoop();
}

absl::StatusOr<ClientResponse> Client::Impl::Do(const std::string& method,
                                                const std::string& target,
                                                const std::string& body) {
  auto req = MakeRequest(method, target, body);
  for (int attempt = 0;; ++attempt) {
    bool reused = false;
    PALM_RETURN_IF_ERROR(EnsureConnected(&reused));
    beast::error_code ec;
    Send(req, &ec);
    if (!ec) {
      bhttp::response_parser<bhttp::string_body> parser;
      // The daemon is trusted and lists can be large. (Not boost::none: Beast 1.74 compares
      // `len > body_limit_` and an empty optional is less than any length.)
      parser.body_limit(std::numeric_limits<std::uint64_t>::max());
      parser.header_limit(64 * 1024);
      stream_->expires_after(timeout_);
      ec = asio::error::would_block;
      bhttp::async_read(*stream_, buf_, parser,
                        [&ec](const beast::error_code& e, size_t) { ec = e; });
      RunLoop();
      if (!ec) {
        auto res = parser.release();
        ClientResponse out;
        out.status = res.result_int();
        auto ct = res[bhttp::field::content_type];
        out.content_type.assign(ct.data(), ct.size());
        out.body = std::move(res.body());
        if (!res.keep_alive()) {
          Drop();
        } else {
          stream_->expires_never();
        }
        return out;
      }
      const bool got_some = parser.got_some();
      Drop();
      // A kept connection the server closed just as we reused it: try once on a new one.
      if (reused && attempt == 0 && !got_some && Retryable(ec)) continue;
      return TransportError(ec, "reading the response");
    }
    Drop();
    if (reused && attempt == 0 && Retryable(ec)) continue;
    return TransportError(ec, "sending the request");
  }
}

absl::Status Client::Impl::Stream(const std::string& target,
                                  const std::function<bool(std::string_view)>& on_data) {
  auto req = MakeRequest("GET", target, "");
  std::optional<bhttp::response_parser<bhttp::buffer_body>> p;
  for (int attempt = 0;; ++attempt) {
    bool reused = false;
    PALM_RETURN_IF_ERROR(EnsureConnected(&reused));
    p.emplace();
    auto& parser = *p;
    beast::error_code ec;
    Send(req, &ec);
    if (!ec) {
      parser.body_limit(std::numeric_limits<std::uint64_t>::max());
      parser.header_limit(64 * 1024);
      stream_->expires_after(timeout_);
      ec = asio::error::would_block;
      bhttp::async_read_header(*stream_, buf_, parser,
                               [&ec](const beast::error_code& e, size_t) { ec = e; });
      RunLoop();
      if (!ec) break;
    }
    const bool got_some = parser.got_some();
    Drop();
    if (reused && attempt == 0 && !got_some && Retryable(ec)) continue;
    return TransportError(ec, "starting the stream");
  }
  auto& parser = *p;

  const unsigned status = parser.get().result_int();
  const bool ok_status = status >= 200 && status < 300;
  std::string error_body;  // collected for non-2xx answers
  char chunk[16 * 1024];
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof(chunk);
    parser.get().body().more = true;
    stream_->expires_after(timeout_);
    beast::error_code ec = asio::error::would_block;
    bhttp::async_read_some(*stream_, buf_, parser,
                           [&ec](const beast::error_code& e, size_t) { ec = e; });
    RunLoop();
    if (ec == bhttp::error::need_buffer) ec = {};
    const size_t got = sizeof(chunk) - parser.get().body().size;
    if (got > 0) {
      if (ok_status) {
        if (!on_data(std::string_view(chunk, got))) {
          Drop();  // the rest of the stream is unread: the connection cannot be reused
          return absl::OkStatus();
        }
      } else if (error_body.size() < 64 * 1024) {
        error_body.append(chunk, got);
      }
    }
    if (ec) {
      Drop();
      if (ec == bhttp::error::end_of_stream || ec == asio::error::eof) break;
      if (ec == beast::error::timeout) {
        return palm::Error(absl::StatusCode::kDeadlineExceeded, "TIMEOUT",
                           absl::StrCat("no data from the palm daemon at ", endpoint_, " for ",
                                        absl::FormatDuration(timeout_abs_)),
                           "");
      }
      if (ec == bhttp::error::partial_message) {
        return palm::Error(absl::StatusCode::kUnavailable, "DAEMON_UNREACHABLE",
                           absl::StrCat("the connection to the palm daemon at ", endpoint_,
                                        " was lost mid-stream"),
                           kUnreachableHint);
      }
      return TransportError(ec, "streaming");
    }
  }
  if (stream_) {
    if (parser.get().keep_alive()) {
      stream_->expires_never();
    } else {
      Drop();
    }
  }
  if (!ok_status) return ErrorFromResponse(status, error_body);
  return absl::OkStatus();
}

Client::Client(std::string endpoint, std::string token, absl::Duration timeout)
    : impl_(std::make_unique<Impl>(std::move(endpoint), std::move(token), timeout)) {}

Client::~Client() = default;

absl::StatusOr<ClientResponse> Client::Do(const std::string& method, const std::string& target,
                                          const std::string& body) {
  return impl_->Do(method, target, body);
}

absl::Status Client::Stream(const std::string& target,
                            const std::function<bool(std::string_view)>& on_data) {
  return impl_->Stream(target, on_data);
}

}  // namespace palm::http
