#include "palm/api/request.h"

#include <algorithm>
#include <charconv>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "palm/base/error.h"
#include "palm/base/names.h"
#include "palm/base/utf8.h"
#include "palm/model/codec.h"

namespace palm::api {

using model::Json;

namespace {

constexpr std::string_view kJsonHint = "send the body as JSON with Content-Type: application/json";
// How much of a refused value a message quotes.
constexpr size_t kMaxQuotedBytes = 64;

// absl here is built with its own string_view: convert at the calls.
absl::string_view A(std::string_view s) { return {s.data(), s.size()}; }
std::string_view S(absl::string_view s) { return {s.data(), s.size()}; }

std::string Join(const std::vector<std::string_view>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += sep;
    out += parts[i];
  }
  return out;
}

std::string Quoted(std::string_view value) {
  std::string v = ToValidUtf8(value, kMaxQuotedBytes);
  return absl::StrCat("\"", v, v.size() < value.size() ? "...\"" : "\"");
}

absl::Status UnsupportedMediaType(std::string_view content_type, const char* why = nullptr) {
  return Error(absl::StatusCode::kInvalidArgument, "UNSUPPORTED_MEDIA_TYPE",
               absl::StrCat("Content-Type ", Quoted(content_type), " is not supported",
                            why ? absl::StrCat(" (", why, ")") : ""),
               kJsonHint);
}

// The value as an integer, or nullopt when it is not exactly a decimal integer.
std::optional<int64_t> ParseInt(std::string_view text) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size()) return std::nullopt;
  return v;
}

absl::Status BadInt(std::string_view name, std::string_view unit, int64_t min, int64_t max,
                    std::string_view value) {
  return InvalidArgument(absl::StrCat(A(name), ": must be ", A(unit), " from ", min, " to ", max,
                                      ", got ", Quoted(value)));
}

absl::Status CheckValue(const QueryParam& p, std::string_view value) {
  if (value.empty() && p.kind != QueryParam::Kind::kInt) {
    return InvalidArgument(absl::StrCat(A(p.name), ": is empty"),
                           absl::StrCat("give ", A(p.name), " a value, or leave it out"));
  }
  switch (p.kind) {
    case QueryParam::Kind::kInt: {
      std::optional<int64_t> v = ParseInt(value);
      if (!v || *v < p.min || *v > p.max) return BadInt(p.name, p.unit, p.min, p.max, value);
      return absl::OkStatus();
    }
    case QueryParam::Kind::kEnum:
      if (std::find(p.values.begin(), p.values.end(), value) != p.values.end()) {
        return absl::OkStatus();
      }
      return InvalidArgument(absl::StrCat(A(p.name), ": must be ", Join(p.values, " or "),
                                          ", got ", Quoted(value)));
    case QueryParam::Kind::kName:
      return ValidateName(p.name, value);
    case QueryParam::Kind::kFlag:
      if (value == "1" || value == "0" || value == "true" || value == "false") {
        return absl::OkStatus();
      }
      return InvalidArgument(absl::StrCat(A(p.name), ": must be 1, 0, true or false, got ",
                                          Quoted(value)));
    case QueryParam::Kind::kCheck:
      return p.check(p.name, value);
  }
  return absl::OkStatus();
}

const QueryParam* Find(const QuerySpec& spec, std::string_view name) {
  for (const QueryParam& p : spec) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

}  // namespace

// ---- bodies ----

