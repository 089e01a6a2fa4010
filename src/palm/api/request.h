// What every route does with a request: read its JSON body, check its fields, read numeric
// query parameters, and page a list. One place, so every endpoint refuses bad input the
// same way (DESIGN.md section 5). Pure functions; thread-safe.
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

// The body as JSON: no Content-Type is taken as JSON, another one is 415; an empty or
// malformed body is 400 MALFORMED_JSON with the byte offset.
absl::StatusOr<model::Json> ParseBody(const http::Request& req);
// kInvalidArgument "<what>: must be a JSON object, got <type>" unless `body` is an object.
absl::Status RequireObject(const model::Json& body, std::string_view what);
// Refuses fields of `body` not in `allowed` ("<what>.<field>: unknown field").
absl::Status OnlyFields(const model::Json& body, std::initializer_list<std::string_view> allowed,
                        std::string_view what);

// The query parameter `name` as an integer in [min, max]; `fallback` when absent or empty.
// kInvalidArgument "<name>: must be <what> from <min> to <max>, got \"x\"" otherwise.
absl::StatusOr<int64_t> QueryInt(const http::Request& req, std::string_view name, int64_t min,
                                 int64_t max, int64_t fallback, std::string_view what = "a number");

// {"items": [...], "next": cursor|null} with ?limit=&after=&order=desc, where the cursor
// is the `key` field of the items.
model::Json Page(std::vector<model::Json> items, const http::Request& req, const char* key);

}  // namespace palm::api
