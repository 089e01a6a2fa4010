// The objects of DESIGN.md section 3 that the foundation needs, as plain structs.
//
// These are values: no I/O, no locking. Wire mapping (JSON/YAML) and validation live in
// codec.h; the JSON forms are the contract (DESIGN.md section 3 and docs/api.md).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "palm/model/health_check.h"
#include "palm/model/rollout.h"

namespace palm::model {

using Json = nlohmann::json;
using StringMap = std::map<std::string, std::string>;

inline constexpr std::string_view kDefaultTenant = "default";

struct Resources {
  std::optional<int64_t> memory_mb;       // RLIMIT_AS
  std::optional<double> cpu;              // cores; informational until cgroups (autoscaler input)
  std::optional<int64_t> max_procs;       // RLIMIT_NPROC
  std::optional<int64_t> max_open_files;  // RLIMIT_NOFILE
};

struct StopSpec {
  int signal = 15;        // SIGTERM; parsed from "SIGTERM", "TERM" or a number
  double grace_s = 30;    // then SIGKILL
};

// A registered agent: name@version, immutable once registered.
struct AgentSpec {
  std::string tenant = std::string(kDefaultTenant);
  std::string name;
  std::string version;                 // semver 2.0.0
  std::vector<std::string> command;    // argv; command[0] resolved on PATH when not a path
  std::string workdir;                 // absolute after registration ("" = daemon's cwd)
  StringMap env;
  Json config = Json::object();        // passed as PALM_CONFIG
  StringMap params;                    // {{param}} substitution in command/env/config
  Resources resources;
  std::vector<std::string> ports;      // port names; palm assigns PALM_PORT_<NAME>
  Json health_check = Json::object();  // verbatim, as registered (what the API echoes)
  HealthCheckSpec health;              // health_check parsed and validated (health_check.h)
  std::vector<std::string> capabilities;
  StopSpec stop;
  StringMap labels;
  bool deprecated = false;
  absl::Time created_at;
  absl::Time updated_at;
};

enum class RestartMode { kAlways, kOnFailure, kNever };
// "always" | "on_failure" | "never" (the wire spelling).
std::string_view ToString(RestartMode m);
bool ParseRestartMode(std::string_view s, RestartMode* out);

struct RestartPolicy {
  RestartMode policy = RestartMode::kAlways;
  double backoff_initial_s = 1;
  double backoff_max_s = 300;
  double reset_after_s = 600;
};

// Desired state of a deployment (the user's document).
struct Deployment {
  std::string tenant = std::string(kDefaultTenant);
  std::string name;
  std::string spec;                    // "name@version"
  int64_t replicas = 1;
  Json config = Json::object();        // merged over the spec's config
  StringMap env;                       // merged over the spec's env
  Json strategy = Json::object();      // kept verbatim (what the API echoes)
  Strategy strategy_spec;              // `strategy` parsed and validated (rollout.h)
  RestartPolicy restart_policy;
  int64_t revision_history_limit = 10;
  StringMap labels;
  absl::Time created_at;
  absl::Time updated_at;
  // Bookkeeping owned by the daemon, persisted with the deployment.
  // The revision the deployment's template (spec, config, env) is: what a rollout rolls
  // to. A template change makes latest_revision + 1; undo goes back to an older one.
  int64_t revision = 1;
  int64_t latest_revision = 1;         // the highest revision number issued
  int64_t stable_revision = 1;         // the last revision that completed a rollout
  RolloutState rollout;                // the rollout under way, or the last one
  int64_t next_instance_seq = 1;       // instance ids are never reused
  // `palm deployment drain`: every instance drains and stops; none is started until resume.
  bool drained = false;
  // The DAL fleet face: `palm fleet deploy N "TASK"` records the task `fleet run` sends.
  std::optional<std::string> last_deployed_task;
  std::optional<absl::Time> last_deployed_at;
};

enum class InstanceState {
  kPending, kStarting, kRunning, kDraining, kStopping, kStopped, kFailed, kBackOff, kKilled
};
std::string_view ToString(InstanceState s);
bool ParseInstanceState(std::string_view s, InstanceState* out);

struct ExitInfo {
  std::optional<int> code;    // exited with this code
  std::optional<int> signal;  // killed by this signal
  absl::Time at;
  // Neither code nor signal: the process vanished while the daemon was down.
};

enum class HealthStatus { kUnknown, kHealthy, kDegraded, kUnhealthy };
std::string_view ToString(HealthStatus s);
// Reads the spelling ToString writes ("Unknown", "Healthy", "Degraded", "Unhealthy").
bool ParseHealthStatus(std::string_view s, HealthStatus* out);

// Signals by name (Linux numbering): SignalName(9) == "SIGKILL"; a number without a name
// (real-time signals) is written "SIG<n>".
std::string SignalName(int signal);
// Accepts "SIGTERM", "TERM" (any case) or a decimal number 1..64. False otherwise.
bool ParseSignal(std::string_view s, int* out);

// One supervised agent process (a replica slot; keeps its id across restarts).
// What enforced an instance's resource limits when it was last started (runtime report).
struct InstanceLimits {
  std::string enforced_by = "none";  // "none" | "rlimit" | "cgroup v1" | "cgroup v2"
  std::optional<int64_t> memory_mb;  // the limits applied; unset = not enforced
  std::optional<int64_t> max_procs;
  std::optional<int64_t> max_open_files;
  std::optional<double> cpu;
};

struct Instance {
  std::string tenant = std::string(kDefaultTenant);
  std::string id;                      // <deployment>-<nnn>
  std::string deployment;
  std::string spec;                    // name@version of its revision
  int64_t revision = 1;
  int64_t seq = 0;                     // the n of the id; scale-down removes highest first
  InstanceState state = InstanceState::kPending;
  int pid = 0;
  uint64_t proc_start_time = 0;        // /proc/<pid>/stat field 22: adoption identity check
  std::string proc_boot_id;            // boot the pid was started in ("" = not recorded)
  std::optional<InstanceLimits> limits;  // set at each start; null before the first
  int64_t restarts = 0;
  int64_t consecutive_failures = 0;    // drives backoff; reset after a stable run
  std::optional<ExitInfo> last_exit;
  std::string last_error;              // e.g. spawn failure, kept until the next good start
  std::optional<absl::Time> started_at;
  std::optional<absl::Time> next_start_at;  // BackOff: when the restart is due (wall time)
  std::map<std::string, int> ports;    // name -> port
  HealthStatus health = HealthStatus::kUnknown;
  std::string health_reason;
  absl::Time health_since;
  bool ready = false;
  std::optional<absl::Time> ready_since;  // ready without a break since (min_ready_s)
  std::optional<absl::Time> last_heartbeat;
  Json metrics = Json::object();       // last reported by the agent
  std::string log_path;
  std::string token_hash;              // hash of the instance token (PALM_TOKEN)
  absl::Time created_at;
  absl::Time updated_at;
};

}  // namespace palm::model
