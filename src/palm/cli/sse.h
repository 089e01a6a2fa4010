// Server-Sent Events framing for `palm events --follow` (GET /v1/events?follow=1).
//
// The HTTP client hands over arbitrary slices of the body: an event may be split across
// pieces, even inside a line or between "\r" and "\n". SseParser buffers until an event's
// terminating blank line and returns whole events. Follows the HTML living standard's
// parsing rules: lines end with "\n", "\r\n" or "\r"; lines starting with ':' are comments
// (keepalives); "field: value" drops one space after the colon; several data lines are
// joined with "\n"; an event without data is not dispatched.
// Thread-safety: none; one parser per stream.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace palm::cli {

struct SseEvent {
  std::string id;     // "" when the event had no id field
  std::string event;  // "" when the event had no event field ("message" per the standard)
  std::string data;
};

class SseParser {
 public:
  // Bytes of one unterminated line kept at most; a server that sends more without a line
  // end is broken (events are a few KiB).
  static constexpr size_t kMaxLine = 16 << 20;

  // Consumes `piece` and appends the events it completed to `*out`. Fails with
  // kResourceExhausted when a line grows past kMaxLine; the parser is reset then.
  absl::Status Feed(std::string_view piece, std::vector<SseEvent>* out);

  // Forgets any partial event (after a reconnect the server starts a fresh stream).
  void Reset();

 private:
  void Line(std::string_view line, std::vector<SseEvent>* out);

  std::string buf_;       // the current unterminated line
  bool skip_lf_ = false;  // the last piece ended with "\r": a leading "\n" belongs to it
  SseEvent cur_;
  bool has_data_ = false;
};

}  // namespace palm::cli
