// The CLI-specific parts of reading `-f FILE`: file and stdin handling, the mapping
// requirement and workdir resolution. The parser itself is palm::model::ParseDocument,
// attacked in src/palm/model/document_test.cc; one error path here checks that its line and
// column reach the user with the file's name.
#include "palm/cli/input.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "gtest/gtest.h"

namespace palm::cli {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "palm_cli_input_XXXXXX").string();
    path_ = mkdtemp(tmpl.data()) ? fs::path(tmpl) : fs::path();
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Runs `f` with std::cin reading `text`.
template <typename F>
auto WithStdin(const std::string& text, F f) {
  std::istringstream in(text);
  std::streambuf* old = std::cin.rdbuf(in.rdbuf());
  auto result = f();
  std::cin.rdbuf(old);
  return result;
}

// Runs `f` with `dir` as the current directory.
template <typename F>
auto InDirectory(const fs::path& dir, F f) {
  const fs::path old = fs::current_path();
  fs::current_path(dir);
  auto result = f();
  fs::current_path(old);
  return result;
}

TEST(ParseDocumentText, GivesTheDocumentAsJson) {
  auto d = ParseDocumentText("name: buyer\nversion: 1.2.0\nreplicas: 3\nq: \"42\"\n", "t.yaml");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)["name"], "buyer");
  EXPECT_EQ((*d)["version"], "1.2.0");
  EXPECT_EQ((*d)["replicas"], 3);
  EXPECT_EQ((*d)["q"], "42");
  auto j = ParseDocumentText(R"({"a": {"y": [true, null]}})", "t.json");
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(j->dump(), R"({"a":{"y":[true,null]}})");
}

TEST(ParseDocumentText, SyntaxErrorsNameTheFileLineAndColumn) {
  auto y = ParseDocumentText("name: a\ncommand: [unclosed\n", "spec.yaml");
  ASSERT_FALSE(y.ok());
  EXPECT_EQ(y.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(y.status().message().find("spec.yaml: line "), absl::string_view::npos)
      << y.status();
  auto j = ParseDocumentText("{\n  \"a\": 1,\n  oops\n}", "spec.json");
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find("spec.json: line 3, column"), absl::string_view::npos)
      << j.status();
}

TEST(ParseDocumentText, RefusesATopLevelThatIsNotAMapping) {
  for (const char* text : {"- a\n- b\n", "just text", "[1, 2]", "42"}) {
    auto d = ParseDocumentText(text, "f.yaml");
    ASSERT_FALSE(d.ok()) << text;
    EXPECT_NE(d.status().message().find("f.yaml: the document must be a mapping"),
              absl::string_view::npos)
        << d.status();
  }
  EXPECT_FALSE(ParseDocumentText("", "e").ok());
  EXPECT_FALSE(ParseDocumentText("a: 1\n---\nb: 2\n", "e").ok());
}

TEST(ResolveWorkdir, RelativeToTheSpecFile) {
  Doc d = Doc::parse(R"({"workdir": "../agents"})");
  ASSERT_TRUE(ResolveWorkdir(d, "/srv/palm/specs").ok());
  EXPECT_EQ(d["workdir"], "/srv/palm/agents");

  Doc dot = Doc::parse(R"({"workdir": "."})");
  ASSERT_TRUE(ResolveWorkdir(dot, "/srv/palm/specs").ok());
  EXPECT_EQ(dot["workdir"], "/srv/palm/specs");

  Doc empty = Doc::parse(R"({"workdir": ""})");
  ASSERT_TRUE(ResolveWorkdir(empty, "/srv/palm/specs").ok());
  EXPECT_EQ(empty["workdir"], "/srv/palm/specs");

  Doc missing = Doc::object();
  ASSERT_TRUE(ResolveWorkdir(missing, "/srv/palm/specs").ok());
  EXPECT_EQ(missing["workdir"], "/srv/palm/specs");

  Doc null = Doc::parse(R"({"workdir": null})");
  ASSERT_TRUE(ResolveWorkdir(null, "/srv/palm/specs/").ok());
  EXPECT_EQ(null["workdir"], "/srv/palm/specs");

  Doc abs = Doc::parse(R"({"workdir": "/opt/agent/"})");
  ASSERT_TRUE(ResolveWorkdir(abs, "/srv").ok());
  EXPECT_EQ(abs["workdir"], "/opt/agent");

  Doc root = Doc::parse(R"({"workdir": "/"})");
  ASSERT_TRUE(ResolveWorkdir(root, "/srv").ok());
  EXPECT_EQ(root["workdir"], "/");

  Doc bad = Doc::parse(R"({"workdir": 5})");
  EXPECT_EQ(ResolveWorkdir(bad, "/srv").code(), absl::StatusCode::kInvalidArgument);
}

TEST(ReadDocumentFile, GivesTheFilesAbsoluteDirectory) {
  TempDir tmp;
  ASSERT_FALSE(tmp.path().empty());
  const fs::path dir = fs::canonical(tmp.path());
  fs::create_directories(dir / "specs");
  std::ofstream(dir / "specs" / "echo.yaml") << "name: echo\nworkdir: ..\n";
  std::ofstream(dir / "top.yaml") << "name: top\n";

  auto fd = ReadDocumentFile((dir / "specs" / "echo.yaml").string());
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_EQ(fd->dir, dir / "specs");
  ASSERT_TRUE(ResolveWorkdir(fd->doc, fd->dir).ok());
  EXPECT_EQ(fd->doc["workdir"], dir.string());

  // A relative path with ".." in it: the directory is still absolute, without a trailing '/'.
  auto up = InDirectory(dir / "specs", [] { return ReadDocumentFile("../top.yaml"); });
  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_EQ(up->dir, dir);
  ASSERT_TRUE(ResolveWorkdir(up->doc, up->dir).ok());
  EXPECT_EQ(up->doc["workdir"], dir.string());

  auto missing = ReadDocumentFile((dir / "nope.yaml").string());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope.yaml"), absl::string_view::npos);

  EXPECT_EQ(ReadDocumentFile(dir.string()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ReadDocumentFile, ParseErrorsNameTheFile) {
  TempDir tmp;
  const fs::path file = tmp.path() / "broken.yaml";
  std::ofstream(file) << "name: echo\ncommand: [python3\n";
  auto fd = ReadDocumentFile(file.string());
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(fd.status().message().find(file.string() + ": line "), absl::string_view::npos)
      << fd.status();
}

TEST(ReadDocumentFile, DashReadsStdinRelativeToTheCurrentDirectory) {
  TempDir tmp;
  const fs::path dir = fs::canonical(tmp.path());
  auto fd = InDirectory(dir, [] {
    return WithStdin("{\"name\": \"echo\", \"workdir\": \"agents/\"}", [] {
      return ReadDocumentFile("-");
    });
  });
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_EQ(fd->dir, dir);
  ASSERT_TRUE(ResolveWorkdir(fd->doc, fd->dir).ok());
  EXPECT_EQ(fd->doc["workdir"], (dir / "agents").string());

  auto bad = WithStdin("a: [1\n", [] { return ReadDocumentFile("-"); });
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("<stdin>: line "), absl::string_view::npos)
      << bad.status();
}

}  // namespace
}  // namespace palm::cli
