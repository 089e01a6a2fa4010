// palm status: the "FLEET STATUS" panel (GET /v1/status).
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "palm/cli/commands.h"
#include "palm/cli/health_view.h"
#include "palm/cli/output.h"

namespace palm::cli {
namespace {

absl::Status FleetStatus(Context& ctx) {
  auto r = ctx.Get(ctx.WithTenant("/v1/status"));
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  const Doc& doc = r->doc;

  std::string header = "FLEET STATUS";
  const Doc& daemon = At(doc, {"daemon"});
  std::vector<std::string> about;
  if (!At(daemon, {"version"}).is_null()) about.push_back("palm " + Cell(At(daemon, {"version"})));
  if (!At(daemon, {"pid"}).is_null()) about.push_back("pid " + Cell(At(daemon, {"pid"})));
  if (const Doc& up = At(daemon, {"uptime_s"}); up.is_number()) {
    about.push_back("up " + FormatAge(absl::Seconds(up.get<double>())));
  }
  about.push_back(ctx.options().endpoint);
  std::cout << header << "   " << absl::StrJoin(about, " · ") << "\n\n";

  const Doc& deps = At(doc, {"deployments"});
  // Health counts come from daemons with probes; older ones lack them (no columns then).
  bool with_health = false;
  if (deps.is_array()) {
    for (const Doc& d : deps) with_health = with_health || d.contains("healthy");
  }
  std::vector<std::string> headers = {"name",    "spec",  "rev",      "desired",
                                      "running", "ready", "restarts", "phase"};
  if (with_health) headers.insert(headers.end(), {"healthy", "degraded", "unhealthy"});
  Table t(headers);
  std::vector<std::string> metrics;
  if (deps.is_array()) {
    for (const Doc& d : deps) {
      std::vector<std::string> row = {Cell(At(d, {"name"})),     Cell(At(d, {"spec"})),
                                      Cell(At(d, {"revision"})), Cell(At(d, {"desired"})),
                                      Cell(At(d, {"running"})),  Cell(At(d, {"ready"})),
                                      Cell(At(d, {"restarts"})), Cell(At(d, {"phase"}))};
      if (with_health) {
        row.insert(row.end(), {Cell(At(d, {"healthy"})), Cell(At(d, {"degraded"})),
                               Cell(At(d, {"unhealthy"}))});
      }
      t.AddRow(std::move(row));
      if (std::string m = MetricsSummary(At(d, {"metrics"})); !m.empty()) {
        metrics.push_back(absl::StrCat(Cell(At(d, {"name"})), ": ", m));
      }
    }
  }
  if (t.rows() == 0) {
    std::cout << "No deployments. Register a spec and deploy it: palm spec register -f FILE; "
                 "palm deploy NAME@VERSION --replicas N\n";
  } else {
    std::cout << t.Render();
  }
  if (!metrics.empty()) {
    std::cout << "\nMETRICS\n";
    for (const auto& m : metrics) std::cout << "  " << m << "\n";
  }

  const Doc& inst = At(doc, {"instances"});
  std::vector<std::string> states;
  if (const Doc& by = At(inst, {"by_state"}); by.is_object()) {
    for (auto it = by.begin(); it != by.end(); ++it) {
      states.push_back(absl::StrCat(it.key(), " ", Cell(it.value())));
    }
  }
  std::cout << "\nINSTANCES   " << Cell(At(inst, {"total"})) << " total"
            << (states.empty() ? "" : ": ") << absl::StrJoin(states, ", ") << "\n";
  return absl::OkStatus();
}

}  // namespace

void AddStatusCommand(CLI::App& app, Action* action) {
  auto* status = app.add_subcommand("status", "Fleet overview: deployments and instances");
  status->callback([action] { *action = FleetStatus; });
}

}  // namespace palm::cli
