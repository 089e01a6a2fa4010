// Task <-> JSON: the client's request, the agent's result, the API form and the stored form.
#include "palm/model/task.h"

#include <array>
#include <cstdio>
#include <limits>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "palm/base/clock.h"
#include "palm/base/error.h"
#include "palm/base/names.h"
#include "palm/base/utf8.h"
#include "palm/model/field_reader.h"

namespace palm::model {
namespace {

using codec_internal::Bad;
using codec_internal::Describe;
using codec_internal::FieldReader;
using codec_internal::NumberJson;
using codec_internal::Required;
using codec_internal::TimeJson;

constexpr std::array<std::pair<TaskState, std::string_view>, 6> kStates = {{
    {TaskState::kQueued, "Queued"},
    {TaskState::kAssigned, "Assigned"},
    {TaskState::kSucceeded, "Succeeded"},
    {TaskState::kFailed, "Failed"},
    {TaskState::kTimedOut, "TimedOut"},
    {TaskState::kCancelled, "Cancelled"},
}};

constexpr std::array<std::pair<TaskMode, std::string_view>, 2> kModes = {{
    {TaskMode::kRoute, "route"},
    {TaskMode::kBroadcast, "broadcast"},
}};

constexpr std::string_view kTargets[] = {"stable", "canary", "preview"};
constexpr std::string_view kTaskIdPrefix = "task-";

const std::vector<std::string_view> kRequestFields = {
    "deployment", "input", "mode", "target", "timeout_s", "max_attempts", "idempotency_key"};
const std::vector<std::string_view> kResultFields = {"ok", "output", "error", "cost_usd",
                                                     "attempt"};
const std::vector<std::string_view> kStoredFields = {
    "id",     "tenant",     "seq",          "deployment",  "input",           "mode",
    "target", "state",      "max_attempts", "timeout_s",   "idempotency_key", "deliveries",
    "error",  "created_at", "updated_at",   "completed_at"};
const std::vector<std::string_view> kDeliveryFields = {
    "instance",    "revision",         "state",        "attempts", "output", "error",
    "assigned_at", "lease_expires_at", "completed_at", "cost_usd"};

// "" and 0 mean "none" in the structs and null on the wire.
Json StringOrNull(const std::string& s) { return s.empty() ? Json(nullptr) : Json(s); }
Json CostJson(const std::optional<double>& c) { return c ? NumberJson(*c) : Json(nullptr); }

std::string DidYouMean(const Json& v, const std::vector<std::string_view>& choices) {
  if (!v.is_string()) return "";
  std::string s = codec_internal::Suggest(v.get<std::string>(), choices);
  return s.empty() ? "" : absl::StrCat("; did you mean \"", s, "\"?");
}

absl::Status ReadMode(const FieldReader& r, TaskMode* out) {
  const Json* v = r.Get("mode");
  if (v == nullptr) return absl::OkStatus();
  if (v->is_string() && ParseTaskMode(v->get<std::string>(), out)) return absl::OkStatus();
  return Bad(r.Path("mode"),
             absl::StrCat("must be \"route\" or \"broadcast\", got ", Describe(*v),
                          DidYouMean(*v, {"route", "broadcast"})),
             "route sends the task to one instance; broadcast gives every ready instance a copy");
}

absl::Status ReadState(const Json* v, const std::string& path, TaskState* out) {
  if (v != nullptr && v->is_string() && ParseTaskState(v->get<std::string>(), out)) {
    return absl::OkStatus();
  }
  return Bad(path, absl::StrCat("must be Queued, Assigned, Succeeded, Failed, TimedOut or "
                                "Cancelled, got ",
                                v == nullptr ? std::string("nothing") : Describe(*v)));
}

// "" | stable | canary | preview | <deployment>-<digits>.
absl::Status CheckTarget(const std::string& target, const std::string& deployment,
                         const std::string& path) {
  if (target.empty()) return absl::OkStatus();
  for (std::string_view t : kTargets) {
    if (target == t) return absl::OkStatus();
  }
  const std::string prefix = deployment + "-";
  if (target.size() > prefix.size() && target.compare(0, prefix.size(), prefix) == 0 &&
      target.find_first_not_of("0123456789", prefix.size()) == std::string::npos) {
    return absl::OkStatus();
  }
  std::string problem =
      absl::StrCat("must be \"stable\", \"canary\", \"preview\" or an instance of deployment \"",
                   deployment, "\" (\"", deployment, "-<n>\"), got ", Describe(Json(target)));
  absl::StrAppend(&problem, DidYouMean(Json(target), {"stable", "canary", "preview"}));
  return Bad(path, problem,
             "leave target out to route by revision weight; `palm instance list` shows the "
             "instance ids");
}

absl::Status CheckIdempotencyKey(const std::string& key, const std::string& path) {
  if (key.size() > kMaxIdempotencyKeyBytes) {
    return Bad(path,
               absl::StrCat("is ", key.size(), " bytes long (max ", kMaxIdempotencyKeyBytes, ")"),
               "use a short unique id, e.g. a UUID or a hash of the request");
  }
  for (char c : key) {
    if (c < 0x20 || c > 0x7e) {
      char shown[8];
      std::snprintf(shown, sizeof shown, "0x%02x", static_cast<unsigned char>(c));
      return Bad(path,
                 absl::StrCat("contains the byte ", shown, ": only printable ASCII is allowed"),
                 "use a short unique id, e.g. a UUID or a hash of the request");
    }
  }
  return absl::OkStatus();
}

Json DeliveryJson(const Delivery& d) {
  return {{"instance", StringOrNull(d.instance)},
          {"revision", d.revision == 0 ? Json(nullptr) : Json(d.revision)},
          {"state", ToString(d.state)},
          {"attempts", d.attempts},
          {"output", d.output},
          {"error", StringOrNull(d.error)},
          {"lease_expires_at", TimeJson(d.lease_expires_at)},
          {"completed_at", TimeJson(d.completed_at)},
          {"cost_usd", CostJson(d.cost_usd)}};
}

Json StoredDelivery(const Delivery& d) {
  return {{"instance", d.instance},
          {"revision", d.revision},
          {"state", ToString(d.state)},
          {"attempts", d.attempts},
          {"output", d.output},
          {"error", d.error},
          {"assigned_at", TimeJson(d.assigned_at)},
          {"lease_expires_at", TimeJson(d.lease_expires_at)},
          {"completed_at", TimeJson(d.completed_at)},
          {"cost_usd", CostJson(d.cost_usd)}};
}

absl::StatusOr<Delivery> DeliveryFromStored(const Json& doc, const std::string& path) {
  FieldReader r(doc, path, kDeliveryFields);
  PALM_RETURN_IF_ERROR(r.Check());
  Delivery d;
  PALM_RETURN_IF_ERROR(r.String("instance", &d.instance));
  PALM_RETURN_IF_ERROR(r.Int("revision", 0, INT64_MAX, &d.revision));
  PALM_RETURN_IF_ERROR(ReadState(r.Get("state"), r.Path("state"), &d.state));
  PALM_RETURN_IF_ERROR(r.Int("attempts", 0, INT64_MAX, &d.attempts));
  if (const Json* out = r.Get("output")) d.output = *out;
  PALM_RETURN_IF_ERROR(r.String("error", &d.error));
  PALM_RETURN_IF_ERROR(r.OptTime("assigned_at", &d.assigned_at));
  PALM_RETURN_IF_ERROR(r.OptTime("lease_expires_at", &d.lease_expires_at));
  PALM_RETURN_IF_ERROR(r.OptTime("completed_at", &d.completed_at));
  PALM_RETURN_IF_ERROR(r.OptNumber("cost_usd", 0, std::numeric_limits<double>::max(), &d.cost_usd));
  return d;
}

}  // namespace

std::string_view ToString(TaskState s) {
  for (const auto& [v, name] : kStates) {
    if (v == s) return name;
  }
  return "Unknown";
}

bool ParseTaskState(std::string_view s, TaskState* out) {
  for (const auto& [v, name] : kStates) {
    if (name == s) {
      *out = v;
      return true;
    }
  }
  return false;
}

bool IsTerminal(TaskState s) {
  return s == TaskState::kSucceeded || s == TaskState::kFailed || s == TaskState::kTimedOut ||
         s == TaskState::kCancelled;
}

std::string_view ToString(TaskMode m) {
  for (const auto& [v, name] : kModes) {
    if (v == m) return name;
  }
  return "route";
}

bool ParseTaskMode(std::string_view s, TaskMode* out) {
  for (const auto& [v, name] : kModes) {
    if (name == s) {
      *out = v;
      return true;
    }
  }
  return false;
}

TaskState TaskStateOf(const Task& t) {
  if (t.state == TaskState::kCancelled) return TaskState::kCancelled;
  if (t.deliveries.empty()) return t.state;  // nothing to derive it from
  bool any_active = false, any_assigned = false, all_succeeded = true, all_timed_out = true;
  for (const Delivery& d : t.deliveries) {
    if (!IsTerminal(d.state)) {
      any_active = true;
      any_assigned = any_assigned || d.state == TaskState::kAssigned;
      continue;
    }
    if (d.state == TaskState::kSucceeded) continue;
    all_succeeded = false;
    all_timed_out = all_timed_out && d.state == TaskState::kTimedOut;
  }
  if (any_active) return any_assigned ? TaskState::kAssigned : TaskState::kQueued;
  if (all_succeeded) return TaskState::kSucceeded;
  return all_timed_out ? TaskState::kTimedOut : TaskState::kFailed;
}

absl::StatusOr<TaskRequest> TaskRequestFromJson(const Json& doc) {
  FieldReader r(doc, "task", kRequestFields);
  PALM_RETURN_IF_ERROR(r.Check());
  TaskRequest req;
  PALM_RETURN_IF_ERROR(r.String("deployment", &req.deployment,
                                Required{"the deployment to run the task, e.g. \"support\""}));
  PALM_RETURN_IF_ERROR(ValidateName(r.Path("deployment"), req.deployment));
  if (const Json* input = r.Get("input")) req.input = *input;
  PALM_RETURN_IF_ERROR(ReadMode(r, &req.mode));
  PALM_RETURN_IF_ERROR(r.String("target", &req.target));
  PALM_RETURN_IF_ERROR(CheckTarget(req.target, req.deployment, r.Path("target")));
  PALM_RETURN_IF_ERROR(r.Int("timeout_s", 1, kMaxTaskTimeoutS, &req.timeout_s));
  PALM_RETURN_IF_ERROR(r.Int("max_attempts", 1, kMaxMaxAttempts, &req.max_attempts));
  PALM_RETURN_IF_ERROR(r.String("idempotency_key", &req.idempotency_key));
  PALM_RETURN_IF_ERROR(CheckIdempotencyKey(req.idempotency_key, r.Path("idempotency_key")));
  return req;
}

absl::StatusOr<TaskResult> TaskResultFromJson(const Json& doc) {
  FieldReader r(doc, "result", kResultFields);
  PALM_RETURN_IF_ERROR(r.Check());
  TaskResult res;
  const Json* ok = r.Get("ok");
  if (ok == nullptr) {
    return r.Missing("ok", Required{"true when the task succeeded, false when it failed"});
  }
  PALM_RETURN_IF_ERROR(r.Bool("ok", &res.ok));
  if (const Json* output = r.Get("output")) res.output = *output;
  PALM_RETURN_IF_ERROR(r.String("error", &res.error));
  PALM_RETURN_IF_ERROR(
      r.OptNumber("cost_usd", 0, std::numeric_limits<double>::max(), &res.cost_usd));
  PALM_RETURN_IF_ERROR(r.OptInt("attempt", 1, INT64_MAX, &res.attempt));
  return res;
}

Json ToJson(const Task& t) {
  Json j = {
      {"id", t.id},
      {"tenant", t.tenant},
      {"deployment", t.deployment},
      {"mode", ToString(t.mode)},
      {"target", StringOrNull(t.target)},
      {"input", t.input},
      {"state", ToString(t.state)},
      {"max_attempts", t.max_attempts},
      {"timeout_s", t.timeout_s},
      {"idempotency_key", StringOrNull(t.idempotency_key)},
      {"instance", nullptr},
      {"revision", nullptr},
      {"attempts", nullptr},
      {"output", nullptr},
      {"error", StringOrNull(t.error)},
      {"lease_expires_at", nullptr},
      {"cost_usd", nullptr},
      {"latency_ms", nullptr},
      {"created_at", palm::FormatTime(t.created_at)},
      {"updated_at", palm::FormatTime(t.updated_at)},
      {"completed_at", TimeJson(t.completed_at)},
  };
  if (IsTerminal(t.state) && t.completed_at) {
    j["latency_ms"] = NumberJson(absl::ToDoubleMilliseconds(*t.completed_at - t.created_at));
  }
  if (t.mode == TaskMode::kBroadcast) {
    Json deliveries = Json::array();
    for (const Delivery& d : t.deliveries) deliveries.push_back(DeliveryJson(d));
    j["deliveries"] = std::move(deliveries);
    return j;
  }
  j["attempts"] = 0;
  if (!t.deliveries.empty()) {
    const Delivery& d = t.deliveries.front();
    Json dj = DeliveryJson(d);
    for (const char* key :
         {"instance", "revision", "attempts", "output", "lease_expires_at", "cost_usd"}) {
      j[key] = std::move(dj[key]);
    }
    if (t.error.empty()) j["error"] = std::move(dj["error"]);
  }
  return j;
}

Json ToStored(const Delivery& d) { return StoredDelivery(d); }

Json ToStored(const Task& t, bool inline_deliveries) {
  Json deliveries = Json::array();
  if (inline_deliveries) {
    for (const Delivery& d : t.deliveries) deliveries.push_back(StoredDelivery(d));
  }
  Json doc = {
      {"id", t.id},
      {"tenant", t.tenant},
      {"seq", t.seq},
      {"deployment", t.deployment},
      {"input", t.input},
      {"mode", ToString(t.mode)},
      {"target", t.target},
      {"state", ToString(t.state)},
      {"max_attempts", t.max_attempts},
      {"timeout_s", t.timeout_s},
      {"idempotency_key", t.idempotency_key},
      {"deliveries", std::move(deliveries)},
      {"error", t.error},
      {"created_at", palm::FormatTime(t.created_at)},
      {"updated_at", palm::FormatTime(t.updated_at)},
      {"completed_at", TimeJson(t.completed_at)},
  };
  if (!inline_deliveries) doc["delivery_rows"] = t.deliveries.size();
  return doc;
}

namespace {

// Appends JSON text for values of the stored form, in the spelling nlohmann's dump() uses.
class TextWriter {
 public:
  explicit TextWriter(std::string* out) : out_(*out) {}
  void Key(std::string_view k) {
    out_ += first_ ? '{' : ',';
    first_ = false;
    out_ += '"';
    out_ += k;  // keys are ours: plain ASCII
    out_ += "\":";
  }
  void Begin() { first_ = true; }
  void End() { out_ += first_ ? "{}" : "}"; first_ = false; }
  void String(std::string_view s) {
    out_ += '"';
    for (char c : s) {
      switch (c) {
        case '"': out_ += "\\\""; break;
        case '\\': out_ += "\\\\"; break;
        case '\n': out_ += "\\n"; break;
        case '\r': out_ += "\\r"; break;
        case '\t': out_ += "\\t"; break;
        case '\b': out_ += "\\b"; break;
        case '\f': out_ += "\\f"; break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
            out_ += buf;
          } else {
            out_ += c;
          }
      }
    }
    out_ += '"';
  }
  void Int(int64_t v) { out_ += std::to_string(v); }
  void Value(const Json& v) { out_ += v.dump(); }
  void Time(const std::optional<absl::Time>& t) {
    if (t) {
      String(palm::FormatTime(*t));
    } else {
      out_ += "null";
    }
  }

