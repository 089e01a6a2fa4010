#include "palm/cli/input.h"

#include <fstream>

#include "gtest/gtest.h"

namespace palm::cli {
namespace {

namespace fs = std::filesystem;

TEST(ParseDocumentText, YamlScalarsFollowTheCoreSchema) {
  auto d = ParseDocumentText(
      "name: buyer\nversion: 1.2.0\nreplicas: 3\nratio: 0.5\non: true\nq: \"42\"\n"
      "nothing: ~\nempty:\nhex: 0x1F\nlist: [a, 2]\n",
      "t.yaml");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)["name"], "buyer");
  EXPECT_EQ((*d)["version"], "1.2.0");
  EXPECT_EQ((*d)["replicas"], 3);
  EXPECT_EQ((*d)["ratio"], 0.5);
  EXPECT_EQ((*d)["on"], true);
  EXPECT_EQ((*d)["q"], "42");
  EXPECT_TRUE((*d)["nothing"].is_null());
  EXPECT_TRUE((*d)["empty"].is_null());
  EXPECT_EQ((*d)["hex"], 31);
  EXPECT_EQ((*d)["list"], Doc::parse(R"(["a", 2])"));
}

TEST(ParseDocumentText, JsonKeepsKeyOrder) {
  auto d = ParseDocumentText(R"({"z": 1, "a": {"y": [true, null]}})", "t.json");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->dump(), R"({"z":1,"a":{"y":[true,null]}})");
}

TEST(ParseDocumentText, SyntaxErrorsNameLineAndColumn) {
  auto y = ParseDocumentText("name: a\ncommand: [unclosed\n", "spec.yaml");
  ASSERT_FALSE(y.ok());
  EXPECT_NE(y.status().message().find("spec.yaml:"), absl::string_view::npos)
      << y.status();
  auto j = ParseDocumentText("{\n  \"a\": 1,\n  oops\n}", "spec.json");
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find("spec.json:3:"), absl::string_view::npos) << j.status();
}

TEST(ParseDocumentText, RefusesWhatIsNotOneMapping) {
  EXPECT_FALSE(ParseDocumentText("", "e").ok());
  EXPECT_FALSE(ParseDocumentText("   \n", "e").ok());
  EXPECT_FALSE(ParseDocumentText("- a\n- b\n", "e").ok());
  EXPECT_FALSE(ParseDocumentText("just text", "e").ok());
  EXPECT_FALSE(ParseDocumentText("a: 1\n---\nb: 2\n", "e").ok());
  EXPECT_FALSE(ParseDocumentText("a: 1\na: 2\n", "e").ok());
  EXPECT_FALSE(ParseDocumentText("[1, 2]", "e").ok());
}

TEST(ParseDocumentText, RefusesDeepNesting) {
  std::string deep;
  for (int i = 0; i < 200; ++i) deep += "[";
  for (int i = 0; i < 200; ++i) deep += "]";
  EXPECT_FALSE(ParseDocumentText("a: " + deep, "deep").ok());
}

TEST(ResolveWorkdir, RelativeToTheSpecFile) {
  Doc d = Doc::parse(R"({"workdir": "../agents"})");
  ASSERT_TRUE(ResolveWorkdir(d, "/srv/palm/specs").ok());
  EXPECT_EQ(d["workdir"], "/srv/palm/agents");

  Doc dot = Doc::parse(R"({"workdir": "."})");
  ASSERT_TRUE(ResolveWorkdir(dot, "/srv/palm/specs").ok());
  EXPECT_EQ(dot["workdir"], "/srv/palm/specs");

  Doc missing = Doc::object();
  ASSERT_TRUE(ResolveWorkdir(missing, "/srv/palm/specs").ok());
  EXPECT_EQ(missing["workdir"], "/srv/palm/specs");

  Doc abs = Doc::parse(R"({"workdir": "/opt/agent/"})");
  ASSERT_TRUE(ResolveWorkdir(abs, "/srv").ok());
  EXPECT_EQ(abs["workdir"], "/opt/agent");

  Doc bad = Doc::parse(R"({"workdir": 5})");
  EXPECT_FALSE(ResolveWorkdir(bad, "/srv").ok());
}

TEST(ReadDocumentFile, GivesTheFilesAbsoluteDirectory) {
  const fs::path dir = fs::temp_directory_path() / ("palm_cli_input_" + std::to_string(getpid()));
  fs::create_directories(dir / "specs");
  {
    std::ofstream(dir / "specs" / "echo.yaml") << "name: echo\nworkdir: ..\n";
  }
  auto fd = ReadDocumentFile((dir / "specs" / "echo.yaml").string());
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_EQ(fd->dir, (dir / "specs").lexically_normal());
  ASSERT_TRUE(ResolveWorkdir(fd->doc, fd->dir).ok());
  EXPECT_EQ(fd->doc["workdir"], dir.lexically_normal().string());
  auto missing = ReadDocumentFile((dir / "nope.yaml").string());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace palm::cli
