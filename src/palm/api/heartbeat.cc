#include "palm/api/heartbeat.h"

#include "absl/strings/str_cat.h"
#include "palm/api/request.h"
#include "palm/base/error.h"

namespace palm::api {

using model::Json;

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
  }
  if (body.contains("metrics")) {
    const Json& mt = body["metrics"];
    if (!mt.is_object()) return InvalidArgument("heartbeat.metrics: must be an object");
    for (const auto& [k, v] : mt.items()) {
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
