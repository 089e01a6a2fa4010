// Instance <-> JSON (API form and the store's internal form).
#include "absl/strings/str_cat.h"
#include "palm/base/clock.h"
#include "palm/base/error.h"
#include "palm/model/codec.h"
#include "palm/model/field_reader.h"

namespace palm::model {
namespace {

using codec_internal::Bad;
using codec_internal::Describe;
using codec_internal::FieldReader;
using codec_internal::Required;
using codec_internal::TimeJson;

// last_exit always has the same keys; the ones that do not apply are null.
Json ExitJson(const std::optional<ExitInfo>& e) {
  if (!e) return nullptr;
  Json j = {{"code", nullptr}, {"signal", nullptr}, {"signal_number", nullptr},
            {"at", palm::FormatTime(e->at)}};
  if (e->code) j["code"] = *e->code;
  if (e->signal) {
    j["signal"] = SignalName(*e->signal);
    j["signal_number"] = *e->signal;
  }
  return j;
}

absl::Status ReadExit(const FieldReader& parent, std::optional<ExitInfo>* out) {
  out->reset();
  const Json* v = parent.Get("last_exit");
  if (v == nullptr) return absl::OkStatus();
  FieldReader r(*v, parent.Path("last_exit"), {"code", "signal", "signal_number", "at"});
  PALM_RETURN_IF_ERROR(r.Check());
  ExitInfo e;
  std::optional<int64_t> n;
  PALM_RETURN_IF_ERROR(r.OptInt("code", INT32_MIN, INT32_MAX, &n));
  if (n) e.code = static_cast<int>(*n);
  PALM_RETURN_IF_ERROR(r.OptInt("signal_number", 1, 64, &n));
  if (n) {
    e.signal = static_cast<int>(*n);
  } else if (const Json* sig = r.Get("signal")) {
    int s = 0;
    if (!sig->is_string() || !ParseSignal(sig->get<std::string>(), &s)) {
      return Bad(r.Path("signal"), absl::StrCat("must be a signal name, got ", Describe(*sig)));
    }
    e.signal = s;
  }
  PALM_RETURN_IF_ERROR(r.Time("at", &e.at));
  *out = e;
  return absl::OkStatus();
}

absl::Status ReadPorts(const FieldReader& r, std::map<std::string, int>* out) {
  out->clear();
  const Json* v = r.Get("ports");
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_object()) {
    return Bad(r.Path("ports"), absl::StrCat("must be a map of port names to numbers, got ",
                                             Describe(*v)));
  }
  for (const auto& [name, port] : v->items()) {
    int64_t p = 0;
    PALM_RETURN_IF_ERROR(codec_internal::ReadInt(port, r.Path("ports") + "." + name, 0, 65535, &p));
    (*out)[name] = static_cast<int>(p);
  }
  return absl::OkStatus();
}

absl::Status ReadHealth(const FieldReader& parent, Instance* inst) {
  const Json* v = parent.Get("health");
  if (v == nullptr) return absl::OkStatus();
  FieldReader r(*v, parent.Path("health"), {"status", "reason", "since"});
  PALM_RETURN_IF_ERROR(r.Check());
  if (const Json* s = r.Get("status")) {
    if (!s->is_string() || !ParseHealthStatus(s->get<std::string>(), &inst->health)) {
      return Bad(r.Path("status"),
                 absl::StrCat("must be Unknown, Healthy, Degraded or Unhealthy, got ",
                              Describe(*s)));
    }
  }
  PALM_RETURN_IF_ERROR(r.String("reason", &inst->health_reason));
  return r.Time("since", &inst->health_since);
}

// limits: what enforced the instance's resource limits at its last start (null before).
Json LimitsJson(const std::optional<InstanceLimits>& l) {
  if (!l) return nullptr;
  const auto opt = [](const auto& v) { return v ? Json(*v) : Json(nullptr); };
  return {{"enforced_by", l->enforced_by}, {"memory_mb", opt(l->memory_mb)},
          {"max_procs", opt(l->max_procs)}, {"max_open_files", opt(l->max_open_files)},
          {"cpu", l->cpu ? codec_internal::NumberJson(*l->cpu) : Json(nullptr)}};
}

absl::Status ReadLimits(const FieldReader& parent, std::optional<InstanceLimits>* out) {
  out->reset();
  const Json* v = parent.Get("limits");
  if (v == nullptr) return absl::OkStatus();
  FieldReader r(*v, parent.Path("limits"),
                {"enforced_by", "memory_mb", "max_procs", "max_open_files", "cpu"});
  PALM_RETURN_IF_ERROR(r.Check());
  InstanceLimits l;
  PALM_RETURN_IF_ERROR(r.String("enforced_by", &l.enforced_by));
  PALM_RETURN_IF_ERROR(r.OptInt("memory_mb", 1, INT64_MAX, &l.memory_mb));
  PALM_RETURN_IF_ERROR(r.OptInt("max_procs", 1, INT64_MAX, &l.max_procs));
  PALM_RETURN_IF_ERROR(r.OptInt("max_open_files", 1, INT64_MAX, &l.max_open_files));
  PALM_RETURN_IF_ERROR(r.OptNumber("cpu", 0, 1e6, &l.cpu));
  *out = std::move(l);
  return absl::OkStatus();
}

}  // namespace

