#include "palm/api/events.h"

#include <charconv>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "boost/asio/steady_timer.hpp"
#include "palm/api/errors.h"
#include "palm/api/request.h"
#include "palm/base/error.h"
#include "palm/base/utf8.h"

namespace palm::api {
namespace {

constexpr size_t kDefaultLimit = 1000;
constexpr size_t kMaxLimit = 10000;

absl::StatusOr<int64_t> ParseSeq(std::string_view what, std::string_view text) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v < 0) {
    return InvalidArgument(absl::StrCat(std::string(what), ": must be an event seq (a number >= 0), got \"",
                                        ToValidUtf8(text, 64), "\""));
  }
  return v;
}

absl::Status SeqCursor(std::string_view name, std::string_view value) {
  return ParseSeq(name, value).status();
}

// One follower: replayed, then fed by the event log until the peer leaves.
class Follower : public std::enable_shared_from_this<Follower> {
 public:
  Follower(boost::asio::io_context& io, events::EventLog& log, std::string tenant,
           std::string deployment, std::shared_ptr<http::Exchange> ex, absl::Duration keepalive)
      : timer_(io), log_(log), tenant_(std::move(tenant)), deployment_(std::move(deployment)),
        ex_(std::move(ex)), keepalive_(absl::ToChronoNanoseconds(keepalive)) {}

  void Start() {
    std::weak_ptr<Follower> weak = shared_from_this();
    sub_ = log_.Subscribe([weak](const events::Json& e) {
      if (auto self = weak.lock()) self->OnEvent(e);
    });
    ex_->OnClose([self = shared_from_this()] { self->Stop(); });
    Keepalive();
  }

 private:
  void OnEvent(const events::Json& e) {
    if (events::EventLog::Matches(e, tenant_, deployment_)) ex_->Write(SseFrame(e));
  }

  void Keepalive() {
    // A write to a peer that is gone fails, which closes the connection (and Stop()s us
    // through OnClose) even when the peer's FIN was never read.
    timer_.expires_after(keepalive_);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->stopped_) return;
      self->ex_->Write(": keepalive\n\n");
      self->Keepalive();
    });
  }

  void Stop() {
    if (stopped_) return;
    stopped_ = true;
    log_.Unsubscribe(sub_);
    timer_.cancel();
  }

  boost::asio::steady_timer timer_;
  events::EventLog& log_;
  std::string tenant_, deployment_;
  std::shared_ptr<http::Exchange> ex_;
  std::chrono::nanoseconds keepalive_;
  uint64_t sub_ = 0;
  bool stopped_ = false;
};

}  // namespace

const QuerySpec& EventsQuery() {
  static const QuerySpec* spec = new QuerySpec{
      IntParam("limit", 1, static_cast<int64_t>(kMaxLimit)), CheckedParam("after", SeqCursor),
      CheckedParam("since", SeqCursor), EnumParam("order", {"asc", "desc"}),
      NameParam("deployment"), FlagParam("follow")};
  return *spec;
}

std::string SseFrame(const events::Json& event) {
  return absl::StrCat("id: ", event["seq"].get<int64_t>(), "\nevent: ",
                      event.value("kind", "Event"), "\ndata: ",
                      event.dump(-1, ' ', false, events::Json::error_handler_t::replace), "\n\n");
}

absl::StatusOr<http::Response> ServeEvents(boost::asio::io_context& io, events::EventLog& log,
                                           store::Store& store, const std::string& tenant,
                                           const http::Request& req,
                                           const std::shared_ptr<http::Exchange>& ex,
                                           absl::Duration keepalive) {
  std::string deployment = req.Query("deployment").value_or("");
  bool streaming = QueryFlag(req, "follow");
  std::optional<int64_t> since;
  // `after` is the cursor name of every other list (DESIGN.md section 5); `since` is the
  // events' own and wins when both are given.
  for (const char* name : {"after", "since"}) {
    if (auto s = req.Query(name)) {
      PALM_ASSIGN_OR_RETURN(since, ParseSeq(name, *s));
    }
  }
  if (std::string last = req.Header("last-event-id"); streaming && !last.empty()) {
    PALM_ASSIGN_OR_RETURN(since, ParseSeq("Last-Event-ID", last));
  }
  PALM_ASSIGN_OR_RETURN(int64_t n, QueryInt(req, "limit", 1, static_cast<int64_t>(kMaxLimit),
                                             static_cast<int64_t>(kDefaultLimit)));
  size_t limit = static_cast<size_t>(n);

  if (!streaming) {
    // Descending, `since` is the cursor the other way: events older than it (the `next` of
    // the previous page, which is its oldest item).
    const bool descending = req.Query("order").value_or("") == "desc";
    PALM_ASSIGN_OR_RETURN(
        auto items, log.List(store, tenant, deployment, since.value_or(0), limit, descending));
    events::Json next = items.size() == limit ? events::Json(items.back()["seq"]) : events::Json();
    return JsonResponse(200, {{"items", std::move(items)}, {"next", next}});
  }

  ex->BeginStream(200, "text/event-stream");
  ex->Write(": palm events\n\n");
  if (since) {
    // Replay in pages; nothing can be published in between (same thread).
    int64_t cursor = *since;
    while (true) {
      PALM_ASSIGN_OR_RETURN(auto page, log.List(store, tenant, deployment, cursor, kMaxLimit,
                                                /*descending=*/false));
      for (const auto& e : page) ex->Write(SseFrame(e));
      if (page.size() < kMaxLimit) break;
      cursor = page.back()["seq"].get<int64_t>();
    }
  }
  std::make_shared<Follower>(io, log, tenant, deployment, ex, keepalive)->Start();
  return AlreadyAnswered();
}

}  // namespace palm::api
