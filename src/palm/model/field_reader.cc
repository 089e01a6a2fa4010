#include "palm/model/field_reader.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "palm/base/clock.h"
#include "palm/base/error.h"

namespace palm::model::codec_internal {
namespace {

constexpr size_t kMaxShown = 60;

// Names users bring from Docker Compose, Kubernetes and PM2.
constexpr std::pair<std::string_view, std::string_view> kAliases[] = {
    {"environment", "env"},       {"cmd", "command"},          {"args", "command"},
    {"healthcheck", "health_check"}, {"health", "health_check"}, {"replica", "replicas"},
    {"restart", "restart_policy"}, {"working_dir", "workdir"},  {"cwd", "workdir"},
    {"image", "command"},          {"resource", "resources"},  {"port", "ports"},
    {"label", "labels"},           {"capability", "capabilities"},
};

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string JoinNames(const std::vector<std::string_view>& names) {
  std::string out;
  for (std::string_view n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

bool IsInteger(const Json& v) {
  if (v.is_number_integer()) return true;
  if (!v.is_number_float()) return false;
  double d = v.get<double>();
  return std::isfinite(d) && std::trunc(d) == d;
}

std::string Quote(std::string_view s) {
  std::string shown(s.substr(0, kMaxShown));
  // dump() would throw on invalid UTF-8 cut in half; replace instead.
  std::string q = Json(shown).dump(-1, ' ', false, Json::error_handler_t::replace);
  if (s.size() > kMaxShown) q.insert(q.size() - 1, "...");
  return q;
}

absl::Status CheckMapKey(std::string_view key, const std::string& path, MapKind kind) {
  auto bad = [&](std::string_view why, std::string_view hint) {
    return Bad(path, absl::StrCat("key ", Quote(key), " ", std::string(why)), hint);
  };
  if (key.empty()) return bad("is empty", "give every entry a name");
  switch (kind) {
    case MapKind::kEnv:
      if (key.find('=') != std::string_view::npos || key.find('\0') != std::string_view::npos) {
        return bad("contains '=' or a NUL byte", "environment variable names cannot contain '='");
      }
      break;
    case MapKind::kParams:
      for (char c : key) {
        if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' &&
            c != '-') {
          return bad(absl::StrCat("contains '", std::string(1, c), "'"),
                     "parameter names use letters, digits, '_', '.' and '-'");
        }
      }
      break;
    case MapKind::kLabels:
      if (key.size() > 63) {
        return bad(absl::StrCat("is ", key.size(), " characters long (max 63)"),
                   "use a shorter label key");
      }
      for (char c : key) {
        if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' &&
            c != '-' && c != '/') {
          return bad(absl::StrCat("contains '", std::string(1, c), "'"),
                     "label keys use letters, digits, '.', '_', '-' and '/'");
        }
      }
      break;
  }
  return absl::OkStatus();
}

}  // namespace

std::string Describe(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::string: return absl::StrCat("string ", Quote(v.get_ref<const std::string&>()));
    case Json::value_t::boolean: return v.get<bool>() ? "true" : "false";
    case Json::value_t::object: return "an object";
    case Json::value_t::array: return "a list";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float: return v.dump();
    default: return "a binary value";
  }
}

std::string ChildPath(std::string_view parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  return absl::StrCat(std::string(parent), ".", std::string(key));
}

std::string IndexPath(std::string_view parent, size_t index) {
  return absl::StrCat(std::string(parent), "[", index, "]");
}

absl::Status Bad(std::string_view path, std::string_view problem, std::string_view hint) {
  return InvalidArgument(absl::StrCat(std::string(path), ": ", std::string(problem)), hint);
}

std::string Suggest(std::string_view key, const std::vector<std::string_view>& candidates) {
  std::string lower = absl::AsciiStrToLower(std::string(key));
  for (std::string_view c : candidates) {
    if (c == lower) return std::string(c);
  }
  for (const auto& [alias, target] : kAliases) {
    if (alias == lower && std::find(candidates.begin(), candidates.end(), target) !=
                              candidates.end()) {
      return std::string(target);
    }
  }
  // A unit suffix left off: "memory" -> "memory_mb", "grace" -> "grace_s".
  for (std::string_view c : candidates) {
    if (c.size() > lower.size() + 1 && c.substr(0, lower.size()) == lower &&
        c[lower.size()] == '_' && c.size() - lower.size() <= 3) {
      return std::string(c);
    }
  }
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (std::string_view c : candidates) {
    size_t d = EditDistance(lower, c);
    if (d < best_d) {
      best_d = d;
      best = std::string(c);
    }
  }
  size_t limit = lower.size() <= 3 ? 1 : 2;
  return best_d <= limit ? best : "";
}

absl::Status ReadString(const Json& v, const std::string& path, std::string* out) {
  if (!v.is_string()) return Bad(path, absl::StrCat("must be a string, got ", Describe(v)));
  *out = v.get<std::string>();
  return absl::OkStatus();
}

