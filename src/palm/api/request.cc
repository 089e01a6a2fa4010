#include "palm/api/request.h"

#include <algorithm>
#include <charconv>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "palm/base/error.h"

namespace palm::api {

using model::Json;

absl::StatusOr<Json> ParseBody(const http::Request& req) {
  std::string ct = req.Header("content-type");
  if (!ct.empty() && !absl::StartsWithIgnoreCase(ct, "application/json")) {
    return Error(absl::StatusCode::kInvalidArgument, "UNSUPPORTED_MEDIA_TYPE",
                 absl::StrCat("Content-Type \"", ct, "\" is not supported"),
                 "send the body as JSON with Content-Type: application/json");
  }
  if (req.body.find_first_not_of(" \t\r\n") == std::string::npos) {
    return Error(absl::StatusCode::kInvalidArgument, "MALFORMED_JSON", "request body is empty",
                 "send a JSON object");
  }
  try {
    return Json::parse(req.body);
  } catch (const Json::parse_error& e) {
    return Error(absl::StatusCode::kInvalidArgument, "MALFORMED_JSON",
                 absl::StrCat("request body is not valid JSON (at byte ", e.byte, "): ",
                              e.what()),
                 "check the JSON syntax, e.g. with `python3 -m json.tool`");
  }
}

absl::Status RequireObject(const Json& body, std::string_view what) {
  if (body.is_object()) return absl::OkStatus();
  return InvalidArgument(absl::StrCat(std::string(what), ": must be a JSON object, got ",
                                      body.type_name()));
}

absl::Status OnlyFields(const Json& body, std::initializer_list<std::string_view> allowed,
                        std::string_view what) {
  for (const auto& [k, v] : body.items()) {
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
      return InvalidArgument(absl::StrCat(std::string(what), ".", k, ": unknown field"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> QueryInt(const http::Request& req, std::string_view name, int64_t min,
                                 int64_t max, int64_t fallback, std::string_view what) {
  auto text = req.Query(name);
  if (!text || text->empty()) return fallback;
  int64_t v = 0;
  auto [p, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (ec != std::errc() || p != text->data() + text->size() || v < min || v > max) {
    return InvalidArgument(absl::StrCat(std::string(name), ": must be ", std::string(what),
                                        " from ", min, " to ", max, ", got \"", *text, "\""));
  }
  return v;
}

Json Page(std::vector<Json> items, const http::Request& req, const char* key) {
  if (req.Query("order").value_or("") == "desc") std::reverse(items.begin(), items.end());
  size_t start = 0;
  if (auto after = req.Query("after"); after && !after->empty()) {
    for (size_t i = 0; i < items.size(); ++i) {
      if (items[i].value(key, std::string()) == *after) {
        start = i + 1;
        break;
      }
    }
  }
  size_t limit = items.size();
  if (auto l = req.Query("limit")) {
    size_t n = 0;
    auto [p, ec] = std::from_chars(l->data(), l->data() + l->size(), n);
    if (ec == std::errc() && n > 0) limit = n;
  }
  Json out = Json::array();
  size_t end = std::min(items.size(), start + limit);
  for (size_t i = start; i < end; ++i) out.push_back(std::move(items[i]));
  Json next = nullptr;
  if (end < items.size() && !out.empty()) next = out.back().value(key, Json());
  return {{"items", std::move(out)}, {"next", next}};
}

}  // namespace palm::api
