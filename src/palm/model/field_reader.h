// Internal to palm_model: typed, path-aware reads of JSON documents for the codecs.
//
// Every failure is kInvalidArgument whose message starts with the field path
// ("spec.resources.memory_mb: must be a positive integer, got -5") and whose hint says what
// to write instead. A field whose value is null counts as absent (YAML `key:` with nothing
// after it). Thread-safe: no state beyond the const document being read.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "palm/model/objects.h"

namespace palm::model::codec_internal {

// How a value looks in messages: `string "three"`, `-5`, `true`, `null`, `an object`, `a list`.
std::string Describe(const Json& v);
// "spec" + "name" -> "spec.name"; IndexPath("spec.command", 2) -> "spec.command[2]".
std::string ChildPath(std::string_view parent, std::string_view key);
std::string IndexPath(std::string_view parent, size_t index);
// kInvalidArgument "<path>: <problem>" with `hint`.
absl::Status Bad(std::string_view path, std::string_view problem, std::string_view hint = {});

// The closest of `candidates` to `key` (case-insensitive match, a known alias such as
// "environment" -> "env", or edit distance <= 2), or "" when nothing is close.
std::string Suggest(std::string_view key, const std::vector<std::string_view>& candidates);

// Value readers: `v` is present and not null.
absl::Status ReadString(const Json& v, const std::string& path, std::string* out);
absl::Status ReadInt(const Json& v, const std::string& path, int64_t min, int64_t max,
                     int64_t* out);
absl::Status ReadNumber(const Json& v, const std::string& path, double min, double max,
                        double* out);
absl::Status ReadTime(const Json& v, const std::string& path, absl::Time* out);

// What the keys and values of a string map must look like.
enum class MapKind {
  kEnv,     // keys: no '=' or NUL; values: strings, numbers and booleans converted to text
  kParams,  // keys: [A-Za-z0-9_.-]+; values as env
  kLabels,  // keys: [A-Za-z0-9._/-], at most 63; values as env, at most 256 characters
};
absl::Status ReadStringMap(const Json& v, const std::string& path, MapKind kind,
                           StringMap* out);

// Marks a field as required; `what` says what to write ("the agent's name, e.g. \"buyer\"").
struct Required {
  std::string_view what;
};

// Reads the fields of one JSON object. Construct, call Check(), then the typed getters.
class FieldReader {
 public:
  // `obj` must outlive the reader. `known` are the accepted keys; `ignored` are accepted
  // and never read (server-owned fields of a document fetched from the API).
  FieldReader(const Json& obj, std::string path, std::vector<std::string_view> known,
              std::vector<std::string_view> ignored = {});

  // Fails when the value is not an object or has a key that is neither known nor ignored.
  absl::Status Check() const;

  // The value of `key`, or nullptr when absent or null.
  const Json* Get(std::string_view key) const;
  std::string Path(std::string_view key) const { return ChildPath(path_, key); }
  // "<path>.<key>: required (<what>)".
  absl::Status Missing(std::string_view key, Required req) const;

  // Typed getters: leave `*out` untouched when the field is absent and not required.
  absl::Status String(std::string_view key, std::string* out, Required req = {}) const;
  absl::Status Int(std::string_view key, int64_t min, int64_t max, int64_t* out,
                   Required req = {}) const;
  absl::Status OptInt(std::string_view key, int64_t min, int64_t max,
                      std::optional<int64_t>* out) const;
  absl::Status Number(std::string_view key, double min, double max, double* out) const;
  absl::Status OptNumber(std::string_view key, double min, double max,
                         std::optional<double>* out) const;
  absl::Status Bool(std::string_view key, bool* out) const;
  // Must be an object; null or absent gives {}.
  absl::Status Object(std::string_view key, Json* out) const;
  // A list of non-empty strings without NUL bytes.
  absl::Status StringList(std::string_view key, std::vector<std::string>* out,
                          Required req = {}) const;
  absl::Status Map(std::string_view key, MapKind kind, StringMap* out) const;
  absl::Status Time(std::string_view key, absl::Time* out) const;
  absl::Status OptTime(std::string_view key, std::optional<absl::Time>* out) const;

 private:
  const Json& obj_;
  std::string path_;
  std::vector<std::string_view> known_;
  std::vector<std::string_view> ignored_;
};

// Writes integral doubles as JSON integers (30 rather than 30.0).
Json NumberJson(double v);
// FormatTime, or null for an absent time.
Json TimeJson(const std::optional<absl::Time>& t);

}  // namespace palm::model::codec_internal
