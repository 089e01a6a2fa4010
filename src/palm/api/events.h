// GET /v1/events: the event list, and with follow=1 a Server-Sent Events stream
// (`id: SEQ`, `event: KIND`, `data: JSON`) that replays from `since` (or the Last-Event-ID
// header, which wins) and then streams new events as they become durable, without loss or
// duplicates. Without since/Last-Event-ID the stream starts at now. A comment line is sent
// every 15 s so idle proxies and dead peers are noticed. Event-loop thread only.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "palm/events/event_log.h"
#include "palm/http/server.h"
#include "palm/store/store.h"

namespace palm::api {

// Returns the list response, or status 0 when the exchange was turned into a stream.
absl::StatusOr<http::Response> ServeEvents(boost::asio::io_context& io, events::EventLog& log,
                                           store::Store& store, const std::string& tenant,
                                           const http::Request& req,
                                           const std::shared_ptr<http::Exchange>& ex);

// One SSE frame for an event document.
std::string SseFrame(const events::Json& event);

}  // namespace palm::api
