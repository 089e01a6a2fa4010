// Small pure helpers for palm's HTTP/1.1 wire format, shared by the server and the client.
//
// Percent-decoding of paths and query strings, "host:port" parsing, the JSON error body of
// DESIGN.md section 5 and the response head serializer. No I/O. Thread-safe: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace palm::http {

// Decodes %XX escapes; with `plus_as_space` also '+' (query strings). A malformed escape
// ("%zz", a trailing "%") is kept literally rather than rejected.
std::string PercentDecode(std::string_view in, bool plus_as_space);

// Splits a raw target "/a%20b?x=1&y" into the decoded path "/a b" and decoded query pairs
// [("x","1"), ("y","")]. Never fails.
void SplitTarget(std::string_view target, std::string* path,
                 std::vector<std::pair<std::string, std::string>>* query);

struct HostPort {
  std::string host;  // without IPv6 brackets: "::1", "127.0.0.1", "localhost"
  uint16_t port = 0;
};
// Parses "host:port", "[v6]:port" or ":port" (empty host). kInvalidArgument when malformed
// (missing port, port not a number or > 65535, unbalanced brackets).
absl::StatusOr<HostPort> ParseHostPort(std::string_view address);

// Escapes `s` for use inside a JSON string literal (without the quotes).
void AppendJsonEscaped(std::string* out, std::string_view s);
// {"error":{"code":...,"message":...,"hint":...}} (hint omitted when empty).
std::string JsonError(std::string_view code, std::string_view message, std::string_view hint);

// The reason phrase for a status ("Not Found"); "Unknown" for codes it does not know.
std::string_view ReasonPhrase(unsigned status);

// True when `s` may appear in a header name/value without breaking the framing (no CR, LF
// or NUL).
bool IsSafeHeaderText(std::string_view s);

// Case-insensitive ASCII comparison.
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

}  // namespace palm::http
