#include "palm/api/heartbeat.h"

#include "absl/strings/str_cat.h"
#include "palm/api/request.h"
#include "palm/base/error.h"

namespace palm::api {

using model::Json;

namespace {
// A heartbeat is soft state kept in memory per instance and shown in every instance read:
// what one may carry is bounded.
constexpr size_t kMaxReasonBytes = 1024;
constexpr size_t kMaxMetrics = 256;
constexpr size_t kMaxMetricNameBytes = 128;
}  // namespace

absl::StatusOr<controller::HeartbeatIn> HeartbeatFromJson(const Json& body) {
  PALM_RETURN_IF_ERROR(RequireObject(body, "heartbeat"));
  PALM_RETURN_IF_ERROR(OnlyFields(body, {"status", "reason", "metrics", "cost_usd"}, "heartbeat"));
  controller::HeartbeatIn in;
  if (body.contains("status")) {
    const Json& s = body["status"];
    if (!s.is_string() || (s != "ok" && s != "degraded")) {
      return InvalidArgument("heartbeat.status: must be \"ok\" or \"degraded\"");
    }
    in.status = s.get<std::string>();
  }
  if (body.contains("reason") && !body["reason"].is_null()) {
    if (!body["reason"].is_string()) return InvalidArgument("heartbeat.reason: must be a string");
    in.reason = body["reason"].get<std::string>();
    if (in.reason.size() > kMaxReasonBytes) {
      return InvalidArgument(absl::StrCat("heartbeat.reason: ", in.reason.size(),
                                          " bytes is over the limit of ", kMaxReasonBytes),
                             "say why in a sentence; details belong in the agent's log");
    }
  }
  if (body.contains("metrics")) {
    const Json& mt = body["metrics"];
    if (!mt.is_object()) return InvalidArgument("heartbeat.metrics: must be an object");
    if (mt.size() > kMaxMetrics) {
      return InvalidArgument(absl::StrCat("heartbeat.metrics: ", mt.size(),
                                          " metrics is over the limit of ", kMaxMetrics));
    }
    for (const auto& [k, v] : mt.items()) {
      if (k.empty() || k.size() > kMaxMetricNameBytes) {
        return InvalidArgument(absl::StrCat("heartbeat.metrics: a name must be 1 to ",
                                            kMaxMetricNameBytes, " bytes, got ", k.size()));
      }
      if (!v.is_number()) {
        return InvalidArgument(absl::StrCat("heartbeat.metrics.", k, ": must be a number"));
      }
    }
    in.metrics = mt;
  }
  if (body.contains("cost_usd")) {
    if (!body["cost_usd"].is_number() || body["cost_usd"].get<double>() < 0) {
      return InvalidArgument("heartbeat.cost_usd: must be a number >= 0");
    }
    in.cost_usd = body["cost_usd"].get<double>();
  }
  return in;
}

}  // namespace palm::api
