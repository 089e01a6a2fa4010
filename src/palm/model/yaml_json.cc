// ParseDocument: JSON or YAML text -> JSON value.
//
// Both formats feed one TreeBuilder that enforces the limits (depth, node and byte budget
// after alias expansion, duplicate keys). JSON goes through nlohmann's SAX parser, YAML
// through yaml-cpp's event parser (not YAML::Load, so aliases are expanded under our budget
// and every error carries a line and column). Scalars of plain YAML are typed as the YAML
// 1.2 core schema says; quoted scalars stay strings.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <map>
#include <sstream>
#include <stdexcept>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "palm/base/error.h"
#include "palm/base/utf8.h"
#include "palm/model/codec.h"
#include "palm/model/field_reader.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/exceptions.h"
#include "yaml-cpp/parser.h"

namespace palm::model {
namespace {

using codec_internal::ChildPath;
using codec_internal::IndexPath;

constexpr int kMaxDepth = kMaxNestingDepth;
constexpr int64_t kMaxNodes = kMaxDocumentValues;
constexpr int64_t kMaxBytes = kMaxDocumentBytes;  // after alias expansion

// A structural problem found while building (message without location).
struct BuildError {
  std::string message;
};

// Builds a Json tree from container/scalar events, enforcing the limits.
class TreeBuilder {
 public:
  struct Frame {
    Json value;
    std::optional<std::string> key;  // maps: the key whose value comes next
    bool merge_pending = false;      // maps: the pending key is YAML's "<<"
    std::vector<Json> merges;        // maps: "<<" values, applied at the end
    int64_t nodes_at_start = 0;
    int64_t bytes_at_start = 0;
  };

  bool done() const { return done_; }
  bool ExpectingKey() const {
    return !stack_.empty() && stack_.back().value.is_object() && !stack_.back().key;
  }
  Json TakeResult() { return std::move(result_); }

  void Begin(bool is_map) {
    if (done_) throw BuildError{"more than one value at the top level of the document"};
    if (static_cast<int>(stack_.size()) >= kMaxDepth) {
      throw BuildError{absl::StrCat("nesting deeper than ", kMaxDepth, " levels at ", Path(),
                                    "; flatten the document")};
    }
    Count(1, 0);
    Frame f;
    f.value = is_map ? Json::object() : Json::array();
    f.nodes_at_start = nodes_;
    f.bytes_at_start = bytes_;
    stack_.push_back(std::move(f));
  }

  // Ends the innermost container and places it; returns its nodes/bytes (for anchors) and
  // copies it to `*copy` when given.
  std::pair<int64_t, int64_t> End(Json* copy = nullptr) {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    // YAML merge keys: explicit keys win, then earlier merged maps over later ones.
    for (const Json& m : f.merges) {
      for (const auto& [k, v] : m.items()) {
        if (!f.value.contains(k)) f.value[k] = v;
      }
    }
    std::pair<int64_t, int64_t> size = {nodes_ - f.nodes_at_start + 1,
                                        bytes_ - f.bytes_at_start};
    if (copy != nullptr) *copy = f.value;
    PlaceCounted(std::move(f.value));
    return size;
  }

  void Key(std::string key, bool is_merge) {
    Frame& f = stack_.back();
    Count(0, static_cast<int64_t>(key.size()));
    if (is_merge) {
      f.merge_pending = true;
      f.key = std::move(key);
      return;
    }
    if (f.value.contains(key)) {
      throw BuildError{absl::StrCat("duplicate key \"", key, "\" in ", Path())};
    }
    f.key = std::move(key);
  }

  // Places a scalar (counted here) or an aliased copy (counted by the caller).
  void Scalar(Json v) {
    int64_t b = v.is_string() ? static_cast<int64_t>(v.get_ref<const std::string&>().size()) : 0;
    Count(1, b);
    PlaceCounted(std::move(v));
  }
  void Copy(Json v, int64_t nodes, int64_t bytes) {
    Count(nodes, bytes);
    PlaceCounted(std::move(v));
  }

  // Where the builder stands, for messages: "spec.command[2]".
  std::string Path() const {
    std::string p;
    for (const Frame& f : stack_) {
      if (f.value.is_array()) {
        p = IndexPath(p, f.value.size());
      } else if (f.key) {
        p = ChildPath(p, *f.key);
      }
    }
    return p.empty() ? std::string(kTopLevel) : p;
  }
  static constexpr std::string_view kTopLevel = "the top level";

