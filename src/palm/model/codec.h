// Mapping between wire formats (JSON, YAML) and the model structs, with validation.
//
// Parsing is strict: unknown fields, wrong types, bad names, empty commands, bad semver
// and out-of-range numbers are refused with kInvalidArgument whose message starts with the
// field path ("spec.resources.memory_mb: must be a positive integer, got -5") and a hint
// saying what to write instead. Nothing here throws: parser exceptions become statuses with
// line and column. Thread-safe: pure functions.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "palm/model/objects.h"

namespace palm::model {

// Parses a JSON or YAML document (YAML 1.2 is a superset of JSON) into JSON. `source`
// names the input in messages ("spec.yaml"). Refuses empty documents, several documents,
// YAML aliases/tags that do not map to JSON, nesting deeper than 64 levels.
absl::StatusOr<Json> ParseDocument(std::string_view text, std::string_view source);

// Strict semver 2.0.0 (MAJOR.MINOR.PATCH[-pre][+build]).
bool IsSemver(std::string_view v);

// Splits "name@version" (or "org/agents/name:version", the agent_ref form) into parts.
// Version may be empty ("name") when `allow_bare` is true.
absl::Status ParseSpecRef(std::string_view ref, bool allow_bare, std::string* name,
                          std::string* version);

// AgentSpec from its document. `kind: AgentSpec` is optional but when present must match.
// Timestamps, tenant and deprecated are not read from input (the daemon owns them).
absl::StatusOr<AgentSpec> SpecFromJson(const Json& doc);
// The spec's document as the API returns it (all fields, times in RFC 3339).
Json ToJson(const AgentSpec& spec);
// The spec's document without server-owned fields (tenant, times, deprecated): what was
// registered. Two registrations are "the same body" iff these compare equal.
Json SpecBody(const AgentSpec& spec);
// Reads back what ToJson wrote (the store's form); lenient about server-owned fields.
absl::StatusOr<AgentSpec> SpecFromStored(const Json& doc);

// Deployment from a user document (`palm deployment apply -f`, POST /v1/deployments).
// Defaults as DESIGN.md section 3: replicas 1, restart_policy always/1/300/600, history 10.
// replicas must be 0..10000.
absl::StatusOr<Deployment> DeploymentFromJson(const Json& doc);
// The deployment's document (desired state + revision bookkeeping), without `status`.
Json ToJson(const Deployment& d);
absl::StatusOr<Deployment> DeploymentFromStored(const Json& doc);

// The instance as the API returns it (DESIGN.md section 3, Instance). `internal` adds the
// fields only the store keeps (token_hash, proc_start_time, consecutive_failures, seq,
// next_start_at).
Json ToJson(const Instance& inst, bool internal = false);
absl::StatusOr<Instance> InstanceFromStored(const Json& doc);

}  // namespace palm::model
