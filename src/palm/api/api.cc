#include "palm/api/api.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "boost/asio/post.hpp"
#include "palm/api/errors.h"
#include "palm/api/events.h"
#include "palm/api/heartbeat.h"
#include "palm/api/logs.h"
#include "palm/api/request.h"
#include "palm/api/tasks.h"
#include "palm/base/crypto.h"
#include "palm/base/error.h"
#include "palm/base/log.h"
#include "palm/base/names.h"
#include "palm/model/codec.h"

namespace palm::api {

using controller::DeploymentKey;
using model::Json;

namespace {

constexpr int64_t kMaxReplicas = 10000;
constexpr int64_t kMaxListLimit = 10000;

// ---- the query parameters of each route (docs/api.md); tenant is accepted by all ----

absl::Status SpecRefCursor(std::string_view name, std::string_view value) {
  std::string spec, version;
  return Annotate(model::ParseSpecRef(value, /*allow_bare=*/false, &spec, &version),
                  std::string(name));
}

absl::Status InstanceStateValue(std::string_view name, std::string_view value) {
  model::InstanceState parsed;
  if (model::ParseInstanceState(value, &parsed)) return absl::OkStatus();
  return InvalidArgument(absl::StrCat(std::string(name), ": unknown instance state \"", std::string(value), "\""),
                         "one of Pending, Starting, Running, Draining, Stopping, Stopped, "
                         "Failed, BackOff, Killed");
}

const QuerySpec kNoQuery = {};
const QuerySpec kListSpecsQuery =
    Concat(ListParams(kMaxListLimit, SpecRefCursor), {NameParam("name")});
const QuerySpec kListDeploymentsQuery = ListParams(kMaxListLimit, ValidateName);
const QuerySpec kListInstancesQuery =
    Concat(ListParams(kMaxListLimit, ValidateName),
           {NameParam("deployment"), CheckedParam("state", InstanceStateValue)});
const QuerySpec kUnhealthyQuery =
    Concat(ListParams(kMaxListLimit, ValidateName), {NameParam("deployment")});

struct Principal {
  bool admin = false;
  std::string tenant;
  std::string instance_id;  // set for instance tokens
};

}  // namespace

class Api::Impl {
 public:
  Impl(boost::asio::io_context& io, controller::Supervisor& sup, ApiOptions options)
      : io_(io), sup_(sup), options_(std::move(options)) {
    if (options_.tasks) task_routes_ = std::make_unique<TaskRoutes>(*options_.tasks);
  }

  void Handle(http::Request req, std::shared_ptr<http::Exchange> ex) {
    if ((req.path == "/healthz" || req.path == "/readyz") && !req.query.empty()) {
      if (auto st = ValidateQuery(req, kNoQuery); !st.ok()) return ex->Respond(ErrorResponse(st));
    }
    if (req.path == "/healthz") return ex->Respond(JsonResponse(200, {{"status", "ok"}}));
    if (req.path == "/readyz") {
      std::string reason;
      if (options_.ready && !options_.ready(&reason)) {
        return ex->Respond(JsonResponse(503, {{"status", "not ready"}, {"reason", reason}}));
      }
      return ex->Respond(JsonResponse(200, {{"status", "ready"}}));
    }
    std::vector<std::string> seg = absl::StrSplit(req.path, '/', absl::SkipEmpty());
    if (seg.empty() || seg[0] != "v1") {
      return ex->Respond(ErrorResponse(NotFound(
          "ROUTE_NOT_FOUND", absl::StrCat("no such endpoint: ", req.method, " ", req.path),
          "the API lives under /v1; see docs/api.md")));
    }
    auto principal = Authenticate(req);
    if (!principal.ok()) return ex->Respond(ErrorResponse(principal.status()));
    if (auto st = SelectTenant(req, *principal); !st.ok()) return ex->Respond(ErrorResponse(st));
    seg.erase(seg.begin());
    absl::StatusOr<http::Response> r = Route(req, seg, *principal, ex);
    if (!r.ok()) return ex->Respond(ErrorResponse(r.status()));
    if (r->status != 0) ex->Respond(std::move(*r));  // 0: AlreadyAnswered()
  }