 private:
  void Count(int64_t nodes, int64_t bytes) {
    nodes_ += nodes;
    bytes_ += bytes;
    if (nodes_ > kMaxNodes) {
      throw BuildError{absl::StrCat("expands to more than ", kMaxNodes,
                                    " values (aliases referencing aliases?)")};
    }
    if (bytes_ > kMaxBytes) {
      throw BuildError{absl::StrCat("expands to more than ", kMaxBytes >> 20,
                                    " MiB of text (aliases referencing aliases?)")};
    }
  }

  void PlaceCounted(Json v) {
    if (stack_.empty()) {
      // yaml-cpp 0.7 can report values after a document's top-level one (",: 2" makes it
      // emit nulls without end): a second top-level value is an error, not a new result.
      if (done_) throw BuildError{"more than one value at the top level of the document"};
      result_ = std::move(v);
      done_ = true;
      return;
    }
    Frame& f = stack_.back();
    if (f.value.is_array()) {
      f.value.push_back(std::move(v));
      return;
    }
    if (f.merge_pending) {
      f.merge_pending = false;
      f.key.reset();
      if (v.is_object()) {
        f.merges.push_back(std::move(v));
      } else if (v.is_array() && std::all_of(v.begin(), v.end(),
                                             [](const Json& m) { return m.is_object(); })) {
        for (Json& m : v) f.merges.push_back(std::move(m));
      } else {
        throw BuildError{"the merge key \"<<\" needs a map or a list of maps"};
      }
      return;
    }
    f.value[*f.key] = std::move(v);
    f.key.reset();
  }

  std::vector<Frame> stack_;
  Json result_;
  bool done_ = false;
  int64_t nodes_ = 0;
  int64_t bytes_ = 0;
};

// ---- JSON ----

struct LineCol {
  size_t line, column;  // 1-based
};

LineCol LocateOffset(std::string_view text, size_t offset) {
  offset = std::min(offset, text.size());
  LineCol lc{1, 1};
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++lc.line;
      lc.column = 1;
    } else {
      ++lc.column;
    }
  }
  return lc;
}

std::string At(std::string_view source, LineCol lc) {
  return absl::StrCat(std::string(source), ": line ", lc.line, ", column ", lc.column);
}

class JsonSax {
 public:
  // nlohmann's out_of_range.406: "number overflow parsing '1e400'".
  static constexpr int kNumberOverflow = 406;

  explicit JsonSax(TreeBuilder* b) : b_(b) {}

  bool null() { return Guard([&] { b_->Scalar(nullptr); }); }
  bool boolean(bool v) { return Guard([&] { b_->Scalar(v); }); }
  bool number_integer(Json::number_integer_t v) { return Guard([&] { b_->Scalar(v); }); }
  bool number_unsigned(Json::number_unsigned_t v) { return Guard([&] { b_->Scalar(v); }); }
  bool number_float(Json::number_float_t v, const std::string&) {
    return Guard([&] { b_->Scalar(v); });
  }
  bool string(std::string& v) { return Guard([&] { b_->Scalar(std::move(v)); }); }
  bool binary(Json::binary_t&) {
    error_ = "binary values are not JSON";
    return false;
  }
  bool start_object(std::size_t) { return Guard([&] { b_->Begin(true); }); }
  bool key(std::string& k) { return Guard([&] { b_->Key(std::move(k), false); }); }
  bool end_object() { return Guard([&] { b_->End(); }); }
  bool start_array(std::size_t) { return Guard([&] { b_->Begin(false); }); }
  bool end_array() { return Guard([&] { b_->End(); }); }
  bool parse_error(std::size_t position, const std::string& token,
                   const nlohmann::detail::exception& ex) {
    parse_error_ = true;
    position_ = position;
    std::string field = b_->Path();
    if (ex.id == kNumberOverflow) {
      // "1e400": strtod gives infinity, which has no JSON form; say which field it was, and
      // point at the number's first byte (ParseJson reports position - 1).
      position_ = position >= token.size() ? position - token.size() + 1 : position;
      error_ = absl::StrCat(field, ": the number ", token,
                            " is out of range (JSON numbers here must fit a 64-bit float, "
                            "at most about 1.8e308)");
      return false;
    }
    // "[json.exception.parse_error.101] parse error at line 1, column 2: syntax error ..."
    std::string what = ex.what();
    size_t col = what.find("column ");
    size_t colon = col == std::string::npos ? std::string::npos : what.find(": ", col);
    error_ = colon == std::string::npos ? what : what.substr(colon + 2);
    if (field != TreeBuilder::kTopLevel) absl::StrAppend(&error_, " (in ", field, ")");
    return false;
  }

  bool is_parse_error() const { return parse_error_; }
  size_t position() const { return position_; }
  const std::string& error() const { return error_; }

