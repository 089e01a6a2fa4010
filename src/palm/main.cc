// The one palm executable: the hidden `__exec-limits` shim (used by the process runtime to
// apply rlimits before exec'ing an agent), the hidden `__log-service` (the writer of agents'
// logs, see runtime/log_shim.h) and otherwise the CLI.
#include <cstring>

#include "palm/cli/main.h"
#include "palm/runtime/log_shim.h"
#include "palm/runtime/process_runtime.h"

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "__exec-limits") == 0) {
    // The shim sees its verb as argv[0]: __exec-limits [--as MiB] ... -- PROGRAM ARGS...
    return palm::runtime::RunLimitsShim(argc - 1, argv + 1);
  }
  if (argc > 1 && std::strcmp(argv[1], palm::runtime::kLogServiceVerb) == 0) {
    return palm::runtime::RunLogService(argc - 1, argv + 1);
  }
  return palm::cli::Main(argc, argv);
}