 private:
  std::string& out_;
  bool first_ = true;
};

bool ValidUtf8(std::string_view s) { return FindInvalidUtf8(s) == std::string_view::npos; }

// One delivery's stored form, written by `w` into its output.
void WriteDelivery(TextWriter& w, const Delivery& d) {
  w.Begin();
  w.Key("assigned_at"); w.Time(d.assigned_at);
  w.Key("attempts"); w.Int(d.attempts);
  w.Key("completed_at"); w.Time(d.completed_at);
  w.Key("cost_usd"); w.Value(CostJson(d.cost_usd));
  w.Key("error"); w.String(d.error);
  w.Key("instance"); w.String(d.instance);
  w.Key("lease_expires_at"); w.Time(d.lease_expires_at);
  w.Key("output"); w.Value(d.output);
  w.Key("revision"); w.Int(d.revision);
  w.Key("state"); w.String(ToString(d.state));
  w.End();
}

absl::Status CheckDeliveryText(const Delivery& d) {
  if (!ValidUtf8(d.instance) || !ValidUtf8(d.error)) {
    return InvalidArgument("task.deliveries: a text field is not valid UTF-8");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> StoredDeliveryText(const Delivery& d) {
  PALM_RETURN_IF_ERROR(CheckDeliveryText(d));
  std::string out;
  out.reserve(256);
  TextWriter w(&out);
  try {
    WriteDelivery(w, d);
  } catch (const std::exception& e) {
    return InvalidArgument(absl::StrCat("task delivery: cannot be stored: ", e.what()));
  }
  return out;
}

absl::StatusOr<std::string> StoredText(const Task& t, bool inline_deliveries) {
  for (const std::string* s : {&t.id, &t.tenant, &t.deployment, &t.target, &t.idempotency_key,
                               &t.error}) {
    if (!ValidUtf8(*s)) return InvalidArgument("task: a text field is not valid UTF-8");
  }
  if (inline_deliveries) {
    for (const Delivery& d : t.deliveries) PALM_RETURN_IF_ERROR(CheckDeliveryText(d));
  }
  std::string out;
  out.reserve(512);
  TextWriter w(&out);
  try {
    w.Begin();
    w.Key("completed_at"); w.Time(t.completed_at);
    w.Key("created_at"); w.String(palm::FormatTime(t.created_at));
    w.Key("deliveries");
    out += '[';
    for (size_t i = 0; inline_deliveries && i < t.deliveries.size(); ++i) {
      if (i > 0) out += ',';
      WriteDelivery(w, t.deliveries[i]);
    }
    out += ']';
    if (!inline_deliveries) {
      w.Key("delivery_rows"); w.Int(static_cast<int64_t>(t.deliveries.size()));
    }
    w.Key("deployment"); w.String(t.deployment);
    w.Key("error"); w.String(t.error);
    w.Key("id"); w.String(t.id);
    w.Key("idempotency_key"); w.String(t.idempotency_key);
    w.Key("input"); w.Value(t.input);
    w.Key("max_attempts"); w.Int(t.max_attempts);
    w.Key("mode"); w.String(ToString(t.mode));
    w.Key("seq"); w.Int(t.seq);
    w.Key("state"); w.String(ToString(t.state));
    w.Key("target"); w.String(t.target);
    w.Key("tenant"); w.String(t.tenant);
    w.Key("timeout_s"); w.Int(t.timeout_s);
    w.Key("updated_at"); w.String(palm::FormatTime(t.updated_at));
    w.End();
  } catch (const std::exception& e) {
    return InvalidArgument(absl::StrCat("task: cannot be stored: ", e.what()));
  }
  return out;
}

absl::StatusOr<Task> TaskFromStored(const Json& doc) {
  FieldReader r(doc, "task", kStoredFields);
  Task t;
  absl::Status st = [&]() -> absl::Status {
    PALM_RETURN_IF_ERROR(r.Check());
    PALM_RETURN_IF_ERROR(r.String("id", &t.id, Required{"the task id, e.g. \"task-00000042\""}));
    PALM_RETURN_IF_ERROR(r.String("tenant", &t.tenant));
    PALM_RETURN_IF_ERROR(r.Int("seq", 0, INT64_MAX, &t.seq));
    PALM_RETURN_IF_ERROR(
        r.String("deployment", &t.deployment, Required{"the deployment that runs the task"}));
    if (const Json* input = r.Get("input")) t.input = *input;
    PALM_RETURN_IF_ERROR(ReadMode(r, &t.mode));
    PALM_RETURN_IF_ERROR(r.String("target", &t.target));
    PALM_RETURN_IF_ERROR(ReadState(r.Get("state"), r.Path("state"), &t.state));
    PALM_RETURN_IF_ERROR(r.Int("max_attempts", 1, kMaxMaxAttempts, &t.max_attempts));
    PALM_RETURN_IF_ERROR(r.Int("timeout_s", 1, kMaxTaskTimeoutS, &t.timeout_s));
    PALM_RETURN_IF_ERROR(r.String("idempotency_key", &t.idempotency_key));
    if (const Json* list = r.Get("deliveries")) {
      if (!list->is_array()) {
        return Bad(r.Path("deliveries"), absl::StrCat("must be a list, got ", Describe(*list)));
      }
      for (size_t i = 0; i < list->size(); ++i) {
        PALM_ASSIGN_OR_RETURN(
            Delivery d,
            DeliveryFromStored((*list)[i], codec_internal::IndexPath(r.Path("deliveries"), i)));
        t.deliveries.push_back(std::move(d));
      }
    }
    // ToJson flattens the one delivery of a route task; anything else is a broken document.
    if (t.mode == TaskMode::kRoute && t.deliveries.size() != 1) {
      return Bad(r.Path("deliveries"),
                 absl::StrCat("a route task has exactly one delivery, got ", t.deliveries.size()));
    }
    if (t.mode == TaskMode::kBroadcast && t.deliveries.empty()) {
      return Bad(r.Path("deliveries"), "a broadcast task has at least one delivery");
    }
    PALM_RETURN_IF_ERROR(r.String("error", &t.error));
    PALM_RETURN_IF_ERROR(r.Time("created_at", &t.created_at));
    PALM_RETURN_IF_ERROR(r.Time("updated_at", &t.updated_at));
    if (t.mode == TaskMode::kBroadcast) {
      for (const Delivery& d : t.deliveries) {
        for (const auto& at : {d.assigned_at, d.completed_at}) {
          if (at && *at > t.updated_at) t.updated_at = *at;
        }
      }
    }
    return r.OptTime("completed_at", &t.completed_at);
  }();
  if (!st.ok()) return Annotate(st, "stored task");
  return t;
}

Json AgentView(const Task& t, const Delivery& d) {
  return {{"id", t.id},
          {"deployment", t.deployment},
          {"input", t.input},
          {"mode", ToString(t.mode)},
          {"attempt", d.attempts},
          {"max_attempts", t.max_attempts},
          {"timeout_s", t.timeout_s},
          {"lease_expires_at", TimeJson(d.lease_expires_at)},
          {"created_at", palm::FormatTime(t.created_at)}};
}

std::string TaskId(int64_t seq) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "task-%08lld", static_cast<long long>(seq));
  return buf;
}

bool ParseTaskId(std::string_view id, int64_t* seq) {
  if (id.size() <= kTaskIdPrefix.size() || id.substr(0, kTaskIdPrefix.size()) != kTaskIdPrefix) {
    return false;
  }
  std::string_view digits = id.substr(kTaskIdPrefix.size());
  if (digits.find_first_not_of("0123456789") != std::string_view::npos) return false;
  int64_t n = 0;
  if (!absl::SimpleAtoi(std::string(digits), &n) || n < 1) return false;
  // Only the canonical spelling: "task-42" and "task-000000042" name no task.
  if (TaskId(n) != id) return false;
  *seq = n;
  return true;
}

}  // namespace palm::model