 private:
  template <typename F>
  bool Guard(F f) {
    try {
      f();
      return true;
    } catch (const BuildError& e) {
      error_ = e.message;
      return false;
    }
  }

  TreeBuilder* b_;
  bool parse_error_ = false;
  size_t position_ = 0;
  std::string error_;
};

}  // namespace

absl::StatusOr<Json> ParseJson(std::string_view text, std::string_view source) {
  TreeBuilder builder;
  JsonSax sax(&builder);
  bool ok = false;
  try {
    ok = Json::sax_parse(text.begin(), text.end(), &sax, nlohmann::detail::input_format_t::json,
                         /*strict=*/true);
  } catch (const std::exception& e) {
    return InvalidArgument(absl::StrCat(std::string(source), ": ", e.what()));
  }
  if (!ok) {
    if (sax.is_parse_error()) {
      // nlohmann's position is the count of bytes read; the offending byte is the last one.
      size_t offset = sax.position() > 0 ? sax.position() - 1 : 0;
      return InvalidArgument(absl::StrCat(At(source, LocateOffset(text, offset)), ": ",
                                          sax.error()),
                             "fix the JSON syntax at that position");
    }
    return InvalidArgument(absl::StrCat(std::string(source), ": ", sax.error()));
  }
  return builder.TakeResult();
}

namespace {

// ---- YAML ----

constexpr char kTagPrefix[] = "tag:yaml.org,2002:";

bool IsDigits(std::string_view s, bool (*ok)(char)) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!ok(c)) return false;
  }
  return true;
}
bool Dec(char c) { return c >= '0' && c <= '9'; }
bool Oct(char c) { return c >= '0' && c <= '7'; }
bool Hex(char c) { return Dec(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// `d` (parsed from `text`) as JSON. SimpleAtod turns 1e400 into infinity, which JSON cannot
// hold (it would be written as null): refused, as in JSON documents.
Json FiniteNumber(std::string_view text, double d) {
  if (!std::isfinite(d)) {
    throw BuildError{absl::StrCat("the number ", std::string(text),
                                  " is out of range (it must fit a 64-bit float, at most "
                                  "about 1.8e308)")};
  }
  return Json(d);
}

// YAML 1.2 core schema int: [-+]?[0-9]+ | 0o[0-7]+ | 0x[0-9a-fA-F]+.
std::optional<Json> ResolveInt(std::string_view s) {
  int base = 10;
  std::string_view digits = s;
  bool negative = false;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'x')) {
    base = s[1] == 'o' ? 8 : 16;
    digits = s.substr(2);
    if (!IsDigits(digits, base == 8 ? Oct : Hex)) return std::nullopt;
  } else {
    if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) {
      negative = digits[0] == '-';
      digits.remove_prefix(1);
    }
    if (!IsDigits(digits, Dec)) return std::nullopt;
  }
  uint64_t u = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), u, base);
  if (ec == std::errc() && ptr == digits.data() + digits.size()) {
    if (!negative) {
      if (u <= static_cast<uint64_t>(INT64_MAX)) return Json(static_cast<int64_t>(u));
      return Json(u);
    }
    if (u <= static_cast<uint64_t>(INT64_MAX) + 1) {
      return Json(static_cast<int64_t>(0 - u));  // two's complement: -u
    }
  }
  // Too big for 64 bits: a float, as JSON parsers do.
  double d = 0;
  if (base == 10 && absl::SimpleAtod(std::string(s), &d)) return FiniteNumber(s, d);
  return std::nullopt;
}

