// Serving instance logs over HTTP: the last N lines, and `follow` streaming of what the
// agent appends (across rotation by rename or copy-truncate). Event-loop thread only.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "palm/api/request.h"
#include "palm/http/server.h"

namespace palm::api {

// The last `n` lines of the file at `path` (reads at most the last 4 MiB). A missing file
// is an empty log.
absl::StatusOr<std::string> TailLines(const std::string& path, size_t n);

// The query GET .../logs accepts: tail (0..100000 lines), follow (a flag).
const QuerySpec& LogsQuery();

// GET .../logs?tail=N[&follow=1] (the caller has checked the query against LogsQuery()).
// Without follow: a text/plain response. With follow: the tail is streamed, then new bytes
// as they are appended (checked every 200 ms; across a rotation by rename the old file is
// read to its end before the new one, so bytes written around a rotation are not lost), until the client goes away (the follower is
// freed when the connection closes); the returned response then has status 0 (already
// answered). The stream carries the agent's output bytes and nothing else, so unlike the
// events stream it has no in-band keepalive: a peer that leaves is noticed by the server's
// read on the connection.
absl::StatusOr<http::Response> ServeLogs(boost::asio::io_context& io, const std::string& path,
                                         const http::Request& req,
                                         const std::shared_ptr<http::Exchange>& ex);

}  // namespace palm::api
