// The body of POST /v1/agent/heartbeat as a typed value (docs/api.md, Fleet, daemon,
// agents). Pure functions; thread-safe.
#pragma once

#include "absl/status/statusor.h"
#include "palm/controller/supervisor.h"
#include "palm/model/objects.h"

namespace palm::api {

// {status?: "ok"|"degraded", reason?: string|null (at most 1 KiB), metrics?: {name: number}
// (at most 256, names 1 to 128 bytes), cost_usd?: number >= 0}, nothing else. kInvalidArgument naming the field
// ("heartbeat.metrics.load: must be a number").
absl::StatusOr<controller::HeartbeatIn> HeartbeatFromJson(const model::Json& body);

}  // namespace palm::api
