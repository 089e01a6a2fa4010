// palm_cpp_example_agent: a tiny palm agent on the header-only C++ SDK (sdk/cpp/palm_agent.h).
//
// Tasks:
//   {"text": "hello"}   -> {"text": "HELLO", "instance": "<instance id>"}
//   {"fail": "reason"}  -> the task fails with "reason" (an exception in the handler)
//   anything else       -> {"echo": <input>, "instance": "<instance id>"}
//
// PALM_CONFIG keys: heartbeat_s (default 5), wait_s (long-poll wait, default 30).
// Heartbeats report tasks_done / tasks_failed (from the SDK) and chars_uppercased.
// Serves GET /healthz on PALM_PORT_HTTP when the spec declares an `http` port; exits 0 on
// SIGTERM or when palm drains the instance.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <stdexcept>
#include <string>

#include "palm_agent.h"

int main() {
  using palm_agent::json;
  auto agent = palm_agent::Agent::FromEnv();
  const json& config = agent.config();
  std::atomic<int64_t> chars{0};

  palm_agent::RunOptions run;
  run.heartbeat_every_s = config.value("heartbeat_s", 5.0);
  run.wait_s = config.value("wait_s", 30);
  run.metrics = [&] { return json{{"chars_uppercased", chars.load()}}; };

  const std::string id = agent.instance_id();
  return agent.Run(
      [&](const json& input, const json& /*task*/) -> json {
        if (input.is_object() && input.contains("fail")) {
          throw std::runtime_error(input["fail"].is_string() ? input["fail"].get<std::string>()
                                                             : input["fail"].dump());
        }
        if (input.is_object() && input.contains("text") && input["text"].is_string()) {
          std::string text = input["text"].get<std::string>();
          std::transform(text.begin(), text.end(), text.begin(),
                         [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
          chars += static_cast<int64_t>(text.size());
          return {{"text", text}, {"instance", id}};
        }
        return {{"echo", input}, {"instance", id}};
      },
      run);
}
