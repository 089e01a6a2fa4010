#include "palm/cli/input.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "palm/base/error.h"
#include "palm/model/codec.h"

namespace palm::cli {

absl::StatusOr<Doc> ParseDocumentText(std::string_view text, std::string_view source) {
  absl::StatusOr<model::Json> parsed = model::ParseDocument(text, source);
  if (!parsed.ok()) return parsed.status();
  if (!parsed->is_object()) {
    return InvalidArgument(
        absl::StrCat(std::string(source), ": the document must be a mapping (key: value ...)"),
        "write an AgentSpec or Deployment as fields, e.g. \"name: echo\"");
  }
  return Doc(*parsed);
}

namespace {

// `p` made absolute and lexically normal, without a trailing slash ("/" stays "/"):
// lexically_normal turns "/srv/specs/.." into "/srv/", which is not what users want to see.
std::string CleanAbsolute(const std::filesystem::path& p) {
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(p, ec);
  if (ec) abs = p;
  std::string s = abs.lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

absl::StatusOr<FileDocument> ReadDocumentFile(const std::string& path) {
  std::string text;
  FileDocument out;
  if (path == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    out.dir = CleanAbsolute(".");
  } else {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
      return InvalidArgument(absl::StrCat(path, ": is a directory"),
                             "give the spec or deployment file itself");
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return NotFound("FILE_NOT_FOUND", absl::StrCat("cannot read ", path, ": ",
                                                     std::strerror(errno)));
    }
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
    out.dir = CleanAbsolute(std::filesystem::path(CleanAbsolute(path)).parent_path());
  }
  auto doc = ParseDocumentText(text, path == "-" ? "<stdin>" : path);
  if (!doc.ok()) return doc.status();
  out.doc = std::move(*doc);
  return out;
}

absl::Status ResolveWorkdir(Doc& spec, const std::filesystem::path& dir) {
  auto it = spec.find("workdir");
  if (it == spec.end() || it->is_null()) {
    spec["workdir"] = CleanAbsolute(dir);
    return absl::OkStatus();
  }
  if (!it->is_string()) {
    return InvalidArgument("workdir: must be a string (a directory, relative to the spec file)");
  }
  std::filesystem::path w(it->get<std::string>());
  if (w.empty()) w = ".";
  if (w.is_relative()) w = dir / w;
  *it = CleanAbsolute(w);
  return absl::OkStatus();
}

}  // namespace palm::cli
