// Fuzz target: documents -> model::ParseDocument (YAML 1.2 core schema or JSON, the
// `-f FILE` reader of the CLI and of the daemon's --examples), with its limits: depth 64,
// 1,000,000 values and 64 MiB after alias expansion, duplicate keys refused.
// Input: one byte choosing the source name (".yaml" or ".json", which selects the format
// rules), then the text.
// Build: clang++ -std=c++20 -fsanitize=fuzzer,address,undefined -I src ...; link against
// palm_model (see fuzz/CMakeLists.txt).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "palm/model/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const char* source = data[0] % 2 == 0 ? "fuzz.yaml" : "fuzz.json";
  absl::StatusOr<palm::model::Json> doc = palm::model::ParseDocument(text, source);
  if (!doc.ok()) return 0;
  // Accepted documents are JSON: finite numbers, valid UTF-8, serializable.
  (void)doc->dump(-1, ' ', false, palm::model::Json::error_handler_t::strict);
  return 0;
}
