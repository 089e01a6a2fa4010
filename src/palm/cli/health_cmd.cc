// palm health summary | unhealthy | check ID.
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "palm/base/error.h"
#include "palm/cli/commands.h"
#include "palm/cli/health_view.h"
#include "palm/cli/output.h"

namespace palm::cli {
namespace {

absl::Status Summary(Context& ctx) {
  auto r = ctx.Get(ctx.WithTenant("/v1/health/summary"));
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  Table t({"deployment", "desired", "ready", "healthy", "degraded", "unhealthy", "unknown"});
  if (const Doc& deps = At(r->doc, {"deployments"}); deps.is_array()) {
    for (const Doc& d : deps) {
      const Doc& total = At(d, {"instances"});
      t.AddRow({Cell(At(d, {"name"})), Cell(At(d, {"desired"})),
                CountWithPercent(At(d, {"ready"}), Doc(), total),
                CountWithPercent(At(d, {"healthy"}), At(d, {"healthy_pct"}), total),
                CountWithPercent(At(d, {"degraded"}), At(d, {"degraded_pct"}), total),
                CountWithPercent(At(d, {"unhealthy"}), At(d, {"unhealthy_pct"}), total),
                Cell(At(d, {"unknown"}))});
    }
  }
  if (t.rows() == 0) {
    std::cout << "No deployments.\n";
    return absl::OkStatus();
  }
  std::cout << t.Render();
  const Doc& tot = At(r->doc, {"totals"});
  if (tot.is_object()) {
    const Doc& n = At(tot, {"instances"});
    std::cout << "\nTOTAL   " << Cell(n) << (n == 1 ? " instance: " : " instances: ")
              << CountWithPercent(At(tot, {"healthy"}), Doc(), n) << " healthy, "
              << CountWithPercent(At(tot, {"degraded"}), Doc(), n) << " degraded, "
              << CountWithPercent(At(tot, {"unhealthy"}), Doc(), n) << " unhealthy, "
              << Cell(At(tot, {"unknown"})) << " unknown; "
              << CountWithPercent(At(tot, {"ready"}), Doc(), n) << " ready\n";
  }
  return absl::OkStatus();
}

absl::Status Unhealthy(Context& ctx) {
  auto r = ctx.Get(ctx.WithTenant("/v1/health/unhealthy"));
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  Table t({"id", "deployment", "state", "health", "reason", "ready"});
  if (const Doc& items = At(r->doc, {"items"}); items.is_array()) {
    for (const Doc& i : items) {
      t.AddRow({Cell(At(i, {"id"})), Cell(At(i, {"deployment"})), Cell(At(i, {"state"})),
                Cell(At(i, {"health", "status"})), Cell(At(i, {"health", "reason"})),
                At(i, {"ready"}) == true ? "yes" : "no"});
    }
  }
  if (t.rows() == 0) {
    std::cout << "all instances healthy\n";
    return absl::OkStatus();
  }
  std::cout << t.Render();
  return absl::OkStatus();
}

std::string Latency(const Doc& ms) {
  if (!ms.is_number()) return "-";
  const double v = ms.get<double>();
  return v >= 100 ? absl::StrCat(FormatNumber(std::round(v)), "ms")
                  : absl::StrCat(FormatNumber(std::round(v * 10) / 10), "ms");
}

absl::Status Check(Context& ctx, const std::string& id) {
  auto r =
      ctx.Call("POST", ctx.WithTenant(absl::StrCat("/v1/instances/", UrlEncode(id), "/check")));
  if (!r.ok()) return r.status();
  const Doc& probes = At(r->doc, {"probes"});
  std::vector<std::string> failed;
  if (probes.is_array()) {
    for (const Doc& p : probes) {
      if (At(p, {"ok"}) == true) continue;
      std::string what = absl::StrCat(Cell(At(p, {"probe"})), " probe failed");
      if (const Doc& m = At(p, {"message"}); m.is_string() && !m.get<std::string>().empty()) {
        absl::StrAppend(&what, ": ", m.get<std::string>());
      }
      failed.push_back(std::move(what));
    }
  }
  if (!PrintMachine(ctx.format(), *r)) {
    const std::string name =
        Cell(At(r->doc, {"instance"})) == "-" ? id : Cell(At(r->doc, {"instance"}));
    if (!probes.is_array() || probes.empty()) {
      std::cout << "instance " << name << ": no probes configured\n";
    } else {
      Table t({"probe", "type", "result", "latency", "message"});
      for (const Doc& p : probes) {
        t.AddRow({Cell(At(p, {"probe"})), Cell(At(p, {"type"})),
                  At(p, {"ok"}) == true ? "ok" : "FAIL", Latency(At(p, {"latency_ms"})),
                  Cell(At(p, {"message"}))});
      }
      std::cout << t.Render();
    }
    const Doc& h = At(r->doc, {"health"});
    std::string health = Cell(At(h, {"status"}));
    if (const Doc& reason = At(h, {"reason"});
        reason.is_string() && !reason.get<std::string>().empty()) {
      absl::StrAppend(&health, " (", reason.get<std::string>(), ")");
    }
    const Doc& ready = At(r->doc, {"ready"});
    std::cout << "\nHEALTH   " << health << "   READY   "
              << (ready.is_boolean() ? (ready == true ? "yes" : "no") : "-") << "\n";
  }
  if (!failed.empty()) {
    return Error(absl::StatusCode::kUnknown, "PROBE_FAILED",
                 absl::StrCat("instance ", id, ": ", absl::StrJoin(failed, "; ")),
                 absl::StrCat("see `palm instance logs ", id, "` and `palm events`"));
  }
  return absl::OkStatus();
}

}  // namespace

void AddHealthCommands(CLI::App& app, Action* action) {
  auto* health = app.add_subcommand("health", "Fleet health: probes, readiness, heartbeats");
  health->require_subcommand(1);

  health->add_subcommand("summary", "Per deployment: healthy, degraded, unhealthy, ready")
      ->callback([action] { *action = Summary; });
  health->add_subcommand("unhealthy", "Instances that are degraded, unhealthy or not ready")
      ->callback([action] { *action = Unhealthy; });

  auto id = std::make_shared<std::string>();
  auto* check =
      health->add_subcommand("check", "Run an instance's probes now and show each result");
  check->add_option("id", *id, "Instance id (deployment-NNN)")->required();
  check->callback([action, id] { *action = [id](Context& ctx) { return Check(ctx, *id); }; });
}

}  // namespace palm::cli