absl::Status ReadInt(const Json& v, const std::string& path, int64_t min, int64_t max,
                     int64_t* out) {
  if (!v.is_number() || !IsInteger(v)) {
    return Bad(path, absl::StrCat("must be an integer, got ", Describe(v)));
  }
  bool too_big = false, too_small = false;
  int64_t n = 0;
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    too_big = u > static_cast<uint64_t>(max);
    n = too_big ? max : static_cast<int64_t>(u);
  } else if (v.is_number_integer()) {
    n = v.get<int64_t>();
  } else {
    double d = v.get<double>();
    too_big = d > static_cast<double>(max);
    too_small = d < static_cast<double>(min);
    if (!too_big && !too_small) n = static_cast<int64_t>(d);
  }
  too_big = too_big || (!too_small && n > max);
  too_small = too_small || (!too_big && n < min);
  if (too_small) {
    if (min == 1) return Bad(path, absl::StrCat("must be a positive integer, got ", Describe(v)));
    if (min == 0) return Bad(path, absl::StrCat("must not be negative, got ", Describe(v)));
    return Bad(path, absl::StrCat("must be at least ", min, ", got ", Describe(v)));
  }
  if (too_big) return Bad(path, absl::StrCat("must be at most ", max, ", got ", Describe(v)));
  *out = n;
  return absl::OkStatus();
}

absl::Status ReadNumber(const Json& v, const std::string& path, double min, double max,
                        double* out) {
  if (!v.is_number()) return Bad(path, absl::StrCat("must be a number, got ", Describe(v)));
  double d = v.get<double>();
  if (!std::isfinite(d)) return Bad(path, "must be a finite number");
  if (d < min) {
    if (min == 0) return Bad(path, absl::StrCat("must not be negative, got ", Describe(v)));
    return Bad(path, absl::StrCat("must be at least ", min, ", got ", Describe(v)));
  }
  if (d > max) return Bad(path, absl::StrCat("must be at most ", max, ", got ", Describe(v)));
  *out = d;
  return absl::OkStatus();
}

absl::Status ReadTime(const Json& v, const std::string& path, absl::Time* out) {
  if (!v.is_string() || !palm::ParseTime(v.get_ref<const std::string&>(), out)) {
    return Bad(path, absl::StrCat("must be an RFC 3339 time, got ", Describe(v)),
               "write e.g. \"2026-11-22T19:08:06.123Z\"");
  }
  return absl::OkStatus();
}

absl::Status ReadStringMap(const Json& v, const std::string& path, MapKind kind,
                           StringMap* out) {
  if (!v.is_object()) {
    return Bad(path, absl::StrCat("must be a map of names to strings, got ", Describe(v)),
               "write e.g. {MODEL: small}");
  }
  StringMap result;
  for (const auto& [key, value] : v.items()) {
    PALM_RETURN_IF_ERROR(CheckMapKey(key, path, kind));
    std::string item_path = ChildPath(path, key);
    std::string text;
    // Like Docker Compose: numbers and booleans become their text; anything else is refused.
    if (value.is_string()) {
      text = value.get<std::string>();
    } else if (value.is_boolean()) {
      text = value.get<bool>() ? "true" : "false";
    } else if (value.is_number()) {
      text = value.dump();
    } else {
      return Bad(item_path, absl::StrCat("must be a string, got ", Describe(value)),
                 "quote the value; write \"\" for an empty one");
    }
    if (text.find('\0') != std::string::npos) return Bad(item_path, "contains a NUL byte");
    if (kind == MapKind::kLabels && text.size() > 256) {
      return Bad(item_path, absl::StrCat("is ", text.size(), " characters long (max 256)"));
    }
    result.emplace(key, std::move(text));
  }
  *out = std::move(result);
  return absl::OkStatus();
}

FieldReader::FieldReader(const Json& obj, std::string path, std::vector<std::string_view> known,
                         std::vector<std::string_view> ignored)
    : obj_(obj), path_(std::move(path)), known_(std::move(known)), ignored_(std::move(ignored)) {}

absl::Status FieldReader::Check() const {
  if (!obj_.is_object()) {
    return Bad(path_.empty() ? "document" : path_,
               absl::StrCat("must be an object, got ", Describe(obj_)),
               absl::StrCat("fields: ", JoinNames(known_)));
  }
  for (const auto& [key, value] : obj_.items()) {
    if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
    if (std::find(ignored_.begin(), ignored_.end(), key) != ignored_.end()) continue;
    std::string suggestion = Suggest(key, known_);
    std::string problem = "unknown field";
    if (!suggestion.empty()) absl::StrAppend(&problem, "; did you mean \"", suggestion, "\"?");
    return Bad(ChildPath(path_, key), problem,
               absl::StrCat("known fields: ", JoinNames(known_)));
  }
  return absl::OkStatus();
}

