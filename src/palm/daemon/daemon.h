// The control plane: builds the store, runtime, supervisor and API server, runs them on
// one event loop, and tears them down in reverse order.
//
// Start order: data dir + pid file -> store (migrations) -> admin token -> supervisor
// (loads state, re-adopts live agents) -> API server. SIGTERM/SIGINT or
// POST /v1/daemon/stop: stop accepting, finish in-flight requests, close the store; agents
// keep running unless the stop asked for `all`.
#pragma once

#include <string>

namespace palm::daemon {

struct DaemonOptions {
  std::string listen = "127.0.0.1:7070";
  std::string data_dir = ".palm";
  std::string store = "sqlite";       // "sqlite" (embedded, <data-dir>/palm.db)
  std::string examples_dir;           // when set, registers + deploys the example fleet
};

// Runs the daemon in the calling thread until it is stopped. Returns the process exit
// code (0 on a clean stop); start-up failures are printed to stderr with what to do.
int RunDaemon(const DaemonOptions& options);

}  // namespace palm::daemon
