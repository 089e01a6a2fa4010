// health_check: Json -> HealthCheckSpec with field paths (see health_check.h).
#include "palm/model/health_check.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "palm/base/error.h"
#include "palm/model/field_reader.h"

namespace palm::model {
namespace {

using codec_internal::Bad;
using codec_internal::Describe;
using codec_internal::FieldReader;
using codec_internal::Required;

constexpr double kMaxDelayS = 3600;
constexpr double kMinPeriodS = 0.1;
constexpr double kMaxPeriodS = 3600;
constexpr double kMaxTimeoutS = 600;
constexpr double kMaxAgeS = 86400;
constexpr int64_t kMaxThreshold = 1000;
constexpr size_t kMaxPathBytes = 2048;
constexpr size_t kMaxExecArgs = 64;

constexpr std::string_view kTypeHint =
    "give exactly one of http: {port: NAME, path: /healthz}, tcp: {port: NAME}, "
    "exec: [program, args...] or heartbeat: {max_age_s: 15}";

const std::vector<std::string_view> kKinds = {"startup", "liveness", "readiness"};
const std::vector<std::string_view> kTypes = {"http", "tcp", "exec", "heartbeat"};
const std::vector<std::string_view> kProbeFields = {
    "http",    "tcp",      "exec",      "heartbeat",         "initial_delay_s",
    "period_s", "timeout_s", "success_threshold", "failure_threshold"};

std::string Join(const std::vector<std::string_view>& parts, std::string_view sep) {
  std::string out;
  for (std::string_view p : parts) {
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

absl::Status ReadPort(const FieldReader& r, const std::vector<std::string>& declared,
                      std::string* out) {
  PALM_RETURN_IF_ERROR(r.String("port", out, Required{"the name of a port declared in `ports`"}));
  if (std::find(declared.begin(), declared.end(), *out) != declared.end()) {
    return absl::OkStatus();
  }
  std::string hint =
      declared.empty()
          ? absl::StrCat("declare it in the spec: ports: [", *out, "]")
          : absl::StrCat("use one of the declared ports (", absl::StrJoin(declared, ", "),
                         ") or add \"", *out, "\" to `ports`");
  return Bad(r.Path("port"),
             absl::StrCat("port \"", out->substr(0, 63), "\" is not declared in the spec's ports"),
             hint);
}

absl::Status ReadHttpPath(const FieldReader& r, std::string* out) {
  PALM_RETURN_IF_ERROR(r.String("path", out));
  if (out->empty() || (*out)[0] != '/') {
    return Bad(r.Path("path"), absl::StrCat("must start with '/', got ", Describe(*r.Get("path"))),
               "e.g. /healthz");
  }
  if (out->size() > kMaxPathBytes) {
    return Bad(r.Path("path"), absl::StrCat("is longer than ", kMaxPathBytes, " bytes"));
  }
  for (char c : *out) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= ' ' || u == 0x7f) {
      return Bad(r.Path("path"), "contains whitespace or a control character",
                 "percent-encode it, e.g. %20 for a space");
    }
  }
  return absl::OkStatus();
}

absl::Status ReadExec(const FieldReader& r, std::vector<std::string>* out) {
  const Json* v = r.Get("exec");
  const std::string path = r.Path("exec");
  constexpr std::string_view kExecHint =
      "write the program and each argument as list elements, e.g. exec: [\"pg_isready\", "
      "\"-q\"]; palm runs no shell (use [\"sh\", \"-c\", \"...\"] for one)";
  if (v->is_string()) {
    return Bad(path, absl::StrCat("must be a list, got ", Describe(*v)), kExecHint);
  }
  std::string cmd_path = path;
  if (v->is_object()) {
    FieldReader e(*v, path, {"command"});
    PALM_RETURN_IF_ERROR(e.Check());
    if (const Json* c = e.Get("command"); c != nullptr && c->is_string()) {
      return Bad(e.Path("command"), absl::StrCat("must be a list, got ", Describe(*c)), kExecHint);
    }
    PALM_RETURN_IF_ERROR(e.StringList("command", out, Required{"the program and its arguments"}));
    cmd_path = e.Path("command");
  } else {
    PALM_RETURN_IF_ERROR(r.StringList("exec", out));
  }
  if (out->empty()) return Bad(cmd_path, "must not be empty", kExecHint);
  if (out->size() > kMaxExecArgs) {
    return Bad(cmd_path, absl::StrCat("has ", out->size(), " arguments (max ", kMaxExecArgs, ")"));
  }
  return absl::OkStatus();
}

// A positive number in (0, max] (min_inclusive > 0 tightens the lower bound).
absl::Status PositiveNumber(const FieldReader& r, std::string_view key, double min_inclusive,
                            double max, double* out) {
  const Json* v = r.Get(key);
  if (v == nullptr) return absl::OkStatus();
  double d = 0;
  PALM_RETURN_IF_ERROR(r.Number(key, 0, max, &d));
  if (d <= 0 || d < min_inclusive) {
    return Bad(r.Path(key),
               min_inclusive > 0 ? absl::StrCat("must be at least ", min_inclusive, ", got ",
                                                Describe(*v))
                                 : absl::StrCat("must be greater than 0, got ", Describe(*v)),
               "a number of seconds, e.g. 10");
  }
  *out = d;
  return absl::OkStatus();
}

absl::StatusOr<ProbeSpec> ParseProbe(const Json& v, const std::string& path, std::string_view kind,
                                     const std::vector<std::string>& declared) {
  FieldReader r(v, path, kProbeFields);
  PALM_RETURN_IF_ERROR(r.Check());
  // `heartbeat:` with nothing after it (null) selects the heartbeat type with defaults.
  std::vector<std::string_view> present;
  for (std::string_view t : kTypes) {
    if (r.Get(t) != nullptr || (t == "heartbeat" && v.contains("heartbeat"))) present.push_back(t);
  }
  if (present.empty()) return Bad(path, "has no probe type", kTypeHint);
  if (present.size() > 1) {
    return Bad(path,
               absl::StrCat("has ", present.size(), " probe types (", Join(present, " and "),
                            "); a probe has exactly one"),
               "split them into separate probes (startup, liveness, readiness) or keep one");
  }
  ProbeSpec p;
  PALM_RETURN_IF_ERROR(r.Number("initial_delay_s", 0, kMaxDelayS, &p.initial_delay_s));
  PALM_RETURN_IF_ERROR(PositiveNumber(r, "period_s", kMinPeriodS, kMaxPeriodS, &p.period_s));
  PALM_RETURN_IF_ERROR(PositiveNumber(r, "timeout_s", 0, kMaxTimeoutS, &p.timeout_s));
  int64_t n = p.success_threshold;
  PALM_RETURN_IF_ERROR(r.Int("success_threshold", 1, kMaxThreshold, &n));
  p.success_threshold = static_cast<int>(n);
  if (p.success_threshold != 1 && kind != "readiness") {
    return Bad(r.Path("success_threshold"),
               absl::StrCat("must be 1 for a ", std::string(kind), " probe, got ", p.success_threshold),
               "as in Kubernetes, only readiness probes may require several successes; "
               "remove the field");
  }
  n = p.failure_threshold;
  PALM_RETURN_IF_ERROR(r.Int("failure_threshold", 1, kMaxThreshold, &n));
  p.failure_threshold = static_cast<int>(n);

  const std::string_view type = present[0];
  if (type == "exec") {
    p.type = ProbeType::kExec;
    PALM_RETURN_IF_ERROR(ReadExec(r, &p.command));
    return p;
  }
  const Json* tv = r.Get(type);
  const Json empty = Json::object();
  FieldReader t(tv != nullptr ? *tv : empty, r.Path(type),
                type == "http"  ? std::vector<std::string_view>{"port", "path"}
                : type == "tcp" ? std::vector<std::string_view>{"port"}
                                : std::vector<std::string_view>{"max_age_s"});
  PALM_RETURN_IF_ERROR(t.Check());
  if (type == "http") {
    p.type = ProbeType::kHttp;
    PALM_RETURN_IF_ERROR(ReadPort(t, declared, &p.port));
    PALM_RETURN_IF_ERROR(ReadHttpPath(t, &p.path));
  } else if (type == "tcp") {
    p.type = ProbeType::kTcp;
    PALM_RETURN_IF_ERROR(ReadPort(t, declared, &p.port));
  } else {
    p.type = ProbeType::kHeartbeat;
    p.max_age_s = 3 * p.period_s;
    PALM_RETURN_IF_ERROR(PositiveNumber(t, "max_age_s", 0, kMaxAgeS, &p.max_age_s));
  }
  return p;
}

}  // namespace

std::string_view ToString(ProbeType t) {
  switch (t) {
    case ProbeType::kHttp:
      return "http";
    case ProbeType::kTcp:
      return "tcp";
    case ProbeType::kExec:
      return "exec";
    case ProbeType::kHeartbeat:
      return "heartbeat";
  }
  return "unknown";
}

absl::StatusOr<HealthCheckSpec> ParseHealthCheck(const Json& j,
                                                 const std::vector<std::string>& declared_ports,
                                                 const std::string& path) {
  HealthCheckSpec hc;
  if (j.is_null()) return hc;
  FieldReader r(j, path, kKinds);
  PALM_RETURN_IF_ERROR(r.Check());
  std::optional<ProbeSpec>* slots[] = {&hc.startup, &hc.liveness, &hc.readiness};
  for (size_t i = 0; i < kKinds.size(); ++i) {
    const Json* v = r.Get(kKinds[i]);
    if (v == nullptr) continue;
    PALM_ASSIGN_OR_RETURN(*slots[i], ParseProbe(*v, r.Path(kKinds[i]), kKinds[i], declared_ports));
  }
  return hc;
}

}  // namespace palm::model
