// Fuzz target: an API request body and its Content-Type -> api::ParseBody, the one bounded
// JSON reader of every route (depth, duplicate keys, numbers), then the field checks routes
// run on it.
// Input: the Content-Type up to the first '\n' (at most 128 bytes), then the body.
// Build: clang++ -std=c++20 -fsanitize=fuzzer,address,undefined -I src ...; link against
// palm_api (see fuzz/CMakeLists.txt).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "palm/api/request.h"
#include "palm/model/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  palm::http::Request req;
  req.method = "POST";
  req.target = req.path = "/v1/deployments";
  size_t nl = in.substr(0, 129).find('\n');
  if (nl != std::string_view::npos) {
    req.headers.emplace_back("content-type", std::string(in.substr(0, nl)));
    in.remove_prefix(nl + 1);
  }
  req.body = std::string(in);
  absl::StatusOr<palm::model::Json> body = palm::api::ParseBody(req);
  if (!body.ok()) return 0;
  // Whatever is accepted is within the limits and can be written back out.
  (void)body->dump(-1, ' ', false, palm::model::Json::error_handler_t::strict);
  if (palm::api::RequireObject(*body, "body").ok()) {
    (void)palm::api::OnlyFields(*body, {"name", "spec", "replicas"}, "body");
  }
  return 0;
}
