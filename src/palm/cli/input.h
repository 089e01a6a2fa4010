// Reading the documents users hand to `-f FILE` (spec register, deployment apply).
//
// YAML (1.2 core schema) and JSON files become JSON documents for the API; the daemon
// validates them, the CLI only parses and fixes paths that are relative to the file.
// Thread-safe: pure functions (ReadDocumentFile reads the file system).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "palm/cli/context.h"

namespace palm::cli {

// Parses one YAML or JSON document. `source` names the input in messages
// ("spec.yaml:3:7: ..."). Fails with kInvalidArgument (line and column when the parser
// gives them) on syntax errors, empty input, several documents, or a top level that is
// not a mapping.
absl::StatusOr<Doc> ParseDocumentText(std::string_view text, std::string_view source);

struct FileDocument {
  Doc doc;
  std::filesystem::path dir;  // absolute directory of the file (the cwd for "-")
};

// Reads `path` ("-" = stdin) and parses it. Fails with kNotFound when it cannot be read.
absl::StatusOr<FileDocument> ReadDocumentFile(const std::string& path);

// Makes the spec's `workdir` absolute: a relative one is taken relative to `dir` (the spec
// file's directory), a missing or null one becomes `dir`. Fails when workdir is not a string.
absl::Status ResolveWorkdir(Doc& spec, const std::filesystem::path& dir);

}  // namespace palm::cli
