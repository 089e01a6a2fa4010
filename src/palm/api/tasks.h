// The task routes of docs/api.md (Tasks): /v1/tasks for clients, /v1/agent/tasks for
// agents, /v1/deployments/{name}/task-metrics. Bodies and queries are validated before the
// engine is asked; answers that wait for a commit or a long poll are sent through the
// Exchange (the route returns AlreadyAnswered()).
// Thread-safety: event-loop thread only, like the engine.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "palm/api/request.h"
#include "palm/http/server.h"
#include "palm/tasks/engine.h"

namespace palm::api {

class TaskRoutes {
 public:
  explicit TaskRoutes(tasks::TaskEngine& engine) : engine_(engine) {}

  // `seg` is the path after /v1, starting with "tasks".
  absl::StatusOr<http::Response> Client(const http::Request& req,
                                        const std::vector<std::string>& seg,
                                        const std::string& tenant,
                                        const std::shared_ptr<http::Exchange>& ex);
  // `seg` is the path after /v1, starting with "agent", "tasks".
  absl::StatusOr<http::Response> Agent(const http::Request& req,
                                       const std::vector<std::string>& seg,
                                       const std::string& tenant, const std::string& instance,
                                       const std::shared_ptr<http::Exchange>& ex);
  // The query of GET .../task-metrics, checked by the caller before the deployment lookup.
  static const QuerySpec& MetricsQuery();
  // GET /v1/deployments/{name}/task-metrics (the deployment is known to exist).
  absl::StatusOr<http::Response> Metrics(const http::Request& req, const std::string& tenant,
                                         const std::string& deployment);

 private:
  absl::StatusOr<http::Response> Submit(const http::Request& req, const std::string& tenant,
                                        const std::shared_ptr<http::Exchange>& ex);
  absl::StatusOr<http::Response> List(const http::Request& req, const std::string& tenant);
  absl::StatusOr<http::Response> Get(const http::Request& req, const std::string& tenant,
                                     const std::string& id,
                                     const std::shared_ptr<http::Exchange>& ex);

  // Long-polls the engine for the instance's next task; `answer` gets it (nullopt: none
  // came); engine errors are answered on `ex` directly.
  void Poll(const std::string& tenant, const std::string& instance, int64_t wait_s,
            const std::shared_ptr<http::Exchange>& ex,
            std::function<void(std::optional<model::Json>)> answer);

  tasks::TaskEngine& engine_;
};

}  // namespace palm::api
