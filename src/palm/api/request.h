// What every route does with a request: read its JSON body, check its fields, check its
// query against what the route declares, and page a list. One place, so every endpoint
// refuses bad input the same way (docs/api.md, Requests). Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "palm/http/server.h"
#include "palm/model/objects.h"

namespace palm::api {

// ---- bodies ----

// OK when `content_type` is empty (taken as JSON) or the media type application/json
// (case-insensitive) with optional parameters, of which a charset must be utf-8.
// Otherwise UNSUPPORTED_MEDIA_TYPE (415) naming what was sent.
absl::Status CheckJsonContentType(std::string_view content_type);

// The body as JSON, read by model::ParseJson (the bounded parser: nesting at most 64
// levels, no duplicate keys, numbers that fit a double, never recursive). 415 as
// CheckJsonContentType; an empty body or one ParseJson refuses is 400 MALFORMED_JSON whose
// message gives the line, column and, when known, the field ("request body is not valid
// JSON: line 1, column 18: config.a: the number 1e400 is out of range ...").
absl::StatusOr<model::Json> ParseBody(const http::Request& req);
// kInvalidArgument "<what>: must be a JSON object, got <type>" unless `body` is an object.
absl::Status RequireObject(const model::Json& body, std::string_view what);
// Refuses fields of `body` not in `allowed` ("<what>.<field>: unknown field").
absl::Status OnlyFields(const model::Json& body, std::initializer_list<std::string_view> allowed,
                        std::string_view what);

// ---- queries ----

// One query parameter a route accepts and what its value may be. Values are never empty
// (leave a parameter out instead).
struct QueryParam {
  enum class Kind {
    kInt,    // a decimal integer from `min` to `max`
    kEnum,   // one of `values`
    kName,   // an object name (palm::ValidateName)
    kFlag,   // 1, 0, true or false
    kCheck,  // `check` decides (cursors, states)
  };
  std::string_view name;
  Kind kind = Kind::kName;
  int64_t min = 0, max = 0;               // kInt
  std::string_view unit = "a number";     // kInt, in messages: "seconds"
  std::vector<std::string_view> values;   // kEnum
  // kCheck: OK, or kInvalidArgument whose message starts with `name`.
  absl::Status (*check)(std::string_view name, std::string_view value) = nullptr;
};
using QuerySpec = std::vector<QueryParam>;

QueryParam IntParam(std::string_view name, int64_t min, int64_t max,
                    std::string_view unit = "a number");
QueryParam EnumParam(std::string_view name, std::vector<std::string_view> values);
QueryParam NameParam(std::string_view name);
QueryParam FlagParam(std::string_view name);
QueryParam CheckedParam(std::string_view name,
                        absl::Status (*check)(std::string_view name, std::string_view value));
// limit (1..max_limit), after (checked by `cursor`) and order (asc|desc) of a list.
QuerySpec ListParams(int64_t max_limit,
                     absl::Status (*cursor)(std::string_view name, std::string_view value));
// Concatenation, for a route that accepts a list's parameters and its own.
QuerySpec Concat(QuerySpec a, const QuerySpec& b);

// The query parameters every /v1 route accepts besides its own: `tenant` (a name).
const QuerySpec& CommonQuery();

// Checks the request's query against `accepted` (plus CommonQuery() under /v1/): refuses a
// name that is not accepted, a name given twice and a value of the wrong kind, with
// kInvalidArgument naming the parameter and what it may be ("limit: must be a number from
// 1 to 1000, got \"-1\""; "unknown query parameter \"sort\"" with the accepted ones in the
// hint). A route calls it before anything else, then reads the values with req.Query().
absl::Status ValidateQuery(const http::Request& req, const QuerySpec& accepted);

// The query parameter `name` as an integer in [min, max]; `fallback` when absent.
// kInvalidArgument "<name>: must be <what> from <min> to <max>, got \"x\"" otherwise.
absl::StatusOr<int64_t> QueryInt(const http::Request& req, std::string_view name, int64_t min,
                                 int64_t max, int64_t fallback, std::string_view what = "a number");
// A query flag (kFlag): true for 1/true, false for 0/false or when absent.
bool QueryFlag(const http::Request& req, std::string_view name);

// {"items": [...], "next": cursor|null} with ?limit=&after=&order=desc (checked by
// ValidateQuery with ListParams), where the cursor is the `key` field of the items: the
// page holds the items after the one whose key is `after`, and `next` is set when more
// follow. An `after` that names no item is refused with 410 CURSOR_EXPIRED rather than
// answered with the first page again: the object was deleted since the previous page (or
// was never in the list), and as these lists are in creation order a missing object has no
// place to resume from. Clients list again from the start, as Kubernetes clients do on
// 410 Expired. (A malformed `after` is 400, from ValidateQuery.)
absl::StatusOr<model::Json> Page(std::vector<model::Json> items, const http::Request& req,
                                 const char* key);

}  // namespace palm::api
