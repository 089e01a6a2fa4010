// The `health_check` block of an AgentSpec (DESIGN.md section 3): startup, liveness and
// readiness probes with Kubernetes semantics and defaults.
//
// Wire form (each probe has exactly one type key plus optional timing fields):
//   liveness:  {http: {port: http, path: /healthz}, initial_delay_s: 0, period_s: 10,
//               timeout_s: 1, success_threshold: 1, failure_threshold: 3}
//   readiness: {heartbeat: {max_age_s: 15}}
//   startup:   {tcp: {port: http}}          # or exec: [cmd, args...] / exec: {command: [...]}
// Defaults (Kubernetes): initial_delay_s 0, period_s 10, timeout_s 1, success_threshold 1,
// failure_threshold 3; http path "/"; heartbeat max_age_s = 3 x period_s (30 s by default:
// three missed heartbeat periods of a probe checked every period_s).
// Limits: initial_delay_s 0..3600, period_s 0.1..3600, timeout_s (0, 600], thresholds
// 1..1000 (success_threshold must be 1 on liveness and startup, as Kubernetes requires),
// max_age_s (0, 86400], http path starting with '/' (at most 2048 bytes, no whitespace or
// control characters), exec commands of 1..64 arguments, http/tcp ports must name one of the
// spec's declared `ports`. `heartbeat:` with a null value means heartbeat with defaults.
//
// Thread-safe: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace palm::model {

using Json = nlohmann::json;

enum class ProbeType { kHttp, kTcp, kExec, kHeartbeat };
// "http" | "tcp" | "exec" | "heartbeat".
std::string_view ToString(ProbeType t);

struct ProbeSpec {
  ProbeType type = ProbeType::kHttp;
  std::string port;                  // http, tcp: a declared port name
  std::string path = "/";            // http
  std::vector<std::string> command;  // exec: argv, argv[0] searched on PATH
  double max_age_s = 30;             // heartbeat
  double initial_delay_s = 0;
  double period_s = 10;
  double timeout_s = 1;
  int success_threshold = 1;
  int failure_threshold = 3;
};

struct HealthCheckSpec {
  std::optional<ProbeSpec> startup;
  std::optional<ProbeSpec> liveness;
  std::optional<ProbeSpec> readiness;
  bool empty() const { return !startup && !liveness && !readiness; }
};

// Parses and validates `j` (the spec's health_check object; null or {} = no probes).
// `declared_ports` are the spec's `ports`; `path` prefixes every message
// ("spec.health_check"). Fails with kInvalidArgument "<path>.<field>: <problem>" and a hint.
absl::StatusOr<HealthCheckSpec> ParseHealthCheck(const Json& j,
                                                 const std::vector<std::string>& declared_ports,
                                                 const std::string& path);

}  // namespace palm::model
