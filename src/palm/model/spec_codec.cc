// AgentSpec <-> JSON, semver and spec references.
#include <csignal>
#include <set>

#include "absl/strings/str_cat.h"
#include "palm/base/clock.h"
#include "palm/base/error.h"
#include "palm/base/log.h"
#include "palm/base/names.h"
#include "palm/model/codec.h"
#include "palm/model/field_reader.h"
#include "palm/model/health_check.h"

namespace palm::model {
namespace {

using codec_internal::Bad;
using codec_internal::Describe;
using codec_internal::FieldReader;
using codec_internal::IndexPath;
using codec_internal::MapKind;
using codec_internal::NumberJson;
using codec_internal::Required;

constexpr size_t kMaxVersionLength = 128;
constexpr size_t kMaxPorts = 32;
constexpr int64_t kMaxMemoryMb = 1'048'576;
constexpr int64_t kMaxLimit = 2'147'483'647;

// Signals a stop may use: the ones agents conventionally handle, plus KILL.
constexpr int kStopSignals[] = {SIGHUP, SIGINT,  SIGQUIT, SIGABRT, SIGKILL, SIGUSR1,
                                SIGUSR2, SIGALRM, SIGTERM, SIGWINCH, SIGPWR};

bool IsAlnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool IsNumeric(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// Dot-separated identifiers of [0-9A-Za-z-]; numeric ones without leading zeros when strict.
bool ValidIdentifiers(std::string_view s, bool no_leading_zeros) {
  if (s.empty()) return false;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    std::string_view id = s.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (id.empty()) return false;
    for (char c : id) {
      if (!IsAlnum(c) && c != '-') return false;
    }
    if (no_leading_zeros && IsNumeric(id) && id.size() > 1 && id[0] == '0') return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

constexpr std::string_view kSemverHint =
    "use a semantic version MAJOR.MINOR.PATCH, e.g. \"1.2.0\" or \"2.0.0-rc.1\"";

absl::Status ParseStopSignal(const Json& v, const std::string& path, int* out) {
  int sig = 0;
  bool ok = false;
  if (v.is_number_integer()) {
    int64_t n = v.get<int64_t>();
    ok = n > 0 && n < 65;
    sig = static_cast<int>(n);
  } else if (v.is_string()) {
    ok = ParseSignal(v.get_ref<const std::string&>(), &sig);
  }
  if (ok) {
    for (int allowed : kStopSignals) {
      if (allowed == sig) {
        *out = sig;
        return absl::OkStatus();
      }
    }
  }
  return Bad(path, absl::StrCat("must be a stop signal, got ", Describe(v)),
             "use SIGTERM (the default), SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, "
             "SIGALRM, SIGABRT, SIGPWR or SIGKILL (a name, with or without SIG, or its number)");
}

absl::Status ReadResources(const FieldReader& parent, Resources* out) {
  const Json* v = parent.Get("resources");
  if (v == nullptr) {
    *out = Resources();
    return absl::OkStatus();
  }
  FieldReader r(*v, parent.Path("resources"), {"memory_mb", "cpu", "max_procs", "max_open_files"});
  PALM_RETURN_IF_ERROR(r.Check());
  PALM_RETURN_IF_ERROR(r.OptInt("memory_mb", 1, kMaxMemoryMb, &out->memory_mb));
  PALM_RETURN_IF_ERROR(r.OptNumber("cpu", 0, 1024, &out->cpu));
  if (out->cpu && *out->cpu <= 0) {
    return Bad(r.Path("cpu"), absl::StrCat("must be a positive number of cores, got ",
                                           Describe(*r.Get("cpu"))),
               "e.g. 0.5 for half a core");
  }
  PALM_RETURN_IF_ERROR(r.OptInt("max_procs", 1, kMaxLimit, &out->max_procs));
  PALM_RETURN_IF_ERROR(r.OptInt("max_open_files", 1, kMaxLimit, &out->max_open_files));
  return absl::OkStatus();
}

absl::Status ReadStop(const FieldReader& parent, StopSpec* out) {
  *out = StopSpec();
  const Json* v = parent.Get("stop");
  if (v == nullptr) return absl::OkStatus();
  FieldReader r(*v, parent.Path("stop"), {"signal", "grace_s"});
  PALM_RETURN_IF_ERROR(r.Check());
  if (const Json* sig = r.Get("signal")) {
    PALM_RETURN_IF_ERROR(ParseStopSignal(*sig, r.Path("signal"), &out->signal));
  }
  return r.Number("grace_s", 0, 3600, &out->grace_s);
}

absl::Status ReadPorts(const FieldReader& r, std::vector<std::string>* out) {
  PALM_RETURN_IF_ERROR(r.StringList("ports", out));
  if (out->size() > kMaxPorts) {
    return Bad(r.Path("ports"), absl::StrCat("declares ", out->size(), " ports (max 32)"));
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < out->size(); ++i) {
    const std::string& p = (*out)[i];
    std::string path = IndexPath(r.Path("ports"), i);
    PALM_RETURN_IF_ERROR(ValidateName(path, p));
    if (!seen.insert(p).second) {
      return Bad(path, absl::StrCat("port \"", p, "\" is declared twice"));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadCapabilities(const FieldReader& r, std::vector<std::string>* out) {
  PALM_RETURN_IF_ERROR(r.StringList("capabilities", out));
  std::set<std::string> seen;
  for (size_t i = 0; i < out->size(); ++i) {
    const std::string& c = (*out)[i];
    std::string path = IndexPath(r.Path("capabilities"), i);
    if (c.size() > 128) return Bad(path, "is longer than 128 characters");
    for (char ch : c) {
      if (static_cast<unsigned char>(ch) <= ' ') {
        return Bad(path, absl::StrCat("\"", c, "\" contains whitespace or a control character"),
                   "capabilities are tool names such as \"payment.initiate\"");
      }
    }
    if (!seen.insert(c).second) return Bad(path, absl::StrCat("\"", c, "\" is listed twice"));
  }
  return absl::OkStatus();
}

const std::vector<std::string_view> kSpecFields = {
    "kind",      "name",  "version", "command", "workdir",      "env",
    "config",    "params", "resources", "ports", "health_check", "capabilities",
    "stop",      "labels"};
const std::vector<std::string_view> kSpecServerFields = {"tenant", "deprecated", "created_at",
                                                         "updated_at", "status"};

absl::StatusOr<AgentSpec> ParseSpec(const Json& doc, bool stored) {
  FieldReader r(doc, "spec", kSpecFields, kSpecServerFields);
  PALM_RETURN_IF_ERROR(r.Check());
  AgentSpec s;
  if (const Json* kind = r.Get("kind"); kind != nullptr && *kind != "AgentSpec") {
    return Bad(r.Path("kind"), absl::StrCat("must be \"AgentSpec\", got ", Describe(*kind)),
               "this command registers agent specs; deployments go to `palm deployment apply`");
  }
  PALM_RETURN_IF_ERROR(r.String("name", &s.name, Required{"the agent's name, e.g. \"buyer\""}));
  PALM_RETURN_IF_ERROR(ValidateName(r.Path("name"), s.name));
  PALM_RETURN_IF_ERROR(
      r.String("version", &s.version, Required{"a semantic version, e.g. \"1.2.0\""}));
  if (s.version.size() > kMaxVersionLength || !IsSemver(s.version)) {
    return Bad(r.Path("version"),
               absl::StrCat("\"", s.version.substr(0, 80), "\" is not a semantic version"),
               kSemverHint);
  }
  if (const Json* cmd = r.Get("command"); cmd != nullptr && cmd->is_string()) {
    return Bad(r.Path("command"), absl::StrCat("must be a list, got ", Describe(*cmd)),
               "palm runs no shell: write the program and each argument as list elements, "
               "e.g. [\"python3\", \"agent.py\"]");
  }
  PALM_RETURN_IF_ERROR(r.StringList(
      "command", &s.command,
      Required{"the program and its arguments, e.g. [\"python3\", \"agent.py\"]"}));
  if (s.command.empty()) {
    return Bad(r.Path("command"), "must not be empty",
               "give the program and its arguments, e.g. [\"python3\", \"agent.py\"]");
  }
  PALM_RETURN_IF_ERROR(r.String("workdir", &s.workdir));
  if (s.workdir.find('\0') != std::string::npos) return Bad(r.Path("workdir"), "contains a NUL byte");
  PALM_RETURN_IF_ERROR(r.Map("env", MapKind::kEnv, &s.env));
  PALM_RETURN_IF_ERROR(r.Object("config", &s.config));
  PALM_RETURN_IF_ERROR(r.Map("params", MapKind::kParams, &s.params));
  PALM_RETURN_IF_ERROR(ReadResources(r, &s.resources));
  PALM_RETURN_IF_ERROR(ReadPorts(r, &s.ports));
  PALM_RETURN_IF_ERROR(r.Object("health_check", &s.health_check));
  if (absl::StatusOr<HealthCheckSpec> hc =
          ParseHealthCheck(s.health_check, s.ports, r.Path("health_check"));
      hc.ok()) {
    s.health = *std::move(hc);
  } else if (!stored) {
    return hc.status();
  } else {
    // Specs registered before probes existed kept health_check unchecked: load them
    // without probes rather than refusing to start the daemon.
    PALM_LOG(kWarning, "spec ", s.name, "@", s.version,
             ": probes disabled: ", hc.status().message());
  }
  PALM_RETURN_IF_ERROR(ReadCapabilities(r, &s.capabilities));
  PALM_RETURN_IF_ERROR(ReadStop(r, &s.stop));
  PALM_RETURN_IF_ERROR(r.Map("labels", MapKind::kLabels, &s.labels));
  if (stored) {
    PALM_RETURN_IF_ERROR(r.String("tenant", &s.tenant));
    PALM_RETURN_IF_ERROR(r.Bool("deprecated", &s.deprecated));
    PALM_RETURN_IF_ERROR(r.Time("created_at", &s.created_at));
    PALM_RETURN_IF_ERROR(r.Time("updated_at", &s.updated_at));
  }
  return s;
}

Json ResourcesJson(const Resources& r) {
  auto opt = [](const auto& o) -> Json {
    if (!o) return nullptr;
    return NumberJson(static_cast<double>(*o));
  };
  return {{"memory_mb", r.memory_mb ? Json(*r.memory_mb) : Json(nullptr)},
          {"cpu", opt(r.cpu)},
          {"max_procs", r.max_procs ? Json(*r.max_procs) : Json(nullptr)},
          {"max_open_files", r.max_open_files ? Json(*r.max_open_files) : Json(nullptr)}};
}

}  // namespace

bool IsSemver(std::string_view v) {
  size_t plus = v.find('+');
  std::string_view build;
  if (plus != std::string_view::npos) {
    build = v.substr(plus + 1);
    v = v.substr(0, plus);
    if (!ValidIdentifiers(build, /*no_leading_zeros=*/false)) return false;
  }
  size_t dash = v.find('-');
  if (dash != std::string_view::npos) {
    if (!ValidIdentifiers(v.substr(dash + 1), /*no_leading_zeros=*/true)) return false;
    v = v.substr(0, dash);
  }
  int parts = 0;
  size_t start = 0;
  while (true) {
    size_t dot = v.find('.', start);
    std::string_view n = v.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (!IsNumeric(n) || (n.size() > 1 && n[0] == '0')) return false;
    ++parts;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return parts == 3;
}

absl::Status ParseSpecRef(std::string_view ref, bool allow_bare, std::string* name,
                          std::string* version) {
  std::string quoted = absl::StrCat("\"", std::string(ref.substr(0, 140)), "\"");
  constexpr std::string_view kForms =
      "write name@version (e.g. \"buyer@1.2.0\") or org/agents/name:version";
  std::string_view n, ver;
  bool has_version = false;
  if (size_t slash = ref.find('/'); slash != std::string_view::npos) {
    // org/agents/name[:version]; the org is informational (the tenant comes from the request).
    std::string_view org = ref.substr(0, slash);
    std::string_view rest = ref.substr(slash + 1);
    if (rest.substr(0, 7) != "agents/" || org.empty()) {
      return InvalidArgument(absl::StrCat(quoted, ": not a spec reference"), kForms);
    }
    PALM_RETURN_IF_ERROR(Annotate(ValidateName("org", org), quoted));
    rest.remove_prefix(7);
    size_t colon = rest.rfind(':');
    n = rest.substr(0, colon);
    if (colon != std::string_view::npos) {
      ver = rest.substr(colon + 1);
      has_version = true;
    }
  } else {
    size_t at = ref.find('@');
    n = ref.substr(0, at);
    if (at != std::string_view::npos) {
      ver = ref.substr(at + 1);
      has_version = true;
    } else if (ref.find(':') != std::string_view::npos) {
      return InvalidArgument(absl::StrCat(quoted, ": use '@' between name and version"), kForms);
    }
  }
  PALM_RETURN_IF_ERROR(Annotate(ValidateName("name", n), quoted));
  if (!has_version && !allow_bare) {
    return InvalidArgument(absl::StrCat(quoted, ": needs a version"), kForms);
  }
  if (has_version && (ver.size() > kMaxVersionLength || !IsSemver(ver))) {
    return InvalidArgument(
        absl::StrCat(quoted, ": version \"", std::string(ver.substr(0, 80)),
                     "\" is not a semantic version"),
        kSemverHint);
  }
  *name = std::string(n);
  *version = std::string(ver);
  return absl::OkStatus();
}

absl::StatusOr<AgentSpec> SpecFromJson(const Json& doc) { return ParseSpec(doc, false); }

absl::StatusOr<AgentSpec> SpecFromStored(const Json& doc) {
  absl::StatusOr<AgentSpec> s = ParseSpec(doc, true);
  if (!s.ok()) return Annotate(s.status(), "stored spec");
  return s;
}

Json SpecBody(const AgentSpec& s) {
  Json j = {{"kind", "AgentSpec"},
            {"name", s.name},
            {"version", s.version},
            {"command", s.command},
            {"workdir", s.workdir},
            {"env", s.env},
            {"config", s.config},
            {"params", s.params},
            {"resources", ResourcesJson(s.resources)},
            {"ports", s.ports},
            {"health_check", s.health_check},
            {"capabilities", s.capabilities},
            {"stop", {{"signal", SignalName(s.stop.signal)}, {"grace_s", NumberJson(s.stop.grace_s)}}},
            {"labels", s.labels}};
  return j;
}

Json ToJson(const AgentSpec& s) {
  Json j = SpecBody(s);
  j["tenant"] = s.tenant;
  j["deprecated"] = s.deprecated;
  j["created_at"] = palm::FormatTime(s.created_at);
  j["updated_at"] = palm::FormatTime(s.updated_at);
  return j;
}

}  // namespace palm::model