 private:
  absl::StatusOr<Principal> Authenticate(const http::Request& req) {
    std::string auth = req.Header("authorization");
    constexpr std::string_view kBearer = "Bearer ";
    if (auth.size() <= kBearer.size() || !absl::StartsWithIgnoreCase(auth, "bearer ")) {
      return Error(absl::StatusCode::kUnauthenticated, "UNAUTHENTICATED",
                   "missing bearer token",
                   "send `Authorization: Bearer <token>`; the admin token is in "
                   "<data-dir>/admin.token");
    }
    std::string token = auth.substr(kBearer.size());
    if (ConstantTimeEquals(Sha256Hex(token), options_.admin_token_hash)) {
      return Principal{true, std::string(model::kDefaultTenant), ""};
    }
    if (auto inst = sup_.InstanceForToken(token)) {
      return Principal{false, inst->first, inst->second};
    }
    return Error(absl::StatusCode::kUnauthenticated, "UNAUTHENTICATED", "invalid token",
                 "use the token in <data-dir>/admin.token (or PALM_TOKEN for agents)");
  }

  // ?tenant=NAME (CommonQuery): the admin acts in that tenant; an instance token only in its
  // own.
  static absl::Status SelectTenant(const http::Request& req, Principal& p) {
    std::optional<std::string> tenant = req.Query("tenant");
    if (!tenant) return absl::OkStatus();
    PALM_RETURN_IF_ERROR(ValidateName("tenant", *tenant));
    if (p.admin) {
      p.tenant = *tenant;
    } else if (*tenant != p.tenant) {
      return Error(absl::StatusCode::kPermissionDenied, "FORBIDDEN",
                   absl::StrCat("an instance token of tenant ", p.tenant,
                                " may not act in tenant ", *tenant),
                   "leave tenant= out: agents act in their own tenant");
    }
    return absl::OkStatus();
  }

  static absl::Status MethodNotAllowed(const http::Request& req) {
    return Error(absl::StatusCode::kNotFound, "ROUTE_NOT_FOUND",
                 absl::StrCat("no such endpoint: ", req.method, " ", req.path),
                 "see docs/api.md for the endpoints and their methods");
  }

