#include <chrono>
#include <iostream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palm/model/codec.h"

namespace palm::model {
namespace {

using ::testing::HasSubstr;

Json MustParse(std::string_view text, std::string_view source = "test.yaml") {
  absl::StatusOr<Json> doc = ParseDocument(text, source);
  EXPECT_TRUE(doc.ok()) << doc.status();
  return doc.ok() ? *doc : Json();
}

std::string ErrorOf(std::string_view text, std::string_view source = "test.yaml") {
  absl::StatusOr<Json> doc = ParseDocument(text, source);
  if (doc.ok()) return "OK: " + doc->dump();
  EXPECT_EQ(doc.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(doc.status().message());
}

struct TypingCase {
  std::string yaml_value;
  Json expected;
};

TEST(ParseDocumentTest, YamlScalarsFollowTheCoreSchema) {
  const TypingCase cases[] = {
      {"true", true},
      {"True", true},
      {"FALSE", false},
      {"yes", "yes"},  // YAML 1.1 booleans are strings in 1.2
      {"on", "on"},
      {"~", nullptr},
      {"null", nullptr},
      {"", nullptr},
      {"12", 12},
      {"-12", -12},
      {"+7", 7},
      {"010", 10},  // 1.2: decimal, not octal
      {"0o17", 15},
      {"0x1F", 31},
      {"1.5", 1.5},
      {"1e3", 1000.0},
      {".5", 0.5},
      {"-9223372036854775808", INT64_MIN},
      {"18446744073709551615", UINT64_MAX},
      {"'12'", "12"},
      {"\"true\"", "true"},
      {"\"\"", ""},
      {"1.2.0", "1.2.0"},
      {"0x", "0x"},
      {"1e", "1e"},
      {"!!str 12", "12"},
      {"!!int '12'", 12},
      {"!!float 1", 1.0},
      {"!!bool 'true'", true},
      {"hello world", "hello world"},
      {"{}", Json::object()},
      {"[]", Json::array()},
  };
  for (const auto& c : cases) {
    Json doc = MustParse("a: " + c.yaml_value);
    ASSERT_TRUE(doc.is_object()) << c.yaml_value;
    EXPECT_EQ(doc["a"], c.expected) << "a: " << c.yaml_value << " gave " << doc["a"].dump();
    EXPECT_EQ(doc["a"].type(), c.expected.type()) << c.yaml_value;
  }
  Json big = MustParse("a: 99999999999999999999999");
  EXPECT_TRUE(big["a"].is_number_float());
}

TEST(ParseDocumentTest, RefusesYamlThatHasNoJsonForm) {
  const std::pair<std::string, std::string> cases[] = {
      {"1: a", "line 1, column 1: map key 1 is number, not a string"},
      {"true: a", "map key true is boolean"},
      {"~: a", "keys must be strings"},
      {"? [a]\n: b", "a map key is a list or a map"},
      {"a: !foo bar", "the YAML tag \"!foo\" has no JSON equivalent"},
      {"a: !!int abc", "\"abc\" is not an integer"},
      {"a: .inf", "has no JSON form"},
      {"a: -.Inf", "has no JSON form"},
      {"a: .nan", "has no JSON form"},
      {"a: 1\nb: 2\na: 3", "test.yaml: line 3, column 1: duplicate key \"a\""},
      {"a: \xff\xfe\n", "test.yaml: line 1, column 4: invalid UTF-8"},
      {"a: [1, 2\nb: 3", "test.yaml: line"},
      {"a: *nope", "test.yaml"},
      {"a: 1\n---\nb: 2\n", "more than one YAML document"},
  };
  for (const auto& [text, want] : cases) {
    EXPECT_THAT(ErrorOf(text), HasSubstr(want)) << text;
  }
}

TEST(ParseDocumentTest, EmptyDocuments) {
  for (std::string_view text : {"", "   \n\t\n", "# only a comment\n", "---\n", "null"}) {
    EXPECT_EQ(ErrorOf(text, "spec.yaml"), "spec.yaml: is empty") << text;
  }
  EXPECT_EQ(ErrorOf("", "x.json"), "x.json: is empty");
}

TEST(ParseDocumentTest, DocumentMarkersAroundOneDocument) {
  EXPECT_EQ(MustParse("---\na: 1\n"), Json({{"a", 1}}));
  EXPECT_EQ(MustParse("a: 1\n---\n"), Json({{"a", 1}}));
  EXPECT_EQ(MustParse("\xEF\xBB\xBF" "a: 1\n"), Json({{"a", 1}}));  // BOM
}

TEST(ParseDocumentTest, AnchorsAliasesAndMergeKeys) {
  Json doc = MustParse(
      "base: &b {x: 1, y: 2}\n"
      "list: &l [1, 2]\n"
      "copy: *l\n"
      "c:\n  <<: *b\n  y: 3\n"
      "d:\n  y: 4\n  <<: [*b, {z: 5}]\n"
      "name: &n hello\n"
      "*n : world\n");
  EXPECT_EQ(doc["copy"], Json({1, 2}));
  EXPECT_EQ(doc["c"], Json({{"x", 1}, {"y", 3}}));  // explicit keys win over merged ones
  EXPECT_EQ(doc["d"], Json({{"x", 1}, {"y", 4}, {"z", 5}}));
  EXPECT_EQ(doc["hello"], "world");
  EXPECT_EQ(doc["base"], Json({{"x", 1}, {"y", 2}}));
  // A quoted "<<" is an ordinary key.
  EXPECT_EQ(MustParse("'<<': 1")["<<"], 1);
  EXPECT_THAT(ErrorOf("a:\n  <<: 3\n"), HasSubstr("merge key \"<<\" needs a map"));
}

TEST(ParseDocumentTest, BillionLaughsIsRefusedQuickly) {
  std::string text = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n";
  for (char c = 'b'; c <= 'j'; ++c) {
    std::string prev(1, static_cast<char>(c - 1));
    text += std::string(1, c) + ": &" + std::string(1, c) + " [";
    for (int i = 0; i < 9; ++i) text += (i ? ",*" : "*") + prev;
    text += "]\n";
  }
  auto start = std::chrono::steady_clock::now();
  EXPECT_THAT(ErrorOf(text), HasSubstr("expands to more than 1000000 values"));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - start).count();
  std::cout << "billion laughs refused after " << ms << " ms\n";  // a hang hits ctest's timeout
  // Long strings multiplied by aliases hit the byte budget instead.
  std::string big = "s: &s \"" + std::string(1 << 20, 'x') + "\"\nl: [";
  for (int i = 0; i < 100; ++i) big += i ? ",*s" : "*s";
  big += "]\n";
  EXPECT_THAT(ErrorOf(big), HasSubstr("MiB of text"));
}

TEST(ParseDocumentTest, DepthLimit) {
  auto nested = [](int depth, bool json) {
    std::string s = json ? "{\"a\":" : "a: ";
    s += std::string(depth - 1, '[') + "1" + std::string(depth - 1, ']');
    if (json) s += "}";
    return s;
  };
  // 64 levels including the top-level map are fine, 65 are not.
  EXPECT_TRUE(ParseDocument(nested(64, true), "t.json").ok());
  EXPECT_TRUE(ParseDocument(nested(64, false), "t.yaml").ok());
  EXPECT_THAT(ErrorOf(nested(65, true), "t.json"), HasSubstr("nesting deeper than 64 levels"));
  EXPECT_THAT(ErrorOf(nested(65, false), "t.yaml"), HasSubstr("nesting deeper than 64 levels"));
  // Very deep input fails cleanly (no stack overflow) in both formats.
  EXPECT_THAT(ErrorOf(std::string(200'000, '['), "t.json"), HasSubstr("nesting deeper"));
  EXPECT_THAT(ErrorOf("a: " + std::string(200'000, '['), "t.yaml"), HasSubstr("t.yaml"));
  EXPECT_THAT(ErrorOf(std::string(200'000, '['), "t.yaml"), HasSubstr("t.yaml"));
}

TEST(ParseDocumentTest, JsonErrorsCarryLineAndColumn) {
  EXPECT_THAT(ErrorOf("{\n  \"a\": 1,\n  \"b\": tru\n}", "spec.json"),
              HasSubstr("spec.json: line 3, column 11: syntax error"));
  EXPECT_THAT(ErrorOf("{\"a\": 1,}", "spec.json"), HasSubstr("spec.json: line 1, column 9"));
  EXPECT_THAT(ErrorOf("{\"a\": 1} {}", "spec.json"), HasSubstr("line 1, column 10"));
  EXPECT_THAT(ErrorOf("{\"a\": \"\xff\"}", "spec.json"), HasSubstr("spec.json: line 1"));
  EXPECT_THAT(ErrorOf("{\"a\": 1, \"a\": 2}", "spec.json"), HasSubstr("duplicate key \"a\""));
  // JSON-looking text that is not JSON: the JSON error is reported when YAML fails too.
  EXPECT_THAT(ErrorOf("{\"a\": [1, 2}", "spec.yaml"), HasSubstr("spec.yaml: line 1"));
  // ...and YAML flow style is accepted when it is not JSON.
  EXPECT_EQ(MustParse("{name: buyer, replicas: 3}"), Json({{"name", "buyer"}, {"replicas", 3}}));
  // .json sources are JSON only.
  EXPECT_THAT(ErrorOf("{name: buyer}", "d.json"), HasSubstr("d.json: line 1, column 3"));
}

TEST(ParseDocumentTest, JsonAndYamlAgree) {
  std::string json = R"({"name": "buyer", "n": 3, "f": 0.5, "ok": true, "x": null,
                         "l": [1, "two", {"three": 3}]})";
  EXPECT_EQ(MustParse(json, "a.json"), MustParse(json, "a.yaml"));
  EXPECT_EQ(MustParse(json, "a.json"),
            MustParse("name: buyer\nn: 3\nf: 0.5\nok: true\nx:\nl:\n  - 1\n  - two\n  - three: 3\n"));
}

TEST(ParseDocumentTest, HugeInputs) {
  std::string json = "{\"items\": [";
  std::string yaml = "items:\n";
  for (int i = 0; i < 200'000; ++i) {
    json += (i ? ",\"item-" : "\"item-") + std::to_string(i) + "\"";
    yaml += "  - item-" + std::to_string(i) + "\n";
  }
  json += "]}";
  for (const auto& [text, source] : {std::pair{json, "big.json"}, std::pair{yaml, "big.yaml"}}) {
    auto start = std::chrono::steady_clock::now();
    absl::StatusOr<Json> doc = ParseDocument(text, source);
    ASSERT_TRUE(doc.ok()) << doc.status();
    EXPECT_EQ((*doc)["items"].size(), 200'000u);
    std::cout << source << ": " << text.size() << " bytes parsed in "
              << std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - start).count()
              << " ms\n";
  }
  // More than a million values is refused even without aliases.
  std::string many = "[";
  for (int i = 0; i < 1'100'000; ++i) many += i ? ",0" : "0";
  many += "]";
  EXPECT_THAT(ErrorOf(many, "many.json"), HasSubstr("more than 1000000 values"));
}

TEST(ParseDocumentTest, OutOfRangeNumbersAndNonUtf8TextAreRefused) {
  // 1e400 is infinity as a double, which JSON cannot hold: refused in both formats.
  EXPECT_THAT(ErrorOf("a: 1e400"), HasSubstr("the number 1e400 is out of range"));
  EXPECT_THAT(ErrorOf("a: [1, -1e999]"), HasSubstr("the number -1e999 is out of range"));
  EXPECT_THAT(ErrorOf("{\"a\": {\"b\": 1e400}}", "t.json"),
              HasSubstr("t.json: line 1, column 13: a.b: the number 1e400 is out of range"));
  // Found by fuzz/yaml_fuzz: NUL bytes made yaml-cpp read the text as UTF-32 and build
  // strings that are not UTF-8 (which JSON cannot write).
  EXPECT_THAT(ErrorOf(std::string("\0\0\0cept\0ion\0\0\0\0\0\0\0\0a: 1", 22)),
              HasSubstr("test.yaml: line 1, column 1: NUL byte"));
  EXPECT_THAT(ErrorOf("a: \"\\ud800\""),
              HasSubstr("test.yaml: line 1, column 11: invalid unicode"));
  // Also found by fuzz/yaml_fuzz: yaml-cpp reports empty documents without end here.
  EXPECT_THAT(ErrorOf(",:  2\n"), HasSubstr("more than one YAML document"));
}

TEST(ParseDocumentTest, FlippedBytesNeverCrash) {
  const std::string base =
      "kind: AgentSpec\nname: buyer\nversion: 1.2.0\ncommand: [\"python3\", \"a.py\"]\n"
      "env: {MODEL: small}\nresources: {memory_mb: 256, cpu: 0.5}\nlabels: &l {role: buyer}\n"
      "x: *l\n";
  for (size_t i = 0; i < base.size(); ++i) {
    for (char c : {'\0', '[', '{', ':', '&', '*', '\xff', '"', '\n', '!', '-'}) {
      std::string t = base;
      t[i] = c;
      for (const std::string& text : {t, t.substr(0, i)}) {
        absl::StatusOr<Json> doc = ParseDocument(text, "flip.yaml");
        if (!doc.ok()) continue;
        (void)SpecFromJson(*doc);
        (void)DeploymentFromJson(*doc);
        (void)InstanceFromStored(*doc);
      }
    }
  }
  SUCCEED();
}

}  // namespace
}  // namespace palm::model
