// palm fleet deploy | run | list | show | health: the DAL-compatible face over deployments
// (a fleet is a deployment; api.md "Fleets").
#include <algorithm>
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "palm/base/error.h"
#include "palm/cli/commands.h"
#include "palm/cli/health_view.h"
#include "palm/cli/output.h"

namespace palm::cli {
namespace {

constexpr absl::Duration kDefaultRunWait = absl::Minutes(5);

std::string DeploymentPath(const std::string& name) {
  return absl::StrCat("/v1/deployments/", UrlEncode(name));
}

std::string Str(const Doc& v) { return v.is_string() ? v.get<std::string>() : std::string(); }

// A string in JSON quotes, for showing where it starts and ends.
std::string Quote(const std::string& s) {
  return Doc(s).dump(-1, ' ', false, nlohmann::detail::error_handler_t::replace);
}

std::string Shorten(std::string s, size_t max) {
  for (char& c : s) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  if (s.size() <= max) return s;
  s.resize(max - 3);
  return s + "...";
}

absl::Status Deploy(Context& ctx, const std::string& name, const std::string& task) {
  if (task.empty()) {
    return UsageError("the fleet task is empty",
                      absl::StrCat("give the task text: palm fleet deploy ", name,
                                   " \"summarise today's orders\""));
  }
  auto r = ctx.Call("POST", ctx.WithTenant(DeploymentPath(name) + "/fleet-task"),
                    Doc{{"task", task}}.dump());
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  std::string recorded = Str(At(r->doc, {"last_deployed_task"}));
  if (recorded.empty()) recorded = task;
  std::cout << "fleet " << name << ": task recorded: " << Quote(recorded) << "\n"
            << "run it on every member with `palm fleet run " << name << "`\n";
  return absl::OkStatus();
}

bool DeliveryReached(const Doc& d) {
  const Doc& attempts = At(d, {"attempts"});
  const std::string s = Str(At(d, {"state"}));
  return (attempts.is_number() && attempts.get<double>() > 0) || s == "Succeeded" ||
         s == "Failed" || s == "Assigned";
}

// "3/3 delivered, 2 succeeded, 1 failed".
std::string RunSummary(const Doc& deliveries) {
  size_t total = 0, reached = 0, ok = 0, failed = 0, timed_out = 0, cancelled = 0, pending = 0;
  if (deliveries.is_array()) {
    total = deliveries.size();
    for (const Doc& d : deliveries) {
      reached += DeliveryReached(d) ? 1 : 0;
      const std::string s = Str(At(d, {"state"}));
      if (s == "Succeeded") {
        ++ok;
      } else if (s == "Failed") {
        ++failed;
      } else if (s == "TimedOut") {
        ++timed_out;
      } else if (s == "Cancelled") {
        ++cancelled;
      } else {
        ++pending;
      }
    }
  }
  std::string out = absl::StrCat(reached, "/", total, " delivered, ", ok, " succeeded");
  if (failed > 0) absl::StrAppend(&out, ", ", failed, " failed");
  if (timed_out > 0) absl::StrAppend(&out, ", ", timed_out, " timed out");
  if (cancelled > 0) absl::StrAppend(&out, ", ", cancelled, " cancelled");
  if (pending > 0) absl::StrAppend(&out, ", ", pending, " still running");
  return out;
}

void PrintRun(const Doc& task) {
  const Doc& ds = At(task, {"deliveries"});
  Table t({"instance", "delivery", "attempts", "result/error"});
  if (ds.is_array()) {
    for (const Doc& d : ds) {
      const Doc& max = At(task, {"max_attempts"});
      const Doc& a = At(d, {"attempts"});
      t.AddRow(
          {Cell(At(d, {"instance"})), Cell(At(d, {"state"})),
           a.is_number() && max.is_number() ? absl::StrCat(a.dump(), "/", max.dump()) : Cell(a),
           TaskResultCell(d)});
    }
  }
  if (t.rows() > 0) std::cout << t.Render();
  std::cout << RunSummary(ds) << "\n";
}

absl::Status Run(Context& ctx, const std::string& name) {
  auto timeout = ctx.Timeout(kDefaultRunWait);
  if (!timeout.ok()) return timeout.status();
  auto dep = ctx.Get(ctx.WithTenant(DeploymentPath(name)));
  if (!dep.ok()) return dep.status();
  const Doc& task_text = At(dep->doc, {"last_deployed_task"});
  if (!task_text.is_string()) {
    return Error(absl::StatusCode::kFailedPrecondition, "NO_DEPLOYED_TASK",
                 absl::StrCat("fleet ", name, " has no task to run: none was deployed to it"),
                 absl::StrCat("record one first with `palm fleet deploy ", name,
                              " \"TASK\"`, then run `palm fleet run ", name, "`"));
  }
  Doc body = {{"deployment", name},
              {"mode", "broadcast"},
              {"input", {{"task", task_text.get<std::string>()}}}};
  auto r = ctx.Call("POST", ctx.WithTenant("/v1/tasks"), body.dump());
  if (!r.ok()) return Annotate(r.status(), absl::StrCat("fleet ", name));
  const std::string id = Str(At(r->doc, {"id"}));
  if (ctx.format() == OutputFormat::kTable) {
    const Doc& ds = At(r->doc, {"deliveries"});
    const size_t n = ds.is_array() ? ds.size() : 0;
    std::cerr << "fleet " << name << ": task " << (id.empty() ? "-" : id) << " broadcast to " << n
              << (n == 1 ? " member" : " members") << "\n";
  }
  ApiResult last = *r;
  absl::Status waited = absl::OkStatus();
  if (!id.empty() && !TaskFinished(r->doc)) {
    waited = WaitForTask(ctx, id, *timeout, &last);
    if (!waited.ok() && waited.code() != absl::StatusCode::kDeadlineExceeded) return waited;
  }
  if (!PrintMachine(ctx.format(), last)) PrintRun(last.doc);
  if (!waited.ok()) return waited;
  // Any delivery that did not succeed fails the run.
  std::vector<std::string> bad;
  size_t total = 0;
  if (const Doc& ds = At(last.doc, {"deliveries"}); ds.is_array()) {
    total = ds.size();
    for (const Doc& d : ds) {
      if (Str(At(d, {"state"})) != "Succeeded") {
        std::string one = absl::StrCat(Cell(At(d, {"instance"})), " ", Cell(At(d, {"state"})));
        if (const Doc& e = At(d, {"error"}); e.is_string() && !e.get<std::string>().empty()) {
          absl::StrAppend(&one, ": ", e.get<std::string>());
        }
        bad.push_back(std::move(one));
      }
    }
  }
  if (bad.empty()) {
    absl::Status outcome = TaskOutcome(last.doc);  // e.g. a cancelled run without deliveries
    return outcome;
  }
  const size_t shown = std::min<size_t>(bad.size(), 5);
  return Error(
      absl::StatusCode::kAborted, "FLEET_RUN_FAILED",
      absl::StrCat("fleet ", name, ": ", bad.size(), " of ", total,
                   total == 1 ? " delivery" : " deliveries", " did not succeed (",
                   absl::StrJoin(bad.begin(), bad.begin() + shown, "; "),
                   bad.size() > shown ? "; ..." : "", ")"),
      absl::StrCat("see `palm task get ", id, "` and the members' logs (`palm instance logs ID`)"));
}

absl::Status List(Context& ctx) {
  const absl::Time now = absl::Now();
  return ListDeployments(
      ctx, "fleet", {"last-task", "deployed"},
      [now](const Doc& d) -> std::vector<std::string> {
        const Doc& task = At(d, {"last_deployed_task"});
        return {task.is_string() ? Shorten(task.get<std::string>(), 40) : "-",
                Age(At(d, {"last_deployed_at"}), now)};
      },
      "No fleets. Create one with `palm deploy NAME@VERSION --replicas N`.");
}

absl::Status Show(Context& ctx, const std::string& name) {
  auto r = ctx.Get(ctx.WithTenant(DeploymentPath(name)));
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  const Doc& d = r->doc;
  const Doc& st = At(d, {"status"});
  const Doc& rep = At(st, {"replicas"});
  const absl::Time now = absl::Now();
  Table t({"field", "value"});
  t.AddRow({"Fleet:", Cell(At(d, {"name"}))});
  t.AddRow({"Spec:", Cell(At(d, {"spec"}))});
  t.AddRow({"Phase:", Cell(At(st, {"phase"}))});
  t.AddRow({"Replicas:",
            absl::StrCat(Cell(At(rep, {"desired"})), " desired | ", Cell(At(rep, {"ready"})),
                         " ready | ", Cell(At(rep, {"available"})), " available")});
  if (const Doc& h = At(st, {"health"}); h.is_object()) {
    t.AddRow(
        {"Health:", absl::StrCat(Cell(At(h, {"healthy"})), " healthy | ", Cell(At(h, {"degraded"})),
                                 " degraded | ", Cell(At(h, {"unhealthy"})), " unhealthy | ",
                                 Cell(At(h, {"unknown"})), " unknown")});
  }
  const Doc& task = At(d, {"last_deployed_task"});
  t.AddRow({"Last deployed task:", task.is_string() ? Quote(task.get<std::string>()) : "-"});
  if (const Doc& at = At(d, {"last_deployed_at"}); at.is_string()) {
    t.AddRow({"Deployed:", absl::StrCat(at.get<std::string>(), " (", Age(at, now), " ago)")});
  }
  if (std::string q = TaskQueueLine(At(st, {"tasks"})); !q.empty()) t.AddRow({"Tasks:", q});
  std::string body = t.Render();
  std::cout << body.substr(body.find('\n') + 1);
  auto inst = ctx.Get(ctx.WithTenant(absl::StrCat("/v1/instances?deployment=", UrlEncode(name))));
  if (!inst.ok()) return inst.status();
  Table m({"member", "state", "ready", "health", "restarts", "age"});
  if (const Doc& items = At(inst->doc, {"items"}); items.is_array()) {
    for (const Doc& i : items) {
      m.AddRow({Cell(At(i, {"id"})), Cell(At(i, {"state"})),
                At(i, {"ready"}) == true ? "yes" : "no", Cell(At(i, {"health", "status"})),
                Cell(At(i, {"restarts"})), Age(At(i, {"created_at"}), now)});
    }
  }
  if (m.rows() > 0) std::cout << "Members:\n" << m.Render();
  return absl::OkStatus();
}

absl::Status Health(Context& ctx, const std::string& name) {
  auto r = ctx.Get(ctx.WithTenant(DeploymentPath(name)));
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  const Doc& st = At(r->doc, {"status"});
  const Doc& h = At(st, {"health"});
  // Members: the health counts' sum when reported, else the current instances.
  Doc members = At(st, {"replicas", "current"});
  if (h.is_object()) {
    double sum = 0;
    bool any = false;
    for (const char* k : {"healthy", "degraded", "unhealthy", "unknown"}) {
      if (const Doc& x = At(h, {k}); x.is_number()) {
        sum += x.get<double>();
        any = true;
      }
    }
    if (any) members = static_cast<int64_t>(sum);
  }
  Table t({"fleet", "members", "ready", "healthy", "degraded", "unhealthy", "unknown"});
  t.AddRow({Cell(At(r->doc, {"name"})), Cell(members),
            CountWithPercent(At(st, {"replicas", "ready"}), Doc(), members),
            CountWithPercent(At(h, {"healthy"}), Doc(), members),
            CountWithPercent(At(h, {"degraded"}), Doc(), members),
            CountWithPercent(At(h, {"unhealthy"}), Doc(), members), Cell(At(h, {"unknown"}))});
  std::cout << t.Render();
  auto bad =
      ctx.Get(ctx.WithTenant(absl::StrCat("/v1/health/unhealthy?deployment=", UrlEncode(name))));
  if (!bad.ok()) return bad.status();
  Table u({"member", "state", "health", "reason", "ready"});
  if (const Doc& items = At(bad->doc, {"items"}); items.is_array()) {
    for (const Doc& i : items) {
      // Older daemons ignore ?deployment=.
      if (Str(At(i, {"deployment"})) != name && At(i, {"deployment"}).is_string()) continue;
      u.AddRow({Cell(At(i, {"id"})), Cell(At(i, {"state"})), Cell(At(i, {"health", "status"})),
                Cell(At(i, {"health", "reason"})), At(i, {"ready"}) == true ? "yes" : "no"});
    }
  }
  if (u.rows() == 0) {
    std::cout << "\nall members healthy\n";
  } else {
    std::cout << "\n" << u.Render();
  }
  if (std::string reason = NotReadyReason(r->doc); !reason.empty()) {
    std::cout << "last probe failure: " << reason << "\n";
  }
  return absl::OkStatus();
}

}  // namespace

void AddFleetCommands(CLI::App& app, Action* action) {
  auto* fleet = app.add_subcommand("fleet", "DAL-compatible fleets: a fleet is a deployment");
  fleet->alias("fleets");
  fleet->require_subcommand(1);

  auto dep_name = std::make_shared<std::string>();
  auto dep_task = std::make_shared<std::string>();
  auto* deploy = fleet->add_subcommand("deploy", "Record the task `fleet run` sends to members");
  deploy->add_option("name", *dep_name, "Fleet (deployment) name")->required();
  deploy->add_option("task", *dep_task, "The task text, quoted")->required();
  deploy->callback([action, dep_name, dep_task] {
    *action = [dep_name, dep_task](Context& ctx) { return Deploy(ctx, *dep_name, *dep_task); };
  });

  auto run_name = std::make_shared<std::string>();
  auto* run = fleet->add_subcommand(
      "run", "Broadcast the deployed task to every ready member and wait for the results");
  run->add_option("name", *run_name, "Fleet (deployment) name")->required();
  run->callback(
      [action, run_name] { *action = [run_name](Context& ctx) { return Run(ctx, *run_name); }; });

  fleet->add_subcommand("list", "List fleets with their members and last deployed task")
      ->callback([action] { *action = List; });

  auto show_name = std::make_shared<std::string>();
  auto* show = fleet->add_subcommand("show", "Show a fleet, its last task and its members");
  show->add_option("name", *show_name, "Fleet (deployment) name")->required();
  show->callback([action, show_name] {
    *action = [show_name](Context& ctx) { return Show(ctx, *show_name); };
  });

  auto health_name = std::make_shared<std::string>();
  auto* health = fleet->add_subcommand("health", "Health counts and unhealthy members of a fleet");
  health->add_option("name", *health_name, "Fleet (deployment) name")->required();
  health->callback([action, health_name] {
    *action = [health_name](Context& ctx) { return Health(ctx, *health_name); };
  });
}

}  // namespace palm::cli