  absl::StatusOr<http::Response> Route(const http::Request& req,
                                       const std::vector<std::string>& seg, const Principal& p,
                                       const std::shared_ptr<http::Exchange>& ex) {
    const std::string& m = req.method;
    if (seg.size() >= 1 && seg[0] == "agent") return AgentRoute(req, seg, p, ex);
    if (!p.admin) {
      return Error(absl::StatusCode::kPermissionDenied, "FORBIDDEN",
                   "an instance token may only call /v1/agent/* endpoints",
                   "use the admin token for management calls");
    }
    const std::string& t = p.tenant;
    // Each branch checks its query (ValidateQuery) before anything else.
    if (seg.size() == 1 && seg[0] == "specs") {
      if (m == "GET") return ListSpecs(req, t);
      if (m == "POST") return RegisterSpec(req, t);
    } else if (seg.size() >= 2 && seg[0] == "specs") {
      std::string version = seg.size() >= 3 ? seg[2] : "";
      if (seg.size() <= 3 && m == "GET") {
        PALM_RETURN_IF_ERROR(ValidateQuery(req, kNoQuery));
        PALM_ASSIGN_OR_RETURN(const model::AgentSpec* spec, sup_.GetSpec(t, seg[1], version));
        return JsonResponse(200, model::ToJson(*spec));
      }
      if (seg.size() == 4 && seg[3] == "deprecate" && m == "POST") {
        PALM_RETURN_IF_ERROR(ValidateQuery(req, kNoQuery));
        PALM_ASSIGN_OR_RETURN(model::AgentSpec spec, sup_.DeprecateSpec(t, seg[1], version));
        return JsonResponse(200, model::ToJson(spec));
      }
    } else if (seg.size() == 1 && seg[0] == "deployments") {
      if (m == "GET") return ListDeployments(req, t);
      if (m == "POST") return CreateDeployment(req, t);
    } else if (seg.size() == 2 && seg[0] == "deployments") {
      DeploymentKey key{t, seg[1]};
      if (m == "GET" || m == "PUT" || m == "DELETE") {
        PALM_RETURN_IF_ERROR(ValidateQuery(req, kNoQuery));
      }
      if (m == "GET") {
        PALM_ASSIGN_OR_RETURN(const model::Deployment* d, sup_.GetDeployment(key));
        return JsonResponse(200, DeploymentJson(*d));
      }
      if (m == "PUT") return ApplyDeployment(req, t, seg[1]);
      if (m == "DELETE") {
        PALM_ASSIGN_OR_RETURN(model::Deployment d, sup_.DeleteDeployment(key));
        return JsonResponse(200, model::ToJson(d));
      }
    } else if (seg.size() == 3 && seg[0] == "deployments") {
      return DeploymentAction(req, {t, seg[1]}, seg[2]);
    } else if (seg.size() >= 1 && seg[0] == "tasks" && task_routes_) {
      return task_routes_->Client(req, seg, t, ex);
    } else if (seg.size() == 1 && seg[0] == "instances" && m == "GET") {
      return ListInstances(req, t);
    } else if (seg.size() == 2 && seg[0] == "instances" && m == "GET") {
      PALM_RETURN_IF_ERROR(ValidateQuery(req, kNoQuery));
      PALM_ASSIGN_OR_RETURN(const model::Instance* in, sup_.GetInstance(t, seg[1]));
      Json j = model::ToJson(*in);
      j["probes"] = sup_.DescribeProbes(t, in->id);
      return JsonResponse(200, j);
    } else if (seg.size() == 3 && seg[0] == "instances" && seg[2] == "check" && m == "POST") {
      PALM_RETURN_IF_ERROR(ValidateQuery(req, kNoQuery));
      return CheckInstance(t, seg[1], ex);
    } else if (seg.size() == 3 && seg[0] == "instances" && seg[2] == "drain" && m == "POST") {
      PALM_RETURN_IF_ERROR(ValidateQuery(req, kNoQuery));
      PALM_RETURN_IF_ERROR(sup_.DrainInstance(t, seg[1]));
      PALM_ASSIGN_OR_RETURN(const model::Instance* in, sup_.GetInstance(t, seg[1]));
      return JsonResponse(202, model::ToJson(*in));
    } else if (seg.size() == 3 && seg[0] == "instances" && seg[2] == "restart" && m == "POST") {
      PALM_RETURN_IF_ERROR(ValidateQuery(req, kNoQuery));
      PALM_RETURN_IF_ERROR(sup_.RestartInstance(t, seg[1]));
      PALM_ASSIGN_OR_RETURN(const model::Instance* in, sup_.GetInstance(t, seg[1]));
      return JsonResponse(202, model::ToJson(*in));
    } else if (seg.size() == 3 && seg[0] == "instances" && seg[2] == "logs" && m == "GET") {
      PALM_RETURN_IF_ERROR(ValidateQuery(req, LogsQuery()));
      PALM_ASSIGN_OR_RETURN(const model::Instance* in, sup_.GetInstance(t, seg[1]));
      return ServeLogs(io_, in->log_path, req, ex);
    } else if (seg.size() == 1 && seg[0] == "events" && m == "GET" && options_.events) {
      PALM_RETURN_IF_ERROR(ValidateQuery(req, EventsQuery()));
      return ServeEvents(io_, *options_.events, *options_.store, t, req, ex,
                         options_.stream_keepalive);
    } else if (seg.size() == 2 && seg[0] == "health" && seg[1] == "summary" && m == "GET") {
      PALM_RETURN_IF_ERROR(ValidateQuery(req, kNoQuery));
      return JsonResponse(200, HealthSummary(t));
    } else if (seg.size() == 2 && seg[0] == "health" && seg[1] == "unhealthy" && m == "GET") {
      PALM_RETURN_IF_ERROR(ValidateQuery(req, kUnhealthyQuery));
      PALM_ASSIGN_OR_RETURN(Json page, Unhealthy(req, t));
      return JsonResponse(200, page);
    } else if (seg.size() == 1 && seg[0] == "status" && m == "GET") {
      PALM_RETURN_IF_ERROR(ValidateQuery(req, kNoQuery));
      return JsonResponse(200, FleetStatus(t));
    } else if (seg.size() == 1 && seg[0] == "daemon" && m == "GET") {
      PALM_RETURN_IF_ERROR(ValidateQuery(req, kNoQuery));
      return JsonResponse(200, options_.daemon_info ? options_.daemon_info() : Json::object());
    } else if (seg.size() == 2 && seg[0] == "daemon" && seg[1] == "stop" && m == "POST") {
      PALM_RETURN_IF_ERROR(ValidateQuery(req, kNoQuery));
      return StopDaemon(req);
    }
    return MethodNotAllowed(req);
  }

