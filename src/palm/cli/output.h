// Rendering of API documents for people (aligned tables, `kubectl`-style) and for scripts
// (`-o json` prints the API's JSON as returned, `-o yaml` the same document as YAML).
//
// Pure functions over documents and strings; the verbs decide what goes in a table.
// Thread-safe: no shared state.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "palm/cli/context.h"

namespace palm::cli {

// Columns aligned on the widest cell, separated by three spaces, headers in upper case.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  void AddRow(std::vector<std::string> cells);
  size_t rows() const { return rows_.size(); }
  // The table with a trailing newline; trailing spaces of each line trimmed.
  std::string Render() const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// `doc` pretty-printed as JSON (two-space indent, key order kept) with a trailing newline.
std::string ToJsonText(const Doc& doc);
// `doc` as a YAML document with a trailing newline. Strings that YAML would read as
// something else ("true", "1.0", "", "null") are quoted, so the YAML reads back as the JSON.
std::string ToYaml(const Doc& doc);

// The value at `path` in `doc` (objects only), or null when any step is missing.
const Doc& At(const Doc& doc, std::initializer_list<std::string_view> path);
// A scalar as a table cell: strings as is, numbers as JSON writes them, null/missing "-",
// booleans "true"/"false", objects and arrays as compact JSON.
std::string Cell(const Doc& value);
// Age of an RFC 3339 time relative to `now`, as kubectl prints it: "42s", "5m", "3h", "2d";
// "-" when the time is missing or unparsable.
std::string Age(const Doc& rfc3339, absl::Time now);
std::string FormatAge(absl::Duration d);

// An instance's last_exit as a table cell: "code 3", "SIGKILL", "unknown" (the process
// vanished while the daemon was down) or "-" (never exited).
std::string LastExit(const Doc& last_exit);

// Prints an API answer in the chosen machine format (json or yaml) to stdout.
// Returns false (printing nothing) for the table format, so the caller renders its own view.
bool PrintMachine(OutputFormat format, const ApiResult& result);

}  // namespace palm::cli
