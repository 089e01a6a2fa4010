// Loads the example fleet for `make run` (`palm daemon start --examples DIR`): registers
// every AgentSpec and then applies every Deployment found in DIR/specs/*.{yaml,yml,json}.
// Relative spec workdirs are resolved against the file's directory, as the CLI does.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "palm/controller/supervisor.h"

namespace palm::daemon {

// Fails on the first file that does not parse or validate (naming it); what was loaded
// before stays.
absl::Status LoadExamples(controller::Supervisor& supervisor, const std::string& dir);

}  // namespace palm::daemon