  // ---- specs ----
  absl::StatusOr<http::Response> RegisterSpec(const http::Request& req, const std::string& t) {
    PALM_RETURN_IF_ERROR(ValidateQuery(req, kNoQuery));
    PALM_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    auto spec = model::SpecFromJson(body);
    if (!spec.ok()) return Annotate(spec.status(), "spec");
    spec->tenant = t;
    bool created = false;
    PALM_ASSIGN_OR_RETURN(model::AgentSpec out, sup_.RegisterSpec(std::move(*spec), &created));
    return JsonResponse(created ? 201 : 200, model::ToJson(out));
  }

  absl::StatusOr<http::Response> ListSpecs(const http::Request& req, const std::string& t) {
    PALM_RETURN_IF_ERROR(ValidateQuery(req, kListSpecsQuery));
    std::string name = req.Query("name").value_or("");
    std::vector<Json> items;
    for (const model::AgentSpec* s : sup_.ListSpecs(t)) {
      if (!name.empty() && s->name != name) continue;
      Json j = model::ToJson(*s);
      j["ref"] = absl::StrCat(s->name, "@", s->version);
      items.push_back(std::move(j));
    }
    PALM_ASSIGN_OR_RETURN(Json page, Page(std::move(items), req, "ref"));
    return JsonResponse(200, page);
  }

  // ---- deployments ----
  Json DeploymentJson(const model::Deployment& d) const {
    Json j = model::ToJson(d);
    j.erase("rollout");  // the daemon's bookkeeping; status.rollout shows it
    j["status"] = sup_.DeploymentStatus(d);
    return j;
  }

  absl::StatusOr<model::Deployment> ParseDeployment(const http::Request& req,
                                                    const std::string& t,
                                                    const std::string& path_name) {
    PALM_RETURN_IF_ERROR(ValidateQuery(req, kNoQuery));
    PALM_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    PALM_RETURN_IF_ERROR(RequireObject(body, "deployment"));
    if (!path_name.empty() && !body.contains("name")) body["name"] = path_name;
    auto d = model::DeploymentFromJson(body);
    if (!d.ok()) return Annotate(d.status(), "deployment");
    if (!path_name.empty() && d->name != path_name) {
      return InvalidArgument(absl::StrCat("deployment.name: \"", d->name,
                                          "\" does not match the URL's \"", path_name, "\""));
    }
    d->tenant = t;
    return d;
  }

  absl::StatusOr<http::Response> CreateDeployment(const http::Request& req,
                                                  const std::string& t) {
    PALM_ASSIGN_OR_RETURN(model::Deployment d, ParseDeployment(req, t, ""));
    PALM_ASSIGN_OR_RETURN(model::Deployment out, sup_.CreateDeployment(std::move(d)));
    return JsonResponse(201, DeploymentJson(out));
  }

