// Renders an instance's process from its spec and deployment: argv, environment
// (DESIGN.md section 4), PALM_CONFIG, ports, log path and resource limits. Pure.
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "palm/model/objects.h"
#include "palm/runtime/runtime.h"

namespace palm::controller {

struct TemplateInput {
  const model::AgentSpec& spec;
  const model::Deployment& deployment;
  const model::Instance& instance;  // id, revision, ports and log_path are read
  const std::string& endpoint;      // PALM_ENDPOINT
  const std::string& token;         // PALM_TOKEN (scoped to this instance)
  const std::map<std::string, std::string>& base_env;  // inherited; PALM_* dropped
};

// The spawn request. {{param}} in command, env values and config strings is replaced by the
// spec's params; an unknown {{name}} is kInvalidArgument naming where it appears.
// Environment precedence (later wins): base_env, spec.env, deployment.env, PALM_* variables.
// PALM_CONFIG is the spec's config with the deployment's config merged over it (RFC 7386).
absl::StatusOr<runtime::SpawnRequest> RenderSpawn(const TemplateInput& in);

// The merged config an instance receives (before parameter substitution).
model::Json MergedConfig(const model::AgentSpec& spec, const model::Deployment& d);

}  // namespace palm::controller
