#include "palm/cli/sse.h"

#include "absl/strings/str_cat.h"
#include "palm/base/error.h"

namespace palm::cli {

absl::Status SseParser::Feed(std::string_view piece, std::vector<SseEvent>* out) {
  size_t i = 0;
  if (skip_lf_ && !piece.empty()) {
    if (piece[0] == '\n') i = 1;
    skip_lf_ = false;
  }
  while (i < piece.size()) {
    const size_t end = piece.find_first_of("\r\n", i);
    if (end == std::string_view::npos) {
      if (buf_.size() + (piece.size() - i) > kMaxLine) {
        Reset();
        return absl::ResourceExhaustedError(
            absl::StrCat("event stream: a line longer than ", kMaxLine, " bytes"));
      }
      buf_.append(piece.substr(i));
      break;
    }
    if (buf_.empty()) {
      Line(piece.substr(i, end - i), out);
    } else {
      buf_.append(piece.substr(i, end - i));
      std::string line = std::move(buf_);
      buf_.clear();
      Line(line, out);
    }
    i = end + 1;
    if (piece[end] == '\r') {
      if (i < piece.size()) {
        if (piece[i] == '\n') ++i;
      } else {
        skip_lf_ = true;
      }
    }
  }
  return absl::OkStatus();
}

void SseParser::Reset() {
  buf_.clear();
  skip_lf_ = false;
  cur_ = SseEvent();
  has_data_ = false;
}

void SseParser::Line(std::string_view line, std::vector<SseEvent>* out) {
  if (line.empty()) {  // end of an event
    if (has_data_) out->push_back(std::move(cur_));
    cur_ = SseEvent();
    has_data_ = false;
    return;
  }
  if (line[0] == ':') return;  // comment: a keepalive
  std::string_view field = line, value;
  if (const size_t colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) cur_.data.push_back('\n');
    cur_.data.append(value);
    has_data_ = true;
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) cur_.id = std::string(value);
  } else if (field == "event") {
    cur_.event = std::string(value);
  }
  // "retry" and unknown fields are ignored: the CLI has its own reconnect backoff.
}

}  // namespace palm::cli