  absl::StatusOr<http::Response> ApplyDeployment(const http::Request& req, const std::string& t,
                                                 const std::string& name) {
    PALM_ASSIGN_OR_RETURN(model::Deployment d, ParseDeployment(req, t, name));
    bool created = false;
    PALM_ASSIGN_OR_RETURN(model::Deployment out, sup_.ApplyDeployment(std::move(d), &created));
    return JsonResponse(created ? 201 : 200, DeploymentJson(out));
  }

  absl::StatusOr<http::Response> ListDeployments(const http::Request& req,
                                                 const std::string& t) {
    PALM_RETURN_IF_ERROR(ValidateQuery(req, kListDeploymentsQuery));
    std::vector<Json> items;
    for (const model::Deployment* d : sup_.ListDeployments(t)) items.push_back(DeploymentJson(*d));
    PALM_ASSIGN_OR_RETURN(Json page, Page(std::move(items), req, "name"));
    return JsonResponse(200, page);
  }

  absl::StatusOr<http::Response> Scale(const http::Request& req, const DeploymentKey& key) {
    PALM_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    PALM_RETURN_IF_ERROR(RequireObject(body, "scale"));
    PALM_RETURN_IF_ERROR(OnlyFields(body, {"replicas"}, "scale"));
    const Json& r = body.contains("replicas") ? body["replicas"] : Json();
    if (!r.is_number_integer() || r.get<int64_t>() < 0 || r.get<int64_t>() > kMaxReplicas) {
      return InvalidArgument(
          absl::StrCat("scale.replicas: must be an integer from 0 to ", kMaxReplicas, ", got ",
                       r.is_null() ? "nothing" : r.dump()),
          "e.g. {\"replicas\": 5}");
    }
    PALM_ASSIGN_OR_RETURN(model::Deployment d, sup_.ScaleDeployment(key, r.get<int64_t>()));
    return JsonResponse(200, DeploymentJson(d));
  }

  // POST /v1/deployments/{name}/{scale|drain|resume|fleet-task},
  // GET /v1/deployments/{name}/task-metrics.
  absl::StatusOr<http::Response> DeploymentAction(const http::Request& req,
                                                  const DeploymentKey& key,
                                                  const std::string& action) {
    const std::string& m = req.method;
    if (action == "task-metrics" && m == "GET" && task_routes_) {
      PALM_RETURN_IF_ERROR(ValidateQuery(req, TaskRoutes::MetricsQuery()));
      PALM_RETURN_IF_ERROR(sup_.GetDeployment(key).status());
      return task_routes_->Metrics(req, key.tenant, key.name);
    }
    PALM_RETURN_IF_ERROR(ValidateQuery(req, kNoQuery));  // the other actions take none
    if (action == "scale" && m == "POST") return Scale(req, key);
    if (action == "drain" && m == "POST") {
      PALM_ASSIGN_OR_RETURN(model::Deployment d, sup_.DrainDeployment(key));
      return JsonResponse(202, DeploymentJson(d));
    }
    if (m == "POST" && (action == "resume" || action == "pause" || action == "promote" ||
                        action == "abort" || action == "undo" || action == "restart")) {
      return RolloutAction(req, key, action);
    }
    if (action == "history" && m == "GET") return History(key);
    if (action == "fleet-task" && m == "POST") return RecordFleetTask(req, key);
    return MethodNotAllowed(req);
  }

