// Fuzz target: JSON bodies -> the codecs the API runs on them: AgentSpec (POST /v1/specs),
// Deployment (POST /v1/deployments), task submit (POST /v1/tasks), heartbeat (POST
// /v1/agent/heartbeat) and task result (POST /v1/agent/tasks/{id}/result).
// Input: one byte choosing the codec, then the body (read by model::ParseJson, as the API
// does). What a codec accepts must serialize, and a spec's or deployment's document must be
// accepted again (`palm ... get -o json` can be applied again).
// Build: clang++ -std=c++20 -fsanitize=fuzzer,address,undefined -I src ...; link against
// palm_api (see fuzz/CMakeLists.txt).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "palm/api/heartbeat.h"
#include "palm/model/codec.h"
#include "palm/model/task.h"

namespace {

using palm::model::Json;

void Dump(const Json& j) { (void)j.dump(-1, ' ', false, Json::error_handler_t::strict); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  absl::StatusOr<Json> doc = palm::model::ParseJson(text, "fuzz");
  if (!doc.ok()) return 0;
  switch (data[0] % 5) {
    case 0: {
      auto spec = palm::model::SpecFromJson(*doc);
      if (!spec.ok()) break;
      Dump(palm::model::ToJson(*spec));
      if (!palm::model::SpecFromJson(palm::model::SpecBody(*spec)).ok()) std::abort();
      break;
    }
    case 1: {
      auto d = palm::model::DeploymentFromJson(*doc);
      if (!d.ok()) break;
      Json out = palm::model::ToJson(*d);
      Dump(out);
      if (!palm::model::DeploymentFromJson(out).ok()) std::abort();
      break;
    }
    case 2: {
      auto t = palm::model::TaskRequestFromJson(*doc);
      if (t.ok()) Dump(t->input);
      break;
    }
    case 3: {
      auto hb = palm::api::HeartbeatFromJson(*doc);
      if (hb.ok()) Dump(hb->metrics);
      break;
    }
    case 4: {
      auto r = palm::model::TaskResultFromJson(*doc);
      if (r.ok()) Dump(r->output);
      break;
    }
  }
  return 0;
}
