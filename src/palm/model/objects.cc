#include "palm/model/objects.h"

#include <string.h>

#include <array>
#include <cctype>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace palm::model {
namespace {

constexpr std::array<std::pair<InstanceState, std::string_view>, 9> kStates = {{
    {InstanceState::kPending, "Pending"},
    {InstanceState::kStarting, "Starting"},
    {InstanceState::kRunning, "Running"},
    {InstanceState::kDraining, "Draining"},
    {InstanceState::kStopping, "Stopping"},
    {InstanceState::kStopped, "Stopped"},
    {InstanceState::kFailed, "Failed"},
    {InstanceState::kBackOff, "BackOff"},
    {InstanceState::kKilled, "Killed"},
}};

constexpr std::array<std::pair<HealthStatus, std::string_view>, 4> kHealth = {{
    {HealthStatus::kUnknown, "Unknown"},
    {HealthStatus::kHealthy, "Healthy"},
    {HealthStatus::kDegraded, "Degraded"},
    {HealthStatus::kUnhealthy, "Unhealthy"},
}};

constexpr std::array<std::pair<RestartMode, std::string_view>, 3> kRestart = {{
    {RestartMode::kAlways, "always"},
    {RestartMode::kOnFailure, "on_failure"},
    {RestartMode::kNever, "never"},
}};

template <typename E, size_t N>
std::string_view Lookup(const std::array<std::pair<E, std::string_view>, N>& table, E e) {
  for (const auto& [v, s] : table) {
    if (v == e) return s;
  }
  return "Unknown";
}

template <typename E, size_t N>
bool Find(const std::array<std::pair<E, std::string_view>, N>& table, std::string_view s,
          E* out) {
  for (const auto& [v, name] : table) {
    if (name == s) {
      *out = v;
      return true;
    }
  }
  return false;
}

}  // namespace

std::string_view ToString(InstanceState s) { return Lookup(kStates, s); }
bool ParseInstanceState(std::string_view s, InstanceState* out) { return Find(kStates, s, out); }

std::string_view ToString(HealthStatus s) { return Lookup(kHealth, s); }
bool ParseHealthStatus(std::string_view s, HealthStatus* out) { return Find(kHealth, s, out); }

std::string_view ToString(RestartMode m) { return Lookup(kRestart, m); }
bool ParseRestartMode(std::string_view s, RestartMode* out) { return Find(kRestart, s, out); }

std::string SignalName(int signal) {
  // sigabbrev_np (glibc >= 2.32) knows the Linux names; nullptr for real-time signals.
  if (signal > 0) {
    if (const char* abbrev = sigabbrev_np(signal)) return absl::StrCat("SIG", abbrev);
  }
  return absl::StrCat("SIG", signal);
}

bool ParseSignal(std::string_view s, int* out) {
  if (s.empty()) return false;
  if (std::isdigit(static_cast<unsigned char>(s[0]))) {
    int n = 0;
    if (!absl::SimpleAtoi(std::string(s), &n) || n < 1 || n > 64) return false;
    *out = n;
    return true;
  }
  std::string upper = absl::AsciiStrToUpper(std::string(s));
  std::string_view name = upper;
  if (name.substr(0, 3) == "SIG") name.remove_prefix(3);
  if (name.empty()) return false;
  for (int n = 1; n < 32; ++n) {
    const char* abbrev = sigabbrev_np(n);
    if (abbrev != nullptr && name == abbrev) {
      *out = n;
      return true;
    }
  }
  return false;
}

}  // namespace palm::model