  // POST /v1/deployments/{name}/{pause|resume|promote|abort|undo|restart}: the body is
  // optional ({} when empty); promote takes {"full": bool}, undo {"to_revision": K}.
  absl::StatusOr<http::Response> RolloutAction(const http::Request& req,
                                               const DeploymentKey& key,
                                               const std::string& action) {
    Json body = Json::object();
    if (!req.body.empty()) {
      PALM_ASSIGN_OR_RETURN(body, ParseBody(req));
      PALM_RETURN_IF_ERROR(RequireObject(body, action));
    }
    absl::StatusOr<model::Deployment> d;
    if (action == "promote") {
      PALM_RETURN_IF_ERROR(OnlyFields(body, {"full"}, action));
      const Json& full = body.contains("full") ? body["full"] : Json(false);
      if (!full.is_boolean()) {
        return InvalidArgument(absl::StrCat("promote.full: must be true or false, got ",
                                            full.dump()),
                               "{\"full\": true} skips every remaining step");
      }
      d = sup_.PromoteRollout(key, full.get<bool>());
    } else if (action == "undo") {
      PALM_RETURN_IF_ERROR(OnlyFields(body, {"to_revision"}, action));
      std::optional<int64_t> to;
      if (body.contains("to_revision") && !body["to_revision"].is_null()) {
        const Json& v = body["to_revision"];
        if (!v.is_number_integer() || v.get<int64_t>() < 1) {
          return InvalidArgument(absl::StrCat("undo.to_revision: must be a revision number "
                                              "(1 or more), got ", v.dump()),
                                 "`palm deployment history` lists the revisions");
        }
        to = v.get<int64_t>();
      }
      d = sup_.UndoRollout(key, to);
    } else {
      PALM_RETURN_IF_ERROR(OnlyFields(body, {}, action));
      if (action == "pause") d = sup_.PauseRollout(key);
      if (action == "resume") d = sup_.ResumeDeployment(key);
      if (action == "abort") d = sup_.AbortRollout(key);
      if (action == "restart") d = sup_.RestartRollout(key);
    }
    if (!d.ok()) return d.status();
    return JsonResponse(action == "restart" ? 202 : 200, DeploymentJson(*d));
  }

  absl::StatusOr<http::Response> History(const DeploymentKey& key) {
    PALM_ASSIGN_OR_RETURN(std::vector<model::Revision> revs, sup_.History(key));
    PALM_ASSIGN_OR_RETURN(const model::Deployment* d, sup_.GetDeployment(key));
    std::vector<Json> items;
    for (const model::Revision& r : revs) {
      Json j = model::ToJson(r);
      j["current"] = r.number == d->revision;
      j["stable"] = r.number == d->stable_revision;
      items.push_back(std::move(j));
    }
    return JsonResponse(200, Json{{"items", items}, {"next", nullptr}});
  }

  absl::StatusOr<http::Response> RecordFleetTask(const http::Request& req,
                                                 const DeploymentKey& key) {
    constexpr size_t kMaxFleetTaskBytes = 64 * 1024;
    PALM_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    PALM_RETURN_IF_ERROR(RequireObject(body, "fleet_task"));
    PALM_RETURN_IF_ERROR(OnlyFields(body, {"task"}, "fleet_task"));
    const Json& task = body.contains("task") ? body["task"] : Json();
    if (!task.is_string() || task.get<std::string>().empty() ||
        task.get<std::string>().size() > kMaxFleetTaskBytes) {
      return InvalidArgument(
          absl::StrCat("fleet_task.task: must be a non-empty string of at most ",
                       kMaxFleetTaskBytes, " bytes"),
          "e.g. {\"task\": \"summarize today's tickets\"}");
    }
    PALM_ASSIGN_OR_RETURN(model::Deployment d,
                          sup_.RecordFleetTask(key, task.get<std::string>()));
    return JsonResponse(200, DeploymentJson(d));
  }

  // ---- instances ----
  absl::StatusOr<http::Response> ListInstances(const http::Request& req, const std::string& t) {
    PALM_RETURN_IF_ERROR(ValidateQuery(req, kListInstancesQuery));
    std::optional<model::InstanceState> state;
    if (auto s = req.Query("state")) {
      state.emplace();
      model::ParseInstanceState(*s, &*state);  // checked by ValidateQuery
    }
    std::string dep = req.Query("deployment").value_or("");
    std::vector<Json> items;
    for (const model::Instance* in : sup_.ListInstances(t, dep, state)) {
      items.push_back(model::ToJson(*in));
    }
    PALM_ASSIGN_OR_RETURN(Json page, Page(std::move(items), req, "id"));
    return JsonResponse(200, page);
  }

