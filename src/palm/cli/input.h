// Reading the documents users hand to `-f FILE` (spec register, deployment apply).
//
// Parsing is palm::model::ParseDocument's (YAML 1.2 core schema or JSON, one document, with
// its limits); this module adds only what the CLI needs around it: reading the file or
// stdin, requiring a mapping at the top, and fixing paths that are relative to the file.
// The daemon validates the fields.
// Thread-safe: pure functions (ReadDocumentFile reads the file system or stdin).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "palm/cli/context.h"

namespace palm::cli {

// Parses one YAML or JSON document whose top level must be a mapping. `source` names the
// input in messages ("spec.yaml: line 3, column 7: ..."). Fails with kInvalidArgument on
// anything palm::model::ParseDocument refuses (syntax errors with line and column, empty
// input, several documents, duplicate keys, deep nesting, alias bombs) and on a top level
// that is not a mapping. Key order is not kept (the daemon does not care).
absl::StatusOr<Doc> ParseDocumentText(std::string_view text, std::string_view source);

struct FileDocument {
  Doc doc;
  std::filesystem::path dir;  // absolute directory of the file (the cwd for "-")
};

// Reads `path` ("-" = stdin, named "<stdin>" in messages) and parses it. Fails with
// kNotFound when it cannot be read, otherwise as ParseDocumentText.
absl::StatusOr<FileDocument> ReadDocumentFile(const std::string& path);

// Makes the spec's `workdir` absolute: a relative one is taken relative to `dir` (the spec
// file's directory), a missing or null one becomes `dir`; no trailing slash. Fails with
// kInvalidArgument when workdir is not a string.
absl::Status ResolveWorkdir(Doc& spec, const std::filesystem::path& dir);

}  // namespace palm::cli
