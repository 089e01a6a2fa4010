// Mapping between wire formats (JSON, YAML) and the model structs, with validation.
//
// Parsing is strict: unknown fields, wrong types, bad names, empty commands, bad semver
// and out-of-range numbers are refused with kInvalidArgument whose message starts with the
// field path ("spec.resources.memory_mb: must be a positive integer, got -5") and a hint
// saying what to write instead. Nothing here throws: parser exceptions become statuses with
// line and column. Thread-safe: pure functions.
//
// Field paths start with the object: "spec." for an AgentSpec, "deployment." for a
// Deployment, "instance." for a stored Instance; list elements are "spec.command[1]".
// Choices where DESIGN.md is silent:
// - A field set to null is the same as an absent field (YAML `workdir:` with nothing after).
// - env, params and label values: strings; numbers and booleans are accepted and converted
//   to their text as Docker Compose does (4 -> "4", false -> "false", 0.25 -> "0.25");
//   null, lists and objects are refused. Quote values such as "1.10" to keep them verbatim.
// - Server-owned fields (tenant, created_at, updated_at, deprecated, revision,
//   latest_revision, stable_revision, rollout, next_instance_seq, status) in a user document
//   are accepted and ignored, so the output of
//   `palm ... get -o yaml` can be applied again (as kubectl does).
// - Deployment `autoscaling` and `budget` are accepted only as null until those features
//   exist: an object is refused rather than silently ignored.
// - Deployment `agent_ref: org/agents/name:version` may replace `spec`; both are stored as
//   `spec: name@version` (the org part is not kept: the tenant comes from the request).
// - Times are written with millisecond precision (palm::FormatTime); stored forms round
//   trip exactly at that precision.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "palm/model/objects.h"

namespace palm::model {

// The limits of ParseJson and ParseDocument: nesting depth (the top-level value counts as
// level 1), values and bytes of text (after YAML alias expansion).
inline constexpr int kMaxNestingDepth = 64;
inline constexpr int64_t kMaxDocumentValues = 1'000'000;
inline constexpr int64_t kMaxDocumentBytes = 64 << 20;

// Parses JSON text (RFC 8259, one value, nothing after it) into JSON, iteratively and
// within the limits above: the one JSON parser for input from outside (API bodies, files).
// Never throws and never recurses on the input's nesting. kInvalidArgument whose message
// starts with `source` ("request body") and gives the line and column, plus the field when
// known: syntax errors and invalid UTF-8 ("line 1, column 9: syntax error ... (in
// config.a)"), nesting deeper than kMaxNestingDepth ("nesting deeper than 64 levels at
// config.a[0][0]..."), duplicate keys ("duplicate key \"name\" in the top level"),
// numbers that do not fit a double ("config.a: the number 1e400 is out of range ..."), more
// than kMaxDocumentValues values. Thread-safe.
absl::StatusOr<Json> ParseJson(std::string_view text, std::string_view source);

// Parses a JSON or YAML document (YAML 1.2 is a superset of JSON) into JSON. `source`
// names the input in messages ("spec.yaml"). Refuses empty documents, several documents,
// YAML aliases/tags that do not map to JSON, nesting deeper than 64 levels.
// Details: a `source` ending in ".json" is parsed as JSON only; text starting with '{' or
// '[' is tried as JSON first (errors "spec.json: line 3, column 7: ..."), then as YAML flow
// style. Plain YAML scalars are typed by the YAML 1.2 core schema (true/false, null/~,
// ints incl. 0x/0o, floats; .inf/.nan refused), quoted ones stay strings; map keys must
// be strings; duplicate keys are refused in both formats; anchors, aliases and "<<" merge
// keys are expanded, at most 1,000,000 values and 64 MiB of text after expansion.
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