// YAML 1.2 core schema float: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool LooksLikeFloat(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  size_t int_digits = 0, frac_digits = 0;
  while (i < s.size() && Dec(s[i])) ++i, ++int_digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && Dec(s[i])) ++i, ++frac_digits;
    if (int_digits == 0 && frac_digits == 0) return false;
  } else if (int_digits == 0) {
    return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exp_digits = 0;
    while (i < s.size() && Dec(s[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == s.size();
}

bool IsInfOrNan(std::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  return s == ".inf" || s == ".Inf" || s == ".INF" || s == ".nan" || s == ".NaN" || s == ".NAN";
}

bool IsNull(std::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

std::optional<bool> ResolveBool(std::string_view s) {
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}

// The JSON value of a scalar with `tag` ("?" plain, "!" quoted, or an explicit tag).
Json ResolveScalar(const std::string& tag, const std::string& value) {
  std::string_view t = tag;
  if (t == "!" || t == absl::StrCat(kTagPrefix, "str")) return Json(value);
  auto float_value = [&]() -> std::optional<Json> {
    if (IsInfOrNan(value)) {
      throw BuildError{absl::StrCat("\"", value, "\" (infinity / not-a-number) has no JSON form")};
    }
    double d = 0;
    if (LooksLikeFloat(value) && absl::SimpleAtod(value, &d)) return FiniteNumber(value, d);
    return std::nullopt;
  };
  if (t == "?") {
    if (IsNull(value)) return nullptr;
    if (auto b = ResolveBool(value)) return *b;
    if (auto i = ResolveInt(value)) return *i;
    if (auto f = float_value()) return *f;
    return Json(value);
  }
  auto bad = [&](std::string_view what) {
    return BuildError{absl::StrCat("\"", value, "\" is not ", std::string(what), " (tag ", tag, ")")};
  };
  if (t == absl::StrCat(kTagPrefix, "null")) {
    if (!IsNull(value)) throw bad("null");
    return nullptr;
  }
  if (t == absl::StrCat(kTagPrefix, "bool")) {
    if (auto b = ResolveBool(value)) return *b;
    throw bad("a boolean");
  }
  if (t == absl::StrCat(kTagPrefix, "int")) {
    if (auto i = ResolveInt(value)) return *i;
    throw bad("an integer");
  }
  if (t == absl::StrCat(kTagPrefix, "float")) {
    if (auto i = ResolveInt(value)) return Json(i->get<double>());
    if (auto f = float_value()) return *f;
    throw bad("a number");
  }
  throw BuildError{absl::StrCat("the YAML tag \"", tag, "\" has no JSON equivalent; remove it")};
}

// A problem with a position in the YAML text.
struct YamlError {
  YAML::Mark mark;
  std::string message;
};

class YamlHandler : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Guard(mark, [&] {
      if (b_.ExpectingKey()) throw BuildError{"a map key is empty (null); keys must be strings"};
      b_.Scalar(nullptr);
      Anchor(anchor, Json(nullptr), 1, 0);
    });
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Guard(mark, [&] {
      auto it = anchors_.find(anchor);
      if (it == anchors_.end()) {
        throw BuildError{"alias refers to an anchor that is not complete (a recursive alias?)"};
      }
      if (b_.ExpectingKey()) {
        if (!it->second.value.is_string()) throw BuildError{"an alias used as a map key must be a string"};
        b_.Key(it->second.value.get<std::string>(), false);
        return;
      }
      b_.Copy(it->second.value, it->second.nodes, it->second.bytes);
    });
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    Guard(mark, [&] {
      // Escapes such as "\ud800" can make text that is not UTF-8, which JSON cannot hold.
      if (FindInvalidUtf8(value) != std::string_view::npos) {
        throw BuildError{"a string is not valid UTF-8 after unescaping (a lone surrogate?)"};
      }
      if (b_.ExpectingKey()) {
        if (tag == "?") {
          if (value == "<<") {
            b_.Key(value, true);
            return;
          }
          Json k = ResolveScalar(tag, value);
          if (!k.is_string()) {
            throw BuildError{absl::StrCat("map key ", value, " is ", k.is_null() ? "null" : k.type_name(),
                                          ", not a string; quote it (\"", value, "\")")};
          }
        } else if (tag != "!" && tag != absl::StrCat(kTagPrefix, "str")) {
          throw BuildError{absl::StrCat("map key \"", value, "\" has tag ", tag, "; keys must be strings")};
        }
        b_.Key(value, false);
        Anchor(anchor, Json(value), 1, static_cast<int64_t>(value.size()));
        return;
      }
      Json v = ResolveScalar(tag, value);
      int64_t bytes = v.is_string() ? static_cast<int64_t>(value.size()) : 0;
      if (anchor != 0) Anchor(anchor, v, 1, bytes);
      b_.Scalar(std::move(v));
    });
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Start(mark, tag, anchor, false);
  }
  void OnSequenceEnd() override { Finish(); }
  void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Start(mark, tag, anchor, true);
  }
  void OnMapEnd() override { Finish(); }

  TreeBuilder& builder() { return b_; }

 private:
  struct Anchored {
    Json value;
    int64_t nodes, bytes;
  };
  struct Open {
    YAML::Mark mark;
    YAML::anchor_t anchor;
  };

  template <typename F>
  void Guard(const YAML::Mark& mark, F f) {
    try {
      f();
    } catch (const BuildError& e) {
      throw YamlError{mark, e.message};
    }
  }

  void Start(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor, bool is_map) {
    Guard(mark, [&] {
      if (b_.ExpectingKey()) {
        throw BuildError{"a map key is a list or a map; keys must be strings"};
      }
      if (tag != "?" && tag != "!" && tag != absl::StrCat(kTagPrefix, is_map ? "map" : "seq")) {
        throw BuildError{absl::StrCat("the YAML tag \"", tag, "\" has no JSON equivalent; remove it")};
      }
      b_.Begin(is_map);
      open_.push_back({mark, anchor});
    });
  }

  void Finish() {
    Open o = open_.back();
    open_.pop_back();
    Guard(o.mark, [&] {
      if (o.anchor == 0) {
        b_.End();
        return;
      }
      Json copy;
      auto [nodes, bytes] = b_.End(&copy);
      anchors_[o.anchor] = {std::move(copy), nodes, bytes};
    });
  }

  void Anchor(YAML::anchor_t anchor, Json v, int64_t nodes, int64_t bytes) {
    if (anchor != 0) anchors_[anchor] = {std::move(v), nodes, bytes};
  }

  TreeBuilder b_;
  std::vector<Open> open_;
  std::map<YAML::anchor_t, Anchored> anchors_;
};

std::string YamlAt(std::string_view source, const YAML::Mark& mark) {
  if (mark.is_null()) return std::string(source);
  return At(source, {static_cast<size_t>(mark.line) + 1, static_cast<size_t>(mark.column) + 1});
}

absl::StatusOr<Json> ParseYaml(std::string_view text, std::string_view source) {
  if (size_t bad = FindInvalidUtf8(text); bad != std::string_view::npos) {
    return InvalidArgument(
        absl::StrCat(At(source, LocateOffset(text, bad)), ": invalid UTF-8 byte"),
        "save the file as UTF-8");
  }
  // YAML streams may not hold NUL, and yaml-cpp takes NUL bytes near the start as UTF-16 or
  // UTF-32 and "converts" them into strings that are not UTF-8: refused here.
  if (size_t nul = text.find('\0'); nul != std::string_view::npos) {
    return InvalidArgument(absl::StrCat(At(source, LocateOffset(text, nul)), ": NUL byte"),
                           "save the file as UTF-8 text");
  }
  std::istringstream in{std::string(text)};
  YAML::Mark doc_mark;
  try {
    YAML::Parser parser(in);
    YamlHandler first;
    if (!parser.HandleNextDocument(first) || !first.builder().done()) {
      return InvalidArgument(absl::StrCat(std::string(source), ": is empty"),
                             "write the object's fields, e.g. \"name: buyer\"");
    }
    // Further documents are refused unless empty (a trailing "---"). yaml-cpp 0.7 reports
    // empty documents without end for some malformed text (",: 2"), hence the bound.
    constexpr int kMaxEmptyDocuments = 16;
    YamlHandler next;
    for (int docs = 0; parser.HandleNextDocument(next); ++docs) {
      if (docs == kMaxEmptyDocuments ||
          (next.builder().done() && !next.builder().TakeResult().is_null())) {
        return InvalidArgument(
            absl::StrCat(std::string(source), ": contains more than one YAML document (---)"),
            "put one object per file");
      }
      next = YamlHandler();
    }
    return first.builder().TakeResult();
  } catch (const YamlError& e) {
    return InvalidArgument(absl::StrCat(YamlAt(source, e.mark), ": ", e.message));
  } catch (const YAML::Exception& e) {
    return InvalidArgument(absl::StrCat(YamlAt(source, e.mark), ": ", e.msg),
                           "fix the YAML syntax at that position");
  } catch (const std::exception& e) {
    return InvalidArgument(absl::StrCat(std::string(source), ": ", e.what()));
  }
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

absl::StatusOr<Json> ParseDocument(std::string_view text, std::string_view source) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // UTF-8 byte order mark
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) {
    return InvalidArgument(absl::StrCat(std::string(source), ": is empty"),
                           "write the object's fields, e.g. \"name: buyer\"");
  }
  absl::StatusOr<Json> doc;
  if (EndsWith(source, ".json")) {
    doc = ParseJson(text, source);
  } else if (text[first] == '{' || text[first] == '[') {
    // JSON first (exact positions in its errors); YAML flow style when it is not JSON.
    doc = ParseJson(text, source);
    if (!doc.ok()) {
      absl::StatusOr<Json> yaml = ParseYaml(text, source);
      if (yaml.ok()) doc = std::move(yaml);
    }
  } else {
    doc = ParseYaml(text, source);
  }
  if (doc.ok() && doc->is_null()) {
    return InvalidArgument(absl::StrCat(std::string(source), ": is empty"),
                           "write the object's fields, e.g. \"name: buyer\"");
  }
  return doc;
}

}  // namespace palm::model
