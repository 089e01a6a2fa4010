// The pieces of the CLI that need no daemon: exit codes, the error vocabulary of the
// command line (API error -> status -> exit code and stderr line), durations, URL encoding.
//
// Errors are absl::Status built with palm::Error(): the API's error code and hint travel as
// payloads, so one function (ExitCodeFor) turns any failure into DESIGN.md's exit codes.
// Thread-safe: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace palm::cli {

// Key order of the API's documents is kept so `-o json` prints exactly what the API returned.
using Doc = nlohmann::ordered_json;

// Exit codes of DESIGN.md section 2.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitNotFound = 3;
inline constexpr int kExitRefused = 4;
inline constexpr int kExitTimeout = 5;

// Error code carried by command-line usage errors (exit 2).
inline constexpr std::string_view kUsageError = "USAGE_ERROR";

// A usage error (exit 2) with an optional hint.
absl::Status UsageError(std::string_view message, std::string_view hint = {});

// Parses "30s", "5m", "1h", "500ms", "1m30s" or plain seconds ("30", "1.5").
// Fails with a usage error on anything else, including negative durations.
absl::StatusOr<absl::Duration> ParseDuration(std::string_view text);

// DESIGN.md exit code for a failure: usage 2, not found 3, refused by policy / kill
// switch / budget 4, timed out 5, anything else 1. OK maps to 0.
int ExitCodeFor(const absl::Status& status);

// Builds the status for a non-2xx API answer from its body
// ({"error": {"code", "message", "hint"}}), falling back to the HTTP status line when the
// body is not an error object.
absl::Status StatusFromHttp(unsigned http_status, std::string_view body);

// Formats `status` as the CLI prints it: "error: <message>" and, when present,
// "\nhint: <hint>". No trailing newline.
std::string FormatError(const absl::Status& status);

// Percent-encodes a query parameter value.
std::string UrlEncode(std::string_view s);

}  // namespace palm::cli
