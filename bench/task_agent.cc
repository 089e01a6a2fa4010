// The agent of the task benchmark (bench/task_bench.cc): echoes every task's input as its
// output, on the project's header-only C++ SDK (sdk/cpp/palm_agent.h), so the benchmark
// also exercises the SDK. palm gives it PALM_ENDPOINT, PALM_TOKEN and PALM_INSTANCE_ID.
//
// One keep-alive connection for the task loop (GET /v1/agent/tasks/next?wait_s=5, then
// POST /v1/agent/tasks/{id}/result {"ok": true, "output": <input>}), one more for a
// heartbeat every 5 s; no /healthz server; exits 0 on SIGTERM. The handler does nothing
// else, so what the benchmark measures is palm's routing, not the agent's work.
#include "palm_agent.h"

int main() {
  auto agent = palm_agent::Agent::FromEnv();
  palm_agent::RunOptions run;
  run.wait_s = 5;
  run.heartbeat_every_s = 5;
  run.serve_health = false;
  run.remember = 64;  // redeliveries only follow a lost result: a short memory is enough
  return agent.Run(
      [](const nlohmann::json& input, const nlohmann::json& /*task*/) { return input; }, run);
}