  // Per deployment: health counts with percentages of its live instances (FLEET STATUS).
  Json HealthSummary(const std::string& t) const {
    Json deps = Json::array();
    std::map<std::string, int64_t> totals = {{"instances", 0}, {"healthy", 0}, {"degraded", 0},
                                             {"unhealthy", 0}, {"unknown", 0}, {"ready", 0}};
    for (const model::Deployment* d : sup_.ListDeployments(t)) {
      Json st = sup_.DeploymentStatus(*d);
      const Json& h = st["health"];
      int64_t n = st["replicas"]["current"];
      auto pct = [&](const char* k) {
        return n == 0 ? 0.0 : std::round(1000.0 * h[k].get<int64_t>() / n) / 10.0;
      };
      deps.push_back({{"name", d->name},
                      {"desired", d->replicas},
                      {"instances", n},
                      {"healthy", h["healthy"]},
                      {"degraded", h["degraded"]},
                      {"unhealthy", h["unhealthy"]},
                      {"unknown", h["unknown"]},
                      {"ready", st["replicas"]["ready"]},
                      {"available", st["replicas"]["available"]},
                      {"healthy_pct", pct("healthy")},
                      {"degraded_pct", pct("degraded")},
                      {"unhealthy_pct", pct("unhealthy")}});
      totals["instances"] += n;
      for (const char* k : {"healthy", "degraded", "unhealthy", "unknown"}) {
        totals[k] += h[k].get<int64_t>();
      }
      totals["ready"] += st["replicas"]["ready"].get<int64_t>();
    }
    return {{"deployments", deps}, {"totals", totals}, {"probes", sup_.ProbeStats()}};
  }

  // Instances that are Degraded or Unhealthy, or running but not ready.
  absl::StatusOr<Json> Unhealthy(const http::Request& req, const std::string& t) const {
    std::vector<Json> items;
    std::string dep = req.Query("deployment").value_or("");
    for (const model::Instance* in : sup_.ListInstances(t, dep, std::nullopt)) {
      bool bad = in->health == model::HealthStatus::kDegraded ||
                 in->health == model::HealthStatus::kUnhealthy ||
                 (in->state == model::InstanceState::kRunning && !in->ready);
      if (bad) items.push_back(model::ToJson(*in));
    }
    return Page(std::move(items), req, "id");
  }

  // Runs the instance's probes now and answers when they are done.
  absl::StatusOr<http::Response> CheckInstance(const std::string& t, const std::string& id,
                                               const std::shared_ptr<http::Exchange>& ex) {
    PALM_RETURN_IF_ERROR(sup_.CheckInstance(t, id, [this, t, id, ex](auto checks) {
      Json probes = Json::array();
      for (const auto& c : checks) {
        probes.push_back({{"probe", c.probe},
                          {"type", c.type},
                          {"ok", c.ok},
                          {"message", c.message},
                          {"latency_ms", c.latency_ms}});
      }
      Json body = {{"instance", id}, {"probes", probes}};
      if (auto in = sup_.GetInstance(t, id); in.ok()) {
        Json inst = model::ToJson(**in);
        body["health"] = inst["health"];
        body["ready"] = inst["ready"];
      }
      ex->Respond(JsonResponse(200, body));
    }));
    return AlreadyAnswered();
  }

