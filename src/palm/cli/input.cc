#include "palm/cli/input.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "palm/base/error.h"
#include "yaml-cpp/yaml.h"

namespace palm::cli {
namespace {

constexpr int kMaxDepth = 64;

// A plain (unquoted) scalar under the YAML 1.2 core schema.
Doc PlainScalar(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  int64_t i;
  if (absl::SimpleAtoi(s, &i) && s.find_first_not_of("+-0123456789") == std::string::npos) {
    return i;
  }
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
    const std::string digits = s.substr(2);
    const int base = s[1] == 'x' ? 16 : 8;
    if (digits.find_first_not_of(base == 16 ? "0123456789abcdefABCDEF" : "01234567") ==
            std::string::npos &&
        digits.size() <= 15) {
      return static_cast<int64_t>(std::stoll(digits, nullptr, base));
    }
  }
  const std::string lower = absl::AsciiStrToLower(s);
  if (lower == ".inf" || lower == "+.inf" || lower == "-.inf" || lower == ".nan") {
    return s;  // JSON has no infinities / NaN: keep the text, the daemon will refuse it
  }
  if (s.find_first_of("0123456789") != std::string::npos &&
      s.find_first_not_of("+-.0123456789eE") == std::string::npos) {
    double d;
    if (absl::SimpleAtod(s, &d)) return d;
  }
  return s;
}

absl::StatusOr<Doc> FromYaml(const YAML::Node& node, std::string_view source, int depth) {
  auto where = [&] {
    const YAML::Mark m = node.Mark();
    return absl::StrCat(std::string(source), ":", m.line + 1, ":", m.column + 1);
  };
  if (depth > kMaxDepth) {
    return InvalidArgument(absl::StrCat(where(), ": nested deeper than ", kMaxDepth, " levels"));
  }
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return Doc(nullptr);
    case YAML::NodeType::Scalar:
      if (node.Tag() == "!") return Doc(node.Scalar());  // quoted: always a string
      if (node.Tag() != "?" && !node.Tag().empty() && node.Tag() != "tag:yaml.org,2002:str") {
        return InvalidArgument(absl::StrCat(where(), ": YAML tag ", node.Tag(),
                                            " has no JSON equivalent"));
      }
      return node.Tag() == "tag:yaml.org,2002:str" ? Doc(node.Scalar())
                                                     : PlainScalar(node.Scalar());
    case YAML::NodeType::Sequence: {
      Doc arr = Doc::array();
      for (const auto& item : node) {
        auto v = FromYaml(item, source, depth + 1);
        if (!v.ok()) return v.status();
        arr.push_back(std::move(*v));
      }
      return arr;
    }
    case YAML::NodeType::Map: {
      Doc obj = Doc::object();
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) {
          return InvalidArgument(absl::StrCat(where(), ": mapping keys must be strings"));
        }
        const std::string key = kv.first.Scalar();
        if (obj.contains(key)) {
          return InvalidArgument(absl::StrCat(where(), ": duplicate key \"", key, "\""));
        }
        auto v = FromYaml(kv.second, source, depth + 1);
        if (!v.ok()) return v.status();
        obj[key] = std::move(*v);
      }
      return obj;
    }
  }
  return Doc(nullptr);
}

}  // namespace

absl::StatusOr<Doc> ParseDocumentText(std::string_view text, std::string_view source) {
  const std::string body(text);
  const std::string stripped(absl::StripAsciiWhitespace(body));
  if (stripped.empty()) {
    return InvalidArgument(absl::StrCat(std::string(source), ": the document is empty"),
                           "write an AgentSpec or Deployment in YAML or JSON");
  }
  Doc doc;
  if (stripped.front() == '{' || stripped.front() == '[') {
    try {
      doc = Doc::parse(body);
    } catch (const nlohmann::json::parse_error& e) {
      // Byte offset -> line and column.
      size_t line = 1, col = 1;
      for (size_t i = 0; i + 1 < e.byte && i < body.size(); ++i) {
        if (body[i] == '\n') {
          ++line;
          col = 1;
        } else {
          ++col;
        }
      }
      return InvalidArgument(absl::StrCat(std::string(source), ":", line, ":", col,
                                          ": invalid JSON: ", e.what()));
    }
  } else {
    std::vector<YAML::Node> docs;
    try {
      docs = YAML::LoadAll(body);
    } catch (const YAML::Exception& e) {
      return InvalidArgument(absl::StrCat(std::string(source), ":", e.mark.line + 1, ":",
                                          e.mark.column + 1, ": invalid YAML: ", e.msg));
    }
    if (docs.size() != 1) {
      return InvalidArgument(
          absl::StrCat(std::string(source), ": expected one document, found ", docs.size()),
          "put each object in its own file");
    }
    try {
      auto v = FromYaml(docs[0], source, 0);
      if (!v.ok()) return v.status();
      doc = std::move(*v);
    } catch (const YAML::Exception& e) {
      return InvalidArgument(absl::StrCat(std::string(source), ":", e.mark.line + 1, ":",
                                          e.mark.column + 1, ": ", e.msg));
    }
  }
  if (!doc.is_object()) {
    return InvalidArgument(
        absl::StrCat(std::string(source), ": the document must be a mapping (key: value ...)"));
  }
  return doc;
}

absl::StatusOr<FileDocument> ReadDocumentFile(const std::string& path) {
  std::string text;
  FileDocument out;
  std::error_code ec;
  if (path == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    out.dir = std::filesystem::current_path(ec);
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return NotFound("FILE_NOT_FOUND", absl::StrCat("cannot read ", path, ": ",
                                                     std::strerror(errno)));
    }
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
    out.dir = std::filesystem::absolute(path, ec).parent_path().lexically_normal();
  }
  auto doc = ParseDocumentText(text, path == "-" ? "<stdin>" : path);
  if (!doc.ok()) return doc.status();
  out.doc = std::move(*doc);
  return out;
}

absl::Status ResolveWorkdir(Doc& spec, const std::filesystem::path& dir) {
  auto it = spec.find("workdir");
  if (it == spec.end() || it->is_null()) {
    spec["workdir"] = dir.lexically_normal().string();
    return absl::OkStatus();
  }
  if (!it->is_string()) {
    return InvalidArgument("workdir: must be a string (a directory, relative to the spec file)");
  }
  std::filesystem::path w(it->get<std::string>());
  if (w.empty()) w = ".";
  if (w.is_relative()) w = dir / w;
  std::string s = w.lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  *it = s;
  return absl::OkStatus();
}

}  // namespace palm::cli