const Json* FieldReader::Get(std::string_view key) const {
  if (!obj_.is_object()) return nullptr;
  auto it = obj_.find(key);
  if (it == obj_.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::Status FieldReader::Missing(std::string_view key, Required req) const {
  return Bad(Path(key), absl::StrCat("required (", std::string(req.what), ")"));
}

absl::Status FieldReader::String(std::string_view key, std::string* out, Required req) const {
  const Json* v = Get(key);
  if (v == nullptr) return req.what.empty() ? absl::OkStatus() : Missing(key, req);
  return ReadString(*v, Path(key), out);
}

absl::Status FieldReader::Int(std::string_view key, int64_t min, int64_t max, int64_t* out,
                              Required req) const {
  const Json* v = Get(key);
  if (v == nullptr) return req.what.empty() ? absl::OkStatus() : Missing(key, req);
  return ReadInt(*v, Path(key), min, max, out);
}

absl::Status FieldReader::OptInt(std::string_view key, int64_t min, int64_t max,
                                 std::optional<int64_t>* out) const {
  const Json* v = Get(key);
  if (v == nullptr) {
    out->reset();
    return absl::OkStatus();
  }
  int64_t n = 0;
  PALM_RETURN_IF_ERROR(ReadInt(*v, Path(key), min, max, &n));
  *out = n;
  return absl::OkStatus();
}

absl::Status FieldReader::Number(std::string_view key, double min, double max,
                                 double* out) const {
  const Json* v = Get(key);
  if (v == nullptr) return absl::OkStatus();
  return ReadNumber(*v, Path(key), min, max, out);
}

absl::Status FieldReader::OptNumber(std::string_view key, double min, double max,
                                    std::optional<double>* out) const {
  const Json* v = Get(key);
  if (v == nullptr) {
    out->reset();
    return absl::OkStatus();
  }
  double d = 0;
  PALM_RETURN_IF_ERROR(ReadNumber(*v, Path(key), min, max, &d));
  *out = d;
  return absl::OkStatus();
}

absl::Status FieldReader::Bool(std::string_view key, bool* out) const {
  const Json* v = Get(key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_boolean()) {
    return Bad(Path(key), absl::StrCat("must be true or false, got ", Describe(*v)));
  }
  *out = v->get<bool>();
  return absl::OkStatus();
}

absl::Status FieldReader::Object(std::string_view key, Json* out) const {
  const Json* v = Get(key);
  if (v == nullptr) {
    *out = Json::object();
    return absl::OkStatus();
  }
  if (!v->is_object()) {
    return Bad(Path(key), absl::StrCat("must be an object, got ", Describe(*v)),
               "write a map, e.g. {key: value}");
  }
  *out = *v;
  return absl::OkStatus();
}

absl::Status FieldReader::StringList(std::string_view key, std::vector<std::string>* out,
                                     Required req) const {
  const Json* v = Get(key);
  if (v == nullptr) return req.what.empty() ? absl::OkStatus() : Missing(key, req);
  std::string path = Path(key);
  if (!v->is_array()) {
    return Bad(path, absl::StrCat("must be a list of strings, got ", Describe(*v)),
               "write a list, e.g. [\"a\", \"b\"]");
  }
  std::vector<std::string> result;
  result.reserve(v->size());
  for (size_t i = 0; i < v->size(); ++i) {
    const Json& item = (*v)[i];
    std::string item_path = IndexPath(path, i);
    if (!item.is_string()) {
      return Bad(item_path, absl::StrCat("must be a string, got ", Describe(item)),
                 "quote the element");
    }
    const auto& s = item.get_ref<const std::string&>();
    if (s.empty()) return Bad(item_path, "must not be empty");
    if (s.find('\0') != std::string::npos) return Bad(item_path, "contains a NUL byte");
    result.push_back(s);
  }
  *out = std::move(result);
  return absl::OkStatus();
}

absl::Status FieldReader::Map(std::string_view key, MapKind kind, StringMap* out) const {
  const Json* v = Get(key);
  if (v == nullptr) {
    out->clear();
    return absl::OkStatus();
  }
  return ReadStringMap(*v, Path(key), kind, out);
}

absl::Status FieldReader::Time(std::string_view key, absl::Time* out) const {
  const Json* v = Get(key);
  if (v == nullptr) return absl::OkStatus();
  return ReadTime(*v, Path(key), out);
}

absl::Status FieldReader::OptTime(std::string_view key, std::optional<absl::Time>* out) const {
  const Json* v = Get(key);
  if (v == nullptr) {
    out->reset();
    return absl::OkStatus();
  }
  absl::Time t;
  PALM_RETURN_IF_ERROR(ReadTime(*v, Path(key), &t));
  *out = t;
  return absl::OkStatus();
}

Json NumberJson(double v) {
  if (std::isfinite(v) && std::trunc(v) == v && std::fabs(v) < 9.0e15) {
    return Json(static_cast<int64_t>(v));
  }
  return Json(v);
}

Json TimeJson(const std::optional<absl::Time>& t) {
  if (!t) return nullptr;
  return palm::FormatTime(*t);
}

}  // namespace palm::model::codec_internal
