#include "palm/api/tasks.h"

#include "absl/strings/str_cat.h"
#include "palm/api/errors.h"
#include "palm/api/request.h"
#include "palm/base/error.h"
#include "palm/model/task.h"

namespace palm::api {

using model::Json;

namespace {

constexpr int64_t kMaxWaitS = 60;
constexpr int64_t kDefaultAgentWaitS = 30;
constexpr int64_t kMaxListLimit = 1000;

absl::Status TaskStateValue(std::string_view name, std::string_view value) {
  model::TaskState parsed;
  if (model::ParseTaskState(value, &parsed)) return absl::OkStatus();
  return InvalidArgument(absl::StrCat(std::string(name), ": unknown task state \"", std::string(value), "\""),
                         "one of Queued, Assigned, Succeeded, Failed, TimedOut, Cancelled");
}

absl::Status TaskIdCursor(std::string_view name, std::string_view value) {
  int64_t seq = 0;
  if (model::ParseTaskId(value, &seq)) return absl::OkStatus();
  return InvalidArgument(absl::StrCat(std::string(name), ": \"", std::string(value), "\" is not a task id"),
                         "pass the `next` value of the previous page");
}

const QuerySpec kNoQuery = {};
// A task id cursor is positional (ids grow), so a task deleted since the previous page is
// not a problem here.
const QuerySpec kListQuery =
    Concat(ListParams(kMaxListLimit, TaskIdCursor),
           {NameParam("deployment"), CheckedParam("state", TaskStateValue)});
const QuerySpec kGetQuery = {IntParam("wait_s", 0, kMaxWaitS, "seconds")};
const QuerySpec kNextQuery = {IntParam("wait_s", 0, kMaxWaitS, "seconds")};
const QuerySpec kResultQuery = {IntParam("next_wait_s", 0, kMaxWaitS, "seconds")};

// Answers `ex` with the task (or the error) once the engine calls back.
tasks::TaskCallback RespondWithTask(std::shared_ptr<http::Exchange> ex, unsigned status) {
  return [ex = std::move(ex), status](absl::StatusOr<model::Task> t) {
    ex->Respond(t.ok() ? JsonResponse(status, model::ToJson(*t)) : ErrorResponse(t.status()));
  };
}

}  // namespace

absl::StatusOr<http::Response> TaskRoutes::Client(const http::Request& req,
                                                  const std::vector<std::string>& seg,
                                                  const std::string& tenant,
                                                  const std::shared_ptr<http::Exchange>& ex) {
  const std::string& m = req.method;
  if (seg.size() == 1) {
    if (m == "POST") return Submit(req, tenant, ex);
    if (m == "GET") return List(req, tenant);
  } else if (seg.size() == 2 && m == "GET") {
    return Get(req, tenant, seg[1], ex);
  } else if (seg.size() == 3 && seg[2] == "cancel" && m == "POST") {
    PALM_RETURN_IF_ERROR(ValidateQuery(req, kNoQuery));
    engine_.Cancel(tenant, seg[1], RespondWithTask(ex, 200));
    return AlreadyAnswered();
  }
  return Error(absl::StatusCode::kNotFound, "ROUTE_NOT_FOUND",
               absl::StrCat("no such endpoint: ", m, " ", req.path),
               "see docs/api.md (Tasks) for the endpoints and their methods");
}

absl::StatusOr<http::Response> TaskRoutes::Submit(const http::Request& req,
                                                  const std::string& tenant,
                                                  const std::shared_ptr<http::Exchange>& ex) {
  PALM_RETURN_IF_ERROR(ValidateQuery(req, kNoQuery));
  PALM_ASSIGN_OR_RETURN(Json body, ParseBody(req));
  PALM_ASSIGN_OR_RETURN(model::TaskRequest task, model::TaskRequestFromJson(body));
  engine_.Submit(tenant, std::move(task), [ex](absl::StatusOr<model::Task> t, bool created) {
    ex->Respond(t.ok() ? JsonResponse(created ? 201 : 200, model::ToJson(*t))
                       : ErrorResponse(t.status()));
  });
  return AlreadyAnswered();
}

absl::StatusOr<http::Response> TaskRoutes::List(const http::Request& req,
                                                const std::string& tenant) {
  PALM_RETURN_IF_ERROR(ValidateQuery(req, kListQuery));
  store::TaskQuery q;
  q.tenant = tenant;
  q.deployment = req.Query("deployment").value_or("");
  if (std::optional<std::string> state = req.Query("state")) {
    model::TaskState parsed;
    model::ParseTaskState(*state, &parsed);  // checked by ValidateQuery
    q.state = std::string(model::ToString(parsed));
  }
  if (std::optional<std::string> after = req.Query("after")) {
    model::ParseTaskId(*after, &q.after_seq);  // checked by ValidateQuery
  }
  q.descending = req.Query("order").value_or("") == "desc";
  PALM_ASSIGN_OR_RETURN(int64_t limit, QueryInt(req, "limit", 1, kMaxListLimit, 100));
  q.limit = static_cast<size_t>(limit);
  PALM_ASSIGN_OR_RETURN(std::vector<model::Task> tasks, engine_.List(q));
  Json items = Json::array();
  for (const model::Task& t : tasks) items.push_back(model::ToJson(t));
  Json next = tasks.size() == q.limit ? Json(tasks.back().id) : Json();
  return JsonResponse(200, {{"items", std::move(items)}, {"next", next}});
}

absl::StatusOr<http::Response> TaskRoutes::Get(const http::Request& req,
                                               const std::string& tenant, const std::string& id,
                                               const std::shared_ptr<http::Exchange>& ex) {
  PALM_RETURN_IF_ERROR(ValidateQuery(req, kGetQuery));
  PALM_ASSIGN_OR_RETURN(int64_t wait_s, QueryInt(req, "wait_s", 0, kMaxWaitS, 0, "seconds"));
  if (wait_s == 0) {
    PALM_ASSIGN_OR_RETURN(model::Task t, engine_.Get(tenant, id));
    return JsonResponse(200, model::ToJson(t));
  }
  engine_.Await(tenant, id, absl::Seconds(wait_s), RespondWithTask(ex, 200));
  return AlreadyAnswered();
}

absl::StatusOr<http::Response> TaskRoutes::Agent(const http::Request& req,
                                                 const std::vector<std::string>& seg,
                                                 const std::string& tenant,
                                                 const std::string& instance,
                                                 const std::shared_ptr<http::Exchange>& ex) {
  if (seg.size() == 3 && seg[2] == "next" && req.method == "GET") {
    PALM_RETURN_IF_ERROR(ValidateQuery(req, kNextQuery));
    PALM_ASSIGN_OR_RETURN(int64_t wait_s, QueryInt(req, "wait_s", 0, kMaxWaitS,
                                                   kDefaultAgentWaitS, "seconds"));
    Poll(tenant, instance, wait_s, ex, [ex](std::optional<Json> task) {
      if (!task) {
        http::Response none;
        none.status = 204;
        return ex->Respond(std::move(none));
      }
      ex->Respond(JsonResponse(200, *task));
    });
    return AlreadyAnswered();
  }
  if (seg.size() == 4 && seg[3] == "result" && req.method == "POST") {
    // ?next_wait_s=N: once the result is durable, the answer also carries the agent's next
    // task (long-polled up to N s): one round trip per task instead of two.
    PALM_RETURN_IF_ERROR(ValidateQuery(req, kResultQuery));
    std::optional<int64_t> next_wait_s;
    if (req.Query("next_wait_s")) {
      PALM_ASSIGN_OR_RETURN(next_wait_s,
                            QueryInt(req, "next_wait_s", 0, kMaxWaitS, 0, "seconds"));
    }
    PALM_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    PALM_ASSIGN_OR_RETURN(model::TaskResult result, model::TaskResultFromJson(body));
    std::string id = seg[2];
    engine_.Complete(
        tenant, instance, id, std::move(result),
        [this, ex, tenant, instance, id, next_wait_s](absl::StatusOr<model::TaskState> state) {
          if (!state.ok()) return ex->Respond(ErrorResponse(state.status()));
          Json answer = {{"id", id}, {"state", model::ToString(*state)}, {"accepted", true}};
          if (!next_wait_s) return ex->Respond(JsonResponse(200, answer));
          Poll(tenant, instance, *next_wait_s, ex,
               [ex, answer = std::move(answer)](std::optional<Json> task) mutable {
                 answer["next"] = task ? std::move(*task) : Json();
                 ex->Respond(JsonResponse(200, answer));
               });
        });
    return AlreadyAnswered();
  }
  return Error(absl::StatusCode::kNotFound, "ROUTE_NOT_FOUND",
               absl::StrCat("no such endpoint: ", req.method, " ", req.path),
               "agents call GET /v1/agent/tasks/next and POST /v1/agent/tasks/{id}/result");
}

void TaskRoutes::Poll(const std::string& tenant, const std::string& instance, int64_t wait_s,
                      const std::shared_ptr<http::Exchange>& ex,
                      std::function<void(std::optional<Json>)> answer) {
  uint64_t poll = engine_.Next(
      tenant, instance, absl::Seconds(wait_s),
      [ex, answer = std::move(answer)](absl::StatusOr<std::optional<Json>> task) {
        if (!task.ok()) return ex->Respond(ErrorResponse(task.status()));
        answer(std::move(*task));
      });
  // An agent that hangs up while waiting must not be handed a task nobody will read.
  if (poll != 0) ex->OnClose([this, poll] { engine_.CancelPoll(poll); });
}

const QuerySpec& TaskRoutes::MetricsQuery() {
  static const QuerySpec* spec = new QuerySpec{
      IntParam("window_s", 1, absl::ToInt64Seconds(tasks::kMaxWindow), "seconds")};
  return *spec;
}

absl::StatusOr<http::Response> TaskRoutes::Metrics(const http::Request& req,
                                                   const std::string& tenant,
                                                   const std::string& deployment) {
  int64_t max_window = absl::ToInt64Seconds(tasks::kMaxWindow);
  PALM_ASSIGN_OR_RETURN(int64_t window_s,
                        QueryInt(req, "window_s", 1, max_window, 60, "seconds"));
  Json revisions = Json::object();
  Json summary = engine_.DeploymentTasks(tenant, deployment);
  if (summary.contains("revisions")) {
    for (const auto& [rev, unused] : summary["revisions"].items()) {
      revisions[rev] = engine_
                           .RevisionStats(tenant, deployment, std::stoll(rev),
                                          absl::Seconds(window_s))
                           .ToJson();
    }
  }
  tasks::QueueStats q = engine_.Queue(tenant, deployment);
  return JsonResponse(200, {{"deployment", deployment},
                            {"window_s", window_s},
                            {"queue",
                             {{"queued", q.queued},
                              {"assigned", q.assigned},
                              {"waiting_agents", q.waiting_agents}}},
                            {"revisions", revisions}});
}

}  // namespace palm::api
