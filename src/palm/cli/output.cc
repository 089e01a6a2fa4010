#include "palm/cli/output.h"

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "yaml-cpp/yaml.h"

namespace palm::cli {

Table::Table(std::vector<std::string> headers) {
  for (auto& h : headers) headers_.push_back(absl::AsciiStrToUpper(h));
}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

std::string Table::Render() const {
  std::vector<size_t> width(headers_.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  };
  measure(headers_);
  for (const auto& r : rows_) measure(r);
  std::string out;
  auto line = [&](const std::vector<std::string>& row) {
    std::string l;
    for (size_t i = 0; i < row.size(); ++i) {
      l += row[i];
      if (i + 1 < row.size()) l += std::string(width[i] - row[i].size() + 3, ' ');
    }
    while (!l.empty() && l.back() == ' ') l.pop_back();
    out += l;
    out += '\n';
  };
  line(headers_);
  for (const auto& r : rows_) line(r);
  return out;
}

std::string ToJsonText(const Doc& doc) {
  return doc.dump(2, ' ', false, nlohmann::detail::error_handler_t::replace) + "\n";
}

namespace {

// Whether a plain YAML scalar `s` would be read back as something other than a string.
bool NeedsQuotes(const std::string& s) {
  if (s.empty()) return true;
  const std::string lower = absl::AsciiStrToLower(s);
  static const char* const kWords[] = {"true", "false", "yes", "no", "on", "off",
                                       "null", "~", ".inf", "-.inf", "+.inf", ".nan"};
  for (const char* w : kWords) {
    if (lower == w) return true;
  }
  double d;
  int64_t i;
  if (absl::SimpleAtod(s, &d) || absl::SimpleAtoi(s, &i)) return true;
  if (lower.rfind("0x", 0) == 0 || lower.rfind("0o", 0) == 0) return true;
  // Leading/trailing blanks would be lost in a plain scalar.
  return absl::ascii_isspace(s.front()) || absl::ascii_isspace(s.back());
}

void Emit(YAML::Emitter& out, const Doc& v) {
  switch (v.type()) {
    case Doc::value_t::object:
      if (v.empty()) {
        out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
        return;
      }
      out << YAML::BeginMap;
      for (auto it = v.begin(); it != v.end(); ++it) {
        out << YAML::Key;
        if (NeedsQuotes(it.key())) out << YAML::DoubleQuoted;
        out << it.key() << YAML::Value;
        Emit(out, it.value());
      }
      out << YAML::EndMap;
      return;
    case Doc::value_t::array:
      if (v.empty()) {
        out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
        return;
      }
      out << YAML::BeginSeq;
      for (const auto& e : v) Emit(out, e);
      out << YAML::EndSeq;
      return;
    case Doc::value_t::string: {
      const auto& s = v.get_ref<const std::string&>();
      if (NeedsQuotes(s)) out << YAML::DoubleQuoted;
      out << s;
      return;
    }
    case Doc::value_t::null:
    case Doc::value_t::discarded:
      out << YAML::Null;
      return;
    default:  // numbers and booleans: JSON's spelling is valid YAML 1.2
      out << v.dump();
      return;
  }
}

}  // namespace

std::string ToYaml(const Doc& doc) {
  YAML::Emitter out;
  out.SetNullFormat(YAML::LowerNull);
  Emit(out, doc);
  std::string s = out.c_str();
  if (s.empty() || s.back() != '\n') s += '\n';
  return s;
}

const Doc& At(const Doc& doc, std::initializer_list<std::string_view> path) {
  static const Doc kNull = nullptr;
  const Doc* cur = &doc;
  for (std::string_view key : path) {
    if (!cur->is_object()) return kNull;
    auto it = cur->find(std::string(key));
    if (it == cur->end()) return kNull;
    cur = &*it;
  }
  return *cur;
}

std::string Cell(const Doc& value) {
  if (value.is_null() || value.is_discarded()) return "-";
  if (value.is_string()) {
    const auto& s = value.get_ref<const std::string&>();
    return s.empty() ? "-" : s;
  }
  return value.dump();
}

std::string FormatAge(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  const int64_t s = absl::ToInt64Seconds(d);
  if (s < 120) return absl::StrCat(s, "s");
  if (s < 120 * 60) return absl::StrCat(s / 60, "m");
  if (s < 48 * 3600) return absl::StrCat(s / 3600, "h");
  return absl::StrCat(s / 86400, "d");
}

std::string Age(const Doc& rfc3339, absl::Time now) {
  if (!rfc3339.is_string()) return "-";
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, rfc3339.get<std::string>(), &t, &err)) return "-";
  return FormatAge(now - t);
}

std::string LastExit(const Doc& last_exit) {
  if (!last_exit.is_object()) return "-";
  if (const Doc& sig = At(last_exit, {"signal"}); sig.is_string()) return sig.get<std::string>();
  if (const Doc& code = At(last_exit, {"code"}); code.is_number()) {
    return absl::StrCat("code ", code.dump());
  }
  return "unknown";
}

bool PrintMachine(OutputFormat format, const ApiResult& result) {
  if (format == OutputFormat::kTable) return false;
  if (result.doc.is_null() || result.doc.is_discarded()) {
    // Not JSON (or empty): print what came, as the API sent it.
    std::cout << result.body;
    if (!result.body.empty() && result.body.back() != '\n') std::cout << '\n';
    return true;
  }
  std::cout << (format == OutputFormat::kJson ? ToJsonText(result.doc) : ToYaml(result.doc));
  return true;
}

}  // namespace palm::cli