absl::Status CheckJsonContentType(std::string_view content_type) {
  if (absl::StripAsciiWhitespace(A(content_type)).empty()) return absl::OkStatus();
  std::vector<absl::string_view> parts = absl::StrSplit(A(content_type), ';');
  if (!absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(parts[0]), "application/json")) {
    return UnsupportedMediaType(content_type);
  }
  for (size_t i = 1; i < parts.size(); ++i) {
    absl::string_view param = absl::StripAsciiWhitespace(parts[i]);
    if (param.empty()) continue;
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(param, '=');
    if (!absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(kv.first), "charset")) continue;
    absl::string_view charset = absl::StripAsciiWhitespace(kv.second);
    if (charset.size() >= 2 && charset.front() == '"' && charset.back() == '"') {
      charset = charset.substr(1, charset.size() - 2);
    }
    if (!absl::EqualsIgnoreCase(charset, "utf-8")) {
      return UnsupportedMediaType(content_type, "JSON is UTF-8");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Json> ParseBody(const http::Request& req) {
  PALM_RETURN_IF_ERROR(CheckJsonContentType(req.Header("content-type")));
  if (req.body.find_first_not_of(" \t\r\n") == std::string::npos) {
    return Error(absl::StatusCode::kInvalidArgument, "MALFORMED_JSON", "request body is empty",
                 "send a JSON object");
  }
  absl::StatusOr<Json> doc = model::ParseJson(req.body, "request body is not valid JSON");
  if (!doc.ok()) {
    return Error(absl::StatusCode::kInvalidArgument, "MALFORMED_JSON", S(doc.status().message()),
                 absl::StrCat("send one JSON value (RFC 8259) without duplicate keys, nested at "
                              "most ", model::kMaxNestingDepth, " levels deep"));
  }
  return doc;
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

// ---- queries ----

QueryParam IntParam(std::string_view name, int64_t min, int64_t max, std::string_view unit) {
  QueryParam p{name, QueryParam::Kind::kInt};
  p.min = min;
  p.max = max;
  p.unit = unit;
  return p;
}

QueryParam EnumParam(std::string_view name, std::vector<std::string_view> values) {
  QueryParam p{name, QueryParam::Kind::kEnum};
  p.values = std::move(values);
  return p;
}

QueryParam NameParam(std::string_view name) { return {name, QueryParam::Kind::kName}; }

QueryParam FlagParam(std::string_view name) { return {name, QueryParam::Kind::kFlag}; }

QueryParam CheckedParam(std::string_view name,
                        absl::Status (*check)(std::string_view name, std::string_view value)) {
  QueryParam p{name, QueryParam::Kind::kCheck};
  p.check = check;
  return p;
}

QuerySpec ListParams(int64_t max_limit,
                     absl::Status (*cursor)(std::string_view name, std::string_view value)) {
  return {IntParam("limit", 1, max_limit), CheckedParam("after", cursor),
          EnumParam("order", {"asc", "desc"})};
}

QuerySpec Concat(QuerySpec a, const QuerySpec& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

const QuerySpec& CommonQuery() {
  static const QuerySpec* common = new QuerySpec{NameParam("tenant")};
  return *common;
}

absl::Status ValidateQuery(const http::Request& req, const QuerySpec& accepted) {
  const bool v1 = absl::StartsWith(req.path, "/v1/");
  for (size_t i = 0; i < req.query.size(); ++i) {
    const auto& [name, value] = req.query[i];
    const QueryParam* p = Find(accepted, name);
    if (p == nullptr && v1) p = Find(CommonQuery(), name);
    if (p == nullptr) {
      std::vector<std::string_view> names;
      for (const QueryParam& a : accepted) names.push_back(a.name);
      if (v1) {
        for (const QueryParam& a : CommonQuery()) names.push_back(a.name);
      }
      return InvalidArgument(
          absl::StrCat("unknown query parameter ", Quoted(name), " for ", req.method, " ",
                       req.path),
          names.empty() ? std::string("this endpoint takes no query parameters")
                        : absl::StrCat("this endpoint accepts: ", Join(names, ", ")));
    }
    for (size_t j = 0; j < i; ++j) {
      if (req.query[j].first == name) {
        return InvalidArgument(absl::StrCat("query parameter ", Quoted(name), " is given twice"),
                               "give each query parameter once");
      }
    }
    PALM_RETURN_IF_ERROR(CheckValue(*p, value));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> QueryInt(const http::Request& req, std::string_view name, int64_t min,
                                 int64_t max, int64_t fallback, std::string_view what) {
  std::optional<std::string> text = req.Query(name);
  if (!text) return fallback;
  PALM_RETURN_IF_ERROR(CheckValue(IntParam(name, min, max, what), *text));
  return *ParseInt(*text);
}

bool QueryFlag(const http::Request& req, std::string_view name) {
  std::optional<std::string> v = req.Query(name);
  return v && (*v == "1" || *v == "true");
}

absl::StatusOr<Json> Page(std::vector<Json> items, const http::Request& req, const char* key) {
  if (req.Query("order").value_or("") == "desc") std::reverse(items.begin(), items.end());
  size_t start = 0;
  if (std::optional<std::string> after = req.Query("after")) {
    auto it = std::find_if(items.begin(), items.end(), [&](const Json& item) {
      const Json* k = item.contains(key) ? &item[key] : nullptr;
      return k != nullptr && k->is_string() && k->get_ref<const std::string&>() == *after;
    });
    if (it == items.end()) {
      return Error(absl::StatusCode::kNotFound, "CURSOR_EXPIRED",
                   absl::StrCat("after: ", Quoted(*after),
                                " is not in this list (deleted since the previous page, or never "
                                "in it), so there is no place to resume from"),
                   "list again from the start (without after=)");
    }
    start = static_cast<size_t>(it - items.begin()) + 1;
  }
  size_t limit = items.size();
  if (std::optional<std::string> l = req.Query("limit")) {
    if (std::optional<int64_t> n = ParseInt(*l); n && *n > 0) limit = static_cast<size_t>(*n);
  }
  Json out = Json::array();
  size_t end = start + std::min(limit, items.size() - start);
  for (size_t i = start; i < end; ++i) out.push_back(std::move(items[i]));
  Json next = nullptr;
  if (end < items.size() && !out.empty()) next = out.back().value(key, Json());
  return Json{{"items", std::move(out)}, {"next", next}};
}

}  // namespace palm::api
