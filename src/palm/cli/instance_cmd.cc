// palm instance list | get | restart | drain | logs.
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "palm/base/error.h"
#include "palm/cli/commands.h"
#include "palm/cli/output.h"

namespace palm::cli {
namespace {

std::string InstancePath(const std::string& id) {
  return absl::StrCat("/v1/instances/", UrlEncode(id));
}

struct ListOptions {
  std::string deployment;
  std::string state;
};


absl::Status List(Context& ctx, const ListOptions& o) {
  std::string path = "/v1/instances";
  std::string sep = "?";
  if (!o.deployment.empty()) {
    absl::StrAppend(&path, sep, "deployment=", UrlEncode(o.deployment));
    sep = "&";
  }
  if (!o.state.empty()) absl::StrAppend(&path, sep, "state=", UrlEncode(o.state));
  auto r = ctx.Get(ctx.WithTenant(path));
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  Table t({"id", "deployment", "state", "pid", "rev", "restarts", "ready", "last-exit", "age"});
  const absl::Time now = absl::Now();
  if (const Doc& items = At(r->doc, {"items"}); items.is_array()) {
    for (const Doc& i : items) {
      t.AddRow({Cell(At(i, {"id"})), Cell(At(i, {"deployment"})), Cell(At(i, {"state"})),
                Cell(At(i, {"pid"})), Cell(At(i, {"revision"})), Cell(At(i, {"restarts"})),
                At(i, {"ready"}) == true ? "yes" : "no", LastExit(At(i, {"last_exit"})),
                Age(At(i, {"created_at"}), now)});
    }
  }
  if (t.rows() == 0) {
    std::cerr << "No instances" << (o.deployment.empty() ? "" : " in deployment " + o.deployment)
              << ".\n";
    return absl::OkStatus();
  }
  std::cout << t.Render();
  return absl::OkStatus();
}

absl::Status Get(Context& ctx, const std::string& id) {
  auto r = ctx.Get(ctx.WithTenant(InstancePath(id)));
  if (!r.ok()) return r.status();
  if (!PrintMachine(ctx.format(), *r)) std::cout << ToYaml(r->doc);
  return absl::OkStatus();
}

absl::Status Restart(Context& ctx, const std::string& id) {
  auto r = ctx.Call("POST", ctx.WithTenant(InstancePath(id) + "/restart"));
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  std::cout << "instance " << id << " restarted\n";
  return absl::OkStatus();
}

absl::Status Drain(Context& ctx, const std::string& id) {
  auto r = ctx.Call("POST", ctx.WithTenant(InstancePath(id) + "/drain"));
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  std::cout << "instance " << id
            << " draining: it gets no new tasks, stops once its tasks in flight are done, and "
               "a replacement starts\n";
  return absl::OkStatus();
}

struct LogsOptions {
  std::string id;
  bool follow = false;
  int64_t tail = -1;
};

absl::Status Logs(Context& ctx, const LogsOptions& o) {
  std::string path = InstancePath(o.id) + "/logs";
  std::string sep = "?";
  if (o.tail >= 0) {
    absl::StrAppend(&path, sep, "tail=", o.tail);
    sep = "&";
  }
  if (!o.follow) {
    auto r = ctx.Get(ctx.WithTenant(path));
    if (!r.ok()) return r.status();
    std::cout << r->body << std::flush;
    return absl::OkStatus();
  }
  // Check the instance first so a typo is "not found" (exit 3) rather than a broken stream.
  auto inst = ctx.Get(ctx.WithTenant(InstancePath(o.id)));
  if (!inst.ok()) return inst.status();
  absl::StrAppend(&path, sep, "follow=1");
  return ctx.Stream(ctx.WithTenant(path), [](std::string_view data) {
    std::cout.write(data.data(), static_cast<std::streamsize>(data.size()));
    std::cout.flush();
    return static_cast<bool>(std::cout);
  });
}

}  // namespace

void AddInstanceCommands(CLI::App& app, Action* action) {
  auto* inst = app.add_subcommand("instance", "Inspect supervised agent processes");
  inst->alias("instances");
  inst->require_subcommand(1);

  auto lo = std::make_shared<ListOptions>();
  auto* list = inst->add_subcommand("list", "List instances");
  list->add_option("-d,--deployment", lo->deployment, "Only this deployment's instances");
  list->add_option("--state", lo->state, "Only instances in this state (e.g. Running, BackOff)");
  list->callback([action, lo] {
    *action = [lo](Context& ctx) { return List(ctx, *lo); };
  });

  auto get_id = std::make_shared<std::string>();
  auto* get = inst->add_subcommand("get", "Show one instance");
  get->add_option("id", *get_id, "Instance id (deployment-NNN)")->required();
  get->callback([action, get_id] {
    *action = [get_id](Context& ctx) { return Get(ctx, *get_id); };
  });

  auto restart_id = std::make_shared<std::string>();
  auto* restart = inst->add_subcommand("restart", "Stop the process and start it again");
  restart->add_option("id", *restart_id, "Instance id")->required();
  restart->callback([action, restart_id] {
    *action = [restart_id](Context& ctx) { return Restart(ctx, *restart_id); };
  });

  auto drain_id = std::make_shared<std::string>();
  auto* drain = inst->add_subcommand(
      "drain", "Give it no new tasks, stop it once idle, and start a replacement");
  drain->add_option("id", *drain_id, "Instance id")->required();
  drain->callback([action, drain_id] {
    *action = [drain_id](Context& ctx) { return Drain(ctx, *drain_id); };
  });

  auto lg = std::make_shared<LogsOptions>();
  auto* logs = inst->add_subcommand("logs", "Print an instance's stdout/stderr log");
  logs->add_option("id", lg->id, "Instance id")->required();
  logs->add_flag("-f,--follow", lg->follow, "Keep printing new output until Ctrl-C");
  logs->add_option("--tail", lg->tail, "Last N lines (default 100)")
      ->check(CLI::NonNegativeNumber);
  logs->callback([action, lg] {
    *action = [lg](Context& ctx) { return Logs(ctx, *lg); };
  });
}

}  // namespace palm::cli