Json ToJson(const Instance& inst, bool internal) {
  Json j = {
      {"id", inst.id},
      {"tenant", inst.tenant},
      {"deployment", inst.deployment},
      {"spec", inst.spec},
      {"revision", inst.revision},
      {"state", ToString(inst.state)},
      {"pid", inst.pid == 0 ? Json(nullptr) : Json(inst.pid)},
      {"restarts", inst.restarts},
      {"last_exit", ExitJson(inst.last_exit)},
      {"last_error", inst.last_error.empty() ? Json(nullptr) : Json(inst.last_error)},
      {"started_at", TimeJson(inst.started_at)},
      {"ports", inst.ports},
      {"health",
       {{"status", ToString(inst.health)},
        {"reason", inst.health_reason.empty() ? Json(nullptr) : Json(inst.health_reason)},
        {"since", palm::FormatTime(inst.health_since)}}},
      {"ready", inst.ready},
      {"ready_since", TimeJson(inst.ready_since)},
      {"last_heartbeat", TimeJson(inst.last_heartbeat)},
      {"metrics", inst.metrics},
      {"log_path", inst.log_path},
      {"limits", LimitsJson(inst.limits)},
      {"created_at", palm::FormatTime(inst.created_at)},
      {"updated_at", palm::FormatTime(inst.updated_at)},
  };
  if (internal) {
    j["seq"] = inst.seq;
    j["proc_start_time"] = inst.proc_start_time;
    j["proc_boot_id"] = inst.proc_boot_id;
    j["consecutive_failures"] = inst.consecutive_failures;
    j["next_start_at"] = TimeJson(inst.next_start_at);
    j["token_hash"] = inst.token_hash;
  }
  return j;
}

absl::StatusOr<Instance> InstanceFromStored(const Json& doc) {
  FieldReader r(doc, "instance",
                {"id", "tenant", "deployment", "spec", "revision", "state", "pid", "restarts",
                 "last_exit", "last_error", "started_at", "ports", "health", "ready",
                 "ready_since", "last_heartbeat", "metrics", "log_path", "created_at",
                 "updated_at", "seq", "proc_start_time", "consecutive_failures", "next_start_at",
                 "token_hash", "proc_boot_id", "limits"});
  Instance inst;
  absl::Status st = [&]() -> absl::Status {
    PALM_RETURN_IF_ERROR(r.Check());
    PALM_RETURN_IF_ERROR(r.String("id", &inst.id, Required{"the instance id"}));
    PALM_RETURN_IF_ERROR(r.String("tenant", &inst.tenant));
    PALM_RETURN_IF_ERROR(
        r.String("deployment", &inst.deployment, Required{"the owning deployment"}));
    PALM_RETURN_IF_ERROR(r.String("spec", &inst.spec));
    PALM_RETURN_IF_ERROR(r.Int("revision", 0, INT64_MAX, &inst.revision));
    if (const Json* s = r.Get("state")) {
      if (!s->is_string() || !ParseInstanceState(s->get<std::string>(), &inst.state)) {
        return Bad(r.Path("state"), absl::StrCat("is not an instance state: ", Describe(*s)));
      }
    } else {
      return r.Missing("state", Required{"the instance state"});
    }
    int64_t n = 0;
    PALM_RETURN_IF_ERROR(r.Int("pid", 0, INT32_MAX, &n));
    inst.pid = static_cast<int>(n);
    PALM_RETURN_IF_ERROR(r.Int("restarts", 0, INT64_MAX, &inst.restarts));
    PALM_RETURN_IF_ERROR(ReadExit(r, &inst.last_exit));
    PALM_RETURN_IF_ERROR(r.String("last_error", &inst.last_error));
    PALM_RETURN_IF_ERROR(r.OptTime("started_at", &inst.started_at));
    PALM_RETURN_IF_ERROR(ReadPorts(r, &inst.ports));
    PALM_RETURN_IF_ERROR(ReadHealth(r, &inst));
    PALM_RETURN_IF_ERROR(r.Bool("ready", &inst.ready));
    PALM_RETURN_IF_ERROR(r.OptTime("ready_since", &inst.ready_since));
    PALM_RETURN_IF_ERROR(r.OptTime("last_heartbeat", &inst.last_heartbeat));
    PALM_RETURN_IF_ERROR(r.Object("metrics", &inst.metrics));
    PALM_RETURN_IF_ERROR(r.String("log_path", &inst.log_path));
    PALM_RETURN_IF_ERROR(r.Time("created_at", &inst.created_at));
    PALM_RETURN_IF_ERROR(r.Time("updated_at", &inst.updated_at));
    PALM_RETURN_IF_ERROR(r.Int("seq", 0, INT64_MAX, &inst.seq));
    if (const Json* p = r.Get("proc_start_time")) {
      if (!p->is_number_unsigned() && !(p->is_number_integer() && p->get<int64_t>() >= 0)) {
        return Bad(r.Path("proc_start_time"),
                   absl::StrCat("must be a non-negative integer, got ", Describe(*p)));
      }
      inst.proc_start_time = p->get<uint64_t>();
    }
    PALM_RETURN_IF_ERROR(r.String("proc_boot_id", &inst.proc_boot_id));
    PALM_RETURN_IF_ERROR(ReadLimits(r, &inst.limits));
    PALM_RETURN_IF_ERROR(r.Int("consecutive_failures", 0, INT64_MAX, &inst.consecutive_failures));
    PALM_RETURN_IF_ERROR(r.OptTime("next_start_at", &inst.next_start_at));
    return r.String("token_hash", &inst.token_hash);
  }();
  if (!st.ok()) return Annotate(st, "stored instance");
  return inst;
}

}  // namespace palm::model