  Json FleetStatus(const std::string& t) const {
    Json deps = Json::array();
    for (const model::Deployment* d : sup_.ListDeployments(t)) {
      Json st = sup_.DeploymentStatus(*d);
      deps.push_back({{"name", d->name},
                      {"spec", d->spec},
                      {"revision", d->revision},
                      {"phase", st["phase"]},
                      {"desired", d->replicas},
                      {"current", st["replicas"]["current"]},
                      {"running", st["running"]},
                      {"ready", st["replicas"]["ready"]},
                      {"available", st["replicas"]["available"]},
                      {"restarts", st["restarts"]},
                      {"healthy", st["health"]["healthy"]},
                      {"degraded", st["health"]["degraded"]},
                      {"unhealthy", st["health"]["unhealthy"]},
                      {"metrics", st["metrics"]},
                      {"instances_by_state", st["instances_by_state"]}});
    }
    std::map<std::string, int64_t> by_state;
    int64_t total = 0;
    for (const model::Instance* in : sup_.ListInstances(t, "", std::nullopt)) {
      ++by_state[std::string(model::ToString(in->state))];
      ++total;
    }
    return {{"deployments", deps},
            {"instances", {{"total", total}, {"by_state", by_state}}},
            {"daemon", options_.daemon_info ? options_.daemon_info() : Json::object()}};
  }

  absl::StatusOr<http::Response> StopDaemon(const http::Request& req) {
    bool all = false;
    if (req.body.find_first_not_of(" \t\r\n") != std::string::npos) {
      PALM_ASSIGN_OR_RETURN(Json body, ParseBody(req));
      PALM_RETURN_IF_ERROR(RequireObject(body, "stop"));
      PALM_RETURN_IF_ERROR(OnlyFields(body, {"all"}, "stop"));
      if (body.contains("all")) {
        if (!body["all"].is_boolean()) return InvalidArgument("stop.all: must be true or false");
        all = body["all"].get<bool>();
      }
    }
    PALM_LOG(kInfo, "stop requested over the API", all ? " (with all agents)" : "");
    if (options_.request_stop) {
      boost::asio::post(io_, [stop = options_.request_stop, all] { stop(all); });
    }
    return JsonResponse(202, {{"stopping", true}, {"all", all}});
  }

  // ---- agents ----
  absl::StatusOr<http::Response> AgentRoute(const http::Request& req,
                                            const std::vector<std::string>& seg,
                                            const Principal& p,
                                            const std::shared_ptr<http::Exchange>& ex) {
    if (p.instance_id.empty()) {
      return Error(absl::StatusCode::kPermissionDenied, "FORBIDDEN",
                   "agent endpoints need an instance token",
                   "agents use the PALM_TOKEN palm gives them");
    }
    if (seg.size() >= 2 && seg[1] == "tasks" && task_routes_) {
      return task_routes_->Agent(req, seg, p.tenant, p.instance_id, ex);
    }
    if (seg.size() == 2 && seg[1] == "heartbeat" && req.method == "POST") {
      PALM_RETURN_IF_ERROR(ValidateQuery(req, kNoQuery));
      PALM_ASSIGN_OR_RETURN(Json body, ParseBody(req));
      PALM_ASSIGN_OR_RETURN(controller::HeartbeatIn in, HeartbeatFromJson(body));
      PALM_ASSIGN_OR_RETURN(controller::HeartbeatOut out,
                            sup_.Heartbeat(p.tenant, p.instance_id, in));
      return JsonResponse(200, {{"drain", out.drain},
                                {"killed", out.killed},
                                {"policy_version", out.policy_version}});
    }
    return MethodNotAllowed(req);
  }

  boost::asio::io_context& io_;
  controller::Supervisor& sup_;
  ApiOptions options_;
  std::unique_ptr<TaskRoutes> task_routes_;
};

Api::Api(boost::asio::io_context& io, controller::Supervisor& supervisor, ApiOptions options)
    : impl_(std::make_unique<Impl>(io, supervisor, std::move(options))) {}
Api::~Api() = default;

void Api::Handle(http::Request req, std::shared_ptr<http::Exchange> ex) {
  impl_->Handle(std::move(req), std::move(ex));
}

}  // namespace palm::api
