// Internal to the supervisor (supervisor.cc, supervisor_rollout.cc): what it keeps about
// each instance beyond the model object. Thread-safety: none (the event-loop thread).
#pragma once

#include <string>

#include "absl/time/time.h"
#include "palm/controller/supervisor.h"

namespace palm::controller {

// An instance plus what only the supervisor needs to know about it.
struct Supervisor::Live {
  model::Instance inst;
  bool removing = false;        // remove the slot once the process is gone
  bool restart_after = false;   // start again once the process is gone (instance restart)
  bool kill_sent = false;       // SIGKILL already sent for the current stop
  std::string pending_token;    // PALM_TOKEN of the start under way (between the two phases)
  // Recorded as Starting (phase 1) but not spawned yet: the commit of that record failed, so
  // the next Reconcile spawns it once the record is durable.
  bool awaiting_spawn = false;
  // Probe verdicts (health manager) and the agent's own word (heartbeats): health derives
  // from both (DeriveHealth).
  bool probed = false;          // tracked by the health manager with probes configured
  bool probe_observed = false;  // a probe result has come in since the last start
  bool probe_started = true, probe_live = true, probe_ready = true;
  std::string probe_failing, probe_message;
  bool heartbeat_seen = false, heartbeat_degraded = false;
  std::string heartbeat_reason;
  std::string liveness_failure;  // set when a failed liveness probe is restarting it
  bool healing = false;          // restarted by a liveness failure, not yet healthy again
  absl::Time stop_deadline = absl::InfiniteFuture();
  // Draining: the stop signal is sent once no task is in flight, or at this time.
  absl::Time drain_deadline = absl::InfiniteFuture();
  int routed = -1;               // routability last told to the task engine (-1: never)
  DeploymentKey key() const { return {inst.tenant, inst.deployment}; }
};

}  // namespace palm::controller
