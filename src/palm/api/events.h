// GET /v1/events: the event list, and with follow=1 a Server-Sent Events stream
// (`id: SEQ`, `event: KIND`, `data: JSON`) that replays from `since` (or the Last-Event-ID
// header, which wins) and then streams new events as they become durable, without loss or
// duplicates. Without since/Last-Event-ID the stream starts at now. A comment line
// (": keepalive") is sent every `keepalive` (15 s in the daemon) so idle proxies keep the
// stream open and a peer that went away is noticed (the write fails and the connection is
// closed and freed). Event-loop thread only.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "palm/api/request.h"
#include "palm/events/event_log.h"
#include "palm/http/server.h"
#include "palm/store/store.h"

namespace palm::api {

// The query GET /v1/events accepts: limit, after/since (seqs), order, deployment, follow.
const QuerySpec& EventsQuery();

// Returns the list response, or status 0 when the exchange was turned into a stream. The
// caller has checked the query against EventsQuery().
absl::StatusOr<http::Response> ServeEvents(boost::asio::io_context& io, events::EventLog& log,
                                           store::Store& store, const std::string& tenant,
                                           const http::Request& req,
                                           const std::shared_ptr<http::Exchange>& ex,
                                           absl::Duration keepalive = absl::Seconds(15));

// One SSE frame for an event document.
std::string SseFrame(const events::Json& event);

}  // namespace palm::api
