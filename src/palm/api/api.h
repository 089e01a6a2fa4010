// The v1 HTTP API (docs/api.md): authentication, routing, JSON mapping and the calls into
// the supervisor. One Api serves one daemon.
//
// Every /v1 call needs a bearer token: the admin token (its SHA-256 is compared in constant
// time) or an instance token, which is valid only for /v1/agent/* and only as its own
// instance. Bodies are JSON (no Content-Type is taken as JSON; another one is 415) read by
// the bounded parser, and each route checks its query against the parameters it declares
// (request.h); both before any lookup, so a bad request changes nothing. `?tenant=NAME`
// selects the admin's tenant (default "default"); an instance token acts in its own only.
// Thread-safety: event-loop thread only, like the supervisor it calls.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "palm/controller/supervisor.h"
#include "palm/events/event_log.h"
#include "palm/http/server.h"
#include "palm/store/store.h"
#include "palm/tasks/engine.h"

namespace palm::api {

struct ApiOptions {
  events::EventLog* events = nullptr;           // GET /v1/events
  store::Store* store = nullptr;                // for event history beyond the in-memory tail
  tasks::TaskEngine* tasks = nullptr;           // /v1/tasks, /v1/agent/tasks (null: no tasks)
  std::string admin_token_hash;                 // hex SHA-256 of the admin token
  std::function<model::Json()> daemon_info;     // GET /v1/daemon
  std::function<bool(std::string*)> ready;      // /readyz; false with a reason
  std::function<void(bool all)> request_stop;   // POST /v1/daemon/stop (called after replying)
  absl::Duration stream_keepalive = absl::Seconds(15);  // SSE comment interval (events)
};

class Api {
 public:
  Api(boost::asio::io_context& io, controller::Supervisor& supervisor, ApiOptions options);
  ~Api();
  // The http::Handler entry point.
  void Handle(http::Request req, std::shared_ptr<http::Exchange> ex);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace palm::api
