// Fuzz target: request targets -> http::SplitTarget (percent-decoding of path and query)
// and api::ValidateQuery against declared queries of the kinds palm's routes use (a list's
// limit/after/order with a name filter, ints, flags, enums, the logs query), then the
// readers routes use on a validated query (QueryInt, QueryFlag, Page).
// Input: the raw target after "/v1/x?" (or the whole target when it starts with '/').
// Build: clang++ -std=c++20 -fsanitize=fuzzer,address,undefined -I src ...; link against
// palm_api (see fuzz/CMakeLists.txt).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "palm/api/logs.h"
#include "palm/api/request.h"
#include "palm/base/names.h"
#include "palm/http/wire.h"

namespace {

using palm::api::QuerySpec;
using palm::model::Json;

const std::vector<QuerySpec>& Specs() {
  static const auto* specs = new std::vector<QuerySpec>{
      {},
      palm::api::Concat(palm::api::ListParams(10000, palm::ValidateName),
                        {palm::api::NameParam("deployment")}),
      {palm::api::IntParam("wait_s", 0, 60, "seconds"), palm::api::FlagParam("follow"),
       palm::api::EnumParam("order", {"asc", "desc"})},
      palm::api::LogsQuery(),
  };
  return *specs;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  palm::http::Request req;
  req.method = "GET";
  req.target = !in.empty() && in[0] == '/' ? std::string(in) : "/v1/x?" + std::string(in);
  palm::http::SplitTarget(req.target, &req.path, &req.query);
  for (const QuerySpec& spec : Specs()) {
    if (!palm::api::ValidateQuery(req, spec).ok()) continue;
    // A validated query reads back without surprises.
    for (const auto& p : spec) {
      if (p.kind == palm::api::QueryParam::Kind::kInt) {
        if (!palm::api::QueryInt(req, p.name, p.min, p.max, p.min).ok()) std::abort();
      }
      if (p.kind == palm::api::QueryParam::Kind::kFlag) (void)palm::api::QueryFlag(req, p.name);
    }
    if (spec.size() > 1 && spec[0].name == "limit") {
      std::vector<Json> items;
      for (int i = 0; i < 8; ++i) items.push_back({{"name", "d" + std::to_string(i)}});
      (void)palm::api::Page(std::move(items), req, "name");
    }
  }
  return 0;
}
