// UTF-8 at the edges: text that enters palm from outside (probe output, exit messages,
// agent-reported strings, log lines) is made valid UTF-8 once, where it enters, so nothing
// downstream (JSON serialization, the store, the daemon's log) ever sees a bad byte.
// Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace palm {

// Offset of the first byte of `s` that does not start a valid UTF-8 sequence (overlong forms,
// surrogates and code points past U+10FFFF are invalid), or std::string_view::npos.
size_t FindInvalidUtf8(std::string_view s);

// `s` with every invalid sequence replaced by U+FFFD, then cut to at most `max_bytes` at a
// character boundary (never in the middle of a sequence). Valid input shorter than
// `max_bytes` comes back unchanged.
std::string ToValidUtf8(std::string_view s, size_t max_bytes = std::string_view::npos);

// The longest prefix of valid UTF-8 `s` that is at most `max_bytes` long and ends on a
// character boundary. Precondition: `s` is valid UTF-8 (e.g. from ToValidUtf8).
std::string_view CutUtf8(std::string_view s, size_t max_bytes);

}  // namespace palm
