// palm's error vocabulary: absl::Status carrying the API error code and a hint.
//
// Every failure in palm is an absl::Status. The DESIGN.md error object
// {"error": {"code", "message", "hint"}} is built from it: the status message is the
// message, and two optional payloads carry the machine code ("DEPLOYMENT_NOT_FOUND") and
// the hint (what to do). Code without a payload gets a default derived from the
// status code (see ErrorCode). Thread-safe: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace palm {

// Builds a status with `code` (e.g. "SPEC_INVALID") and an optional hint.
absl::Status Error(absl::StatusCode status_code, std::string_view code, std::string_view message,
                   std::string_view hint = {});

// Shorthands for the common cases.
absl::Status InvalidArgument(std::string_view message, std::string_view hint = {});
absl::Status NotFound(std::string_view code, std::string_view message,
                      std::string_view hint = {});
absl::Status Conflict(std::string_view code, std::string_view message,
                      std::string_view hint = {});

// The machine code of `s`: its payload, else a default for its status code
// (kInvalidArgument -> "INVALID_ARGUMENT", kNotFound -> "NOT_FOUND", ...).
std::string ErrorCode(const absl::Status& s);
// The hint of `s`, or "" when none was given.
std::string ErrorHint(const absl::Status& s);

// Returns `s` with "context: " prefixed to its message, payloads kept. OK stays OK.
absl::Status Annotate(const absl::Status& s, std::string_view context);

}  // namespace palm

// Propagates a non-OK status from `expr` (an absl::Status expression).
#define PALM_RETURN_IF_ERROR(expr)                 \
  do {                                             \
    if (auto _palm_st = (expr); !_palm_st.ok()) {  \
      return _palm_st;                             \
    }                                              \
  } while (0)

#define PALM_CONCAT_INNER_(a, b) a##b
#define PALM_CONCAT_(a, b) PALM_CONCAT_INNER_(a, b)
// Assigns the value of an absl::StatusOr expression to `lhs`, or returns its status.
#define PALM_ASSIGN_OR_RETURN(lhs, expr) \
  PALM_ASSIGN_OR_RETURN_IMPL_(PALM_CONCAT_(_palm_sor_, __LINE__), lhs, expr)
#define PALM_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()
