#include "palm/cli/output.h"

#include "gtest/gtest.h"
#include "palm/cli/input.h"

namespace palm::cli {
namespace {

TEST(Table, AlignsColumnsUnderUpperCaseHeaders) {
  Table t({"name", "replicas", "phase"});
  t.AddRow({"trading-fleet", "20", "Complete"});
  t.AddRow({"echo", "3", "Progressing"});
  EXPECT_EQ(t.Render(),
            "NAME            REPLICAS   PHASE\n"
            "trading-fleet   20         Complete\n"
            "echo            3          Progressing\n");
}

TEST(Table, ShortRowsArePaddedAndTrailingBlanksTrimmed) {
  Table t({"a", "b"});
  t.AddRow({"x"});
  EXPECT_EQ(t.Render(), "A   B\nx\n");
  EXPECT_EQ(t.rows(), 1u);
}

TEST(ToJsonText, KeepsTheApiKeyOrder) {
  Doc d = Doc::parse(R"({"zeta": 1, "alpha": {"b": 2, "a": [1, 2]}, "mid": null})");
  EXPECT_EQ(ToJsonText(d),
            "{\n  \"zeta\": 1,\n  \"alpha\": {\n    \"b\": 2,\n    \"a\": [\n      1,\n      2\n"
            "    ]\n  },\n  \"mid\": null\n}\n");
}

TEST(ToYaml, QuotesStringsThatWouldChangeType) {
  Doc d = Doc::parse(
      R"({"version": "1.0", "flag": "true", "empty": "", "nothing": "null", "n": 3,
          "b": false, "x": null, "name": "echo"})");
  const std::string y = ToYaml(d);
  EXPECT_NE(y.find("version: \"1.0\""), std::string::npos) << y;
  EXPECT_NE(y.find("flag: \"true\""), std::string::npos) << y;
  EXPECT_NE(y.find("empty: \"\""), std::string::npos) << y;
  EXPECT_NE(y.find("nothing: \"null\""), std::string::npos) << y;
  EXPECT_NE(y.find("n: 3"), std::string::npos) << y;
  EXPECT_NE(y.find("b: false"), std::string::npos) << y;
  EXPECT_NE(y.find("name: echo"), std::string::npos) << y;
}

TEST(ToYaml, RoundTripsThroughTheFileReader) {
  Doc d = Doc::parse(R"({"kind": "AgentSpec", "name": "buyer", "version": "1.2.0",
      "command": ["python3", "agent.py", "--rate", "5"], "config": {"funding": 100000,
      "ratio": 0.25, "tags": [], "nested": {}, "on": "yes", "text": "a: b # c",
      "multi": "line1\nline2", "lead": " x"}, "deprecated": false, "hint": null})");
  auto back = ParseDocumentText(ToYaml(d), "roundtrip");
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << ToYaml(d);
  // The file reader does not keep key order; compare as unordered JSON.
  EXPECT_EQ(nlohmann::json(*back), nlohmann::json(d)) << ToYaml(d);
}

TEST(ToYaml, EmptyContainersAreFlow) {
  EXPECT_EQ(ToYaml(Doc::parse(R"({"a": {}, "b": []})")), "a: {}\nb: []\n");
}

TEST(At, WalksObjectsAndYieldsNullWhenMissing) {
  Doc d = Doc::parse(R"({"status": {"replicas": {"ready": 2}}, "list": [1]})");
  EXPECT_EQ(At(d, {"status", "replicas", "ready"}), 2);
  EXPECT_TRUE(At(d, {"status", "nope", "ready"}).is_null());
  EXPECT_TRUE(At(d, {"list", "x"}).is_null());
}

TEST(Cell, RendersScalarsForTables) {
  EXPECT_EQ(Cell(Doc("x")), "x");
  EXPECT_EQ(Cell(Doc("")), "-");
  EXPECT_EQ(Cell(Doc(nullptr)), "-");
  EXPECT_EQ(Cell(Doc(42)), "42");
  EXPECT_EQ(Cell(Doc(true)), "true");
  EXPECT_EQ(Cell(Doc::parse(R"({"a":1})")), R"({"a":1})");
}

TEST(Age, PrintsLikeKubectl) {
  EXPECT_EQ(FormatAge(absl::Seconds(42)), "42s");
  EXPECT_EQ(FormatAge(absl::Minutes(5)), "5m");
  EXPECT_EQ(FormatAge(absl::Hours(3)), "3h");
  EXPECT_EQ(FormatAge(absl::Hours(72)), "3d");
  EXPECT_EQ(FormatAge(-absl::Seconds(3)), "0s");  // clock skew
  absl::Time now;
  std::string err;
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, "2025-01-01T00:10:00Z", &now, &err));
  EXPECT_EQ(Age(Doc("2025-01-01T00:00:00Z"), now), "10m");
  EXPECT_EQ(Age(Doc("yesterday"), now), "-");
  EXPECT_EQ(Age(Doc(nullptr), now), "-");
}

TEST(LastExit, NamesCodeSignalOrUnknown) {
  EXPECT_EQ(LastExit(Doc(nullptr)), "-");
  EXPECT_EQ(LastExit(Doc::parse(R"({"code": 3, "at": "t"})")), "code 3");
  EXPECT_EQ(LastExit(Doc::parse(R"({"signal": "SIGKILL", "signal_number": 9})")), "SIGKILL");
  EXPECT_EQ(LastExit(Doc::parse(R"({"code": null, "signal": null, "at": "t"})")), "unknown");
}

}  // namespace
}  // namespace palm::cli
