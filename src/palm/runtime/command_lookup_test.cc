#include "palm/runtime/command_lookup.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace palm::runtime {
namespace {

namespace fs = std::filesystem;

// A fresh directory for one test, unique even across concurrent runs of this binary.
std::filesystem::path MakeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/palm_runtime_test_XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

class ResolveCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    fs::create_directories(dir_ / "a");
    fs::create_directories(dir_ / "b");
    fs::create_directories(dir_ / "b" / "subdir");
    Write(dir_ / "a" / "tool", 0644);  // not executable
    Write(dir_ / "b" / "tool", 0755);  // executable
    Write(dir_ / "a" / "onlyhere", 0644);
    Write(dir_ / "b" / "rel", 0755);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  static void Write(const fs::path& p, mode_t mode) {
    std::ofstream(p) << "#!/bin/sh\n";
    chmod(p.c_str(), mode);
  }
  std::string Path(const std::string& sub) const { return (dir_ / sub).string(); }
  fs::path dir_;
};

TEST_F(ResolveCommandTest, SearchesPathSkippingNonExecutables) {
  auto r = ResolveCommand("tool", Path("a") + ":" + Path("b"), "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, Path("b") + "/tool");
}

TEST_F(ResolveCommandTest, NotFoundNamesThePath) {
  const std::string path = Path("a") + ":" + Path("b");
  auto r = ResolveCommand("palm-no-such-tool", path, "");
  ASSERT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(r.status().message()),
            "command \"palm-no-such-tool\" not found on PATH (" + path + ")");
}

TEST_F(ResolveCommandTest, FoundButNotExecutable) {
  auto r = ResolveCommand("onlyhere", Path("a") + ":" + Path("b"), "");
  ASSERT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(std::string(r.status().message()).find("not executable"), std::string::npos);
  auto d = ResolveCommand("subdir", Path("b"), "");
  EXPECT_EQ(d.status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(ResolveCommandTest, PathsWithSlashAreCheckedNotSearched) {
  EXPECT_EQ(*ResolveCommand("/bin/sh", "", ""), "/bin/sh");
  EXPECT_EQ(ResolveCommand(Path("nope"), "/bin", "").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ResolveCommand(Path("a/tool"), "/bin", "").status().code(),
            absl::StatusCode::kPermissionDenied);
  // Relative: resolved against the child's workdir, returned unchanged.
  EXPECT_EQ(*ResolveCommand("./rel", "", Path("b")), "./rel");
  EXPECT_EQ(ResolveCommand("./rel", "", Path("a")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ResolveCommandTest, EmptyPathEntryIsTheWorkdir) {
  EXPECT_EQ(*ResolveCommand("rel", "/nonexistent::", Path("b")), "./rel");
}

TEST_F(ResolveCommandTest, EmptyCommand) {
  EXPECT_EQ(ResolveCommand("", "/bin", "").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace palm::runtime
