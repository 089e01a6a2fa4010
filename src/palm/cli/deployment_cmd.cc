// palm deploy SPEC ... and palm deployment list | get | apply | scale | update | drain | delete,
// and the rollout verbs pause | resume | promote | abort | undo | restart | history
// (api.md "Deployments", "Drain", "Rollouts").
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "palm/base/error.h"
#include "palm/cli/commands.h"
#include "palm/cli/health_view.h"
#include "palm/cli/input.h"
#include "palm/cli/output.h"

namespace palm::cli {
namespace {

constexpr absl::Duration kDefaultWait = absl::Minutes(5);

std::string DeploymentPath(const std::string& name) {
  return absl::StrCat("/v1/deployments/", UrlEncode(name));
}

int64_t Num(const Doc& v, int64_t fallback = 0) {
  return v.is_number() ? v.get<int64_t>() : fallback;
}

// Waits when --wait was given, then prints the final document for -o json/yaml.
absl::Status MaybeWait(Context& ctx, const std::string& name, const ApiResult& answer,
                       const std::string& done_message) {
  if (!ctx.options().wait) {
    if (!PrintMachine(ctx.format(), answer)) std::cout << done_message << "\n";
    return absl::OkStatus();
  }
  if (ctx.format() == OutputFormat::kTable) std::cout << done_message << "\n";
  auto timeout = ctx.Timeout(kDefaultWait);
  if (!timeout.ok()) return timeout.status();
  ApiResult last;
  PALM_RETURN_IF_ERROR(WaitForDeployment(ctx, name, *timeout, answer.doc, &last));
  PrintMachine(ctx.format(), last);
  return absl::OkStatus();
}

struct DeployOptions {
  std::string spec;
  std::string name;
  int64_t replicas = -1;
  std::string config;
  std::vector<std::string> env;
  std::string strategy;
};

// --config: a JSON object (usage error otherwise).
absl::StatusOr<Doc> ParseConfigFlag(const std::string& text) {
  Doc config = Doc::parse(text, nullptr, false);
  if (config.is_discarded() || !config.is_object()) {
    return UsageError(absl::StrCat("--config must be a JSON object, got: ", text),
                      "write it like --config '{\"greeting\": \"hi\", \"rate\": 5}'");
  }
  return config;
}

// --env KEY=VALUE (repeatable) into `*env`, later ones winning; usage error on a bad one.
absl::Status ParseEnvFlags(const std::vector<std::string>& kvs, Doc* env) {
  for (const auto& kv : kvs) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return UsageError(absl::StrCat("--env must be KEY=VALUE, got: ", kv));
    }
    (*env)[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return absl::OkStatus();
}

absl::Status Deploy(Context& ctx, const DeployOptions& o) {
  std::string spec_name, spec_version;
  PALM_RETURN_IF_ERROR(SplitSpecRef(o.spec, false, &spec_name, &spec_version));
  Doc body = Doc::object();
  body["name"] = o.name.empty() ? spec_name : o.name;
  body["spec"] = o.spec;
  if (o.replicas >= 0) body["replicas"] = o.replicas;
  if (!o.config.empty()) {
    PALM_ASSIGN_OR_RETURN(body["config"], ParseConfigFlag(o.config));
  }
  if (!o.env.empty()) {
    Doc env = Doc::object();
    PALM_RETURN_IF_ERROR(ParseEnvFlags(o.env, &env));
    body["env"] = std::move(env);
  }
  if (!o.strategy.empty()) body["strategy"] = Doc{{"type", o.strategy}};
  const std::string name = body["name"].get<std::string>();
  auto r = ctx.Call("POST", ctx.WithTenant("/v1/deployments"), body.dump());
  if (!r.ok()) return r.status();
  const int64_t replicas = Num(At(r->doc, {"replicas"}), o.replicas < 0 ? 1 : o.replicas);
  return MaybeWait(ctx, name, *r,
                   absl::StrCat("deployment ", name, " created (spec ", o.spec, ", ", replicas,
                                replicas == 1 ? " replica)" : " replicas)"));
}

absl::Status List(Context& ctx) {
  const absl::Time now = absl::Now();
  return ListDeployments(
      ctx, "name", {"revision", "age"},
      [now](const Doc& d) -> std::vector<std::string> {
        const Doc& rev = At(d, {"status", "current_revision"});
        return {Cell(rev.is_null() ? At(d, {"revision"}) : rev), Age(At(d, {"created_at"}), now)};
      },
      "No deployments. Create one with `palm deploy NAME@VERSION --replicas N`.");
}

}  // namespace

absl::Status ListDeployments(Context& ctx, const std::string& name_header,
                             std::vector<std::string> extra_headers,
                             const std::function<std::vector<std::string>(const Doc&)>& extra,
                             const std::string& empty) {
  auto r = ctx.Get(ctx.WithTenant("/v1/deployments"));
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  std::vector<std::string> headers = {name_header, "spec", "replicas", "ready", "phase"};
  headers.insert(headers.end(), extra_headers.begin(), extra_headers.end());
  Table t(std::move(headers));
  if (const Doc& items = At(r->doc, {"items"}); items.is_array()) {
    for (const Doc& d : items) {
      std::vector<std::string> row = {
          Cell(At(d, {"name"})), Cell(At(d, {"spec"})), Cell(At(d, {"replicas"})),
          absl::StrCat(Cell(At(d, {"status", "replicas", "ready"})), "/",
                       Cell(At(d, {"replicas"}))),
          Cell(At(d, {"status", "phase"}))};
      for (std::string& cell : extra(d)) row.push_back(std::move(cell));
      t.AddRow(std::move(row));
    }
  }
  if (t.rows() == 0) {
    std::cerr << empty << "\n";
    return absl::OkStatus();
  }
  std::cout << t.Render();
  return absl::OkStatus();
}

namespace {

absl::Status Describe(Context& ctx, const std::string& name) {
  auto r = ctx.Get(ctx.WithTenant(DeploymentPath(name)));
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  const Doc& d = r->doc;
  const Doc& st = At(d, {"status"});
  const Doc& rep = At(st, {"replicas"});
  std::vector<std::string> states;
  if (const Doc& by = At(st, {"instances_by_state"}); by.is_object()) {
    for (auto it = by.begin(); it != by.end(); ++it) {
      states.push_back(absl::StrCat(it.key(), " ", Cell(it.value())));
    }
  }
  Table t({"field", "value"});
  t.AddRow({"Name:", Cell(At(d, {"name"}))});
  t.AddRow({"Spec:", Cell(At(d, {"spec"}))});
  t.AddRow({"Phase:", Cell(At(st, {"phase"}))});
  t.AddRow({"Revision:", absl::StrCat(Cell(At(st, {"current_revision"})), " (stable ",
                                      Cell(At(st, {"stable_revision"})), ")")});
  t.AddRow({"Replicas:",
            absl::StrCat(Cell(At(rep, {"desired"})), " desired | ", Cell(At(rep, {"current"})),
                         " current | ", Cell(At(rep, {"updated"})), " updated | ",
                         Cell(At(rep, {"ready"})), " ready | ", Cell(At(rep, {"available"})),
                         " available | ", Cell(At(rep, {"unavailable"})), " unavailable")});
  t.AddRow({"Instances:", states.empty() ? "-" : absl::StrJoin(states, ", ")});
  if (const Doc& h = At(st, {"health"}); h.is_object()) {
    t.AddRow({"Health:", absl::StrCat(Cell(At(h, {"healthy"})), " healthy | ",
                                      Cell(At(h, {"degraded"})), " degraded | ",
                                      Cell(At(h, {"unhealthy"})), " unhealthy | ",
                                      Cell(At(h, {"unknown"})), " unknown")});
  }
  if (std::string m = MetricsSummary(At(st, {"metrics"})); !m.empty()) {
    t.AddRow({"Metrics:", m});
  }
  if (const Doc& f = At(st, {"last_probe_failure"}); f.is_object()) {
    std::string at;
    if (const Doc& when = At(f, {"at"}); when.is_string()) {
      at = absl::StrCat(" (", Age(when, absl::Now()), " ago)");
    }
    t.AddRow({"Last probe failure:", absl::StrCat(NotReadyReason(d), at)});
  }
  if (std::string q = TaskQueueLine(At(st, {"tasks"})); !q.empty()) t.AddRow({"Tasks:", q});
  t.AddRow({"Restarts:", Cell(At(st, {"restarts"}))});
  t.AddRow({"Strategy:", Cell(At(d, {"strategy", "type"}))});
  t.AddRow({"Config:", Cell(At(d, {"config"}))});
  t.AddRow({"Created:", Cell(At(d, {"created_at"}))});
  // The two-column layout without its header line.
  std::string body = t.Render();
  std::cout << body.substr(body.find('\n') + 1);
  if (std::string m = TaskMetricsTable(At(st, {"tasks"})); !m.empty()) {
    std::cout << "Task metrics:\n" << m;
  }
  if (const Doc& conds = At(st, {"conditions"}); conds.is_array() && !conds.empty()) {
    Table c({"type", "status", "reason", "message"});
    for (const Doc& x : conds) {
      c.AddRow({Cell(At(x, {"type"})), Cell(At(x, {"status"})), Cell(At(x, {"reason"})),
                Cell(At(x, {"message"}))});
    }
    std::cout << "Conditions:\n" << c.Render();
  }
  return absl::OkStatus();
}

absl::Status Apply(Context& ctx, const std::string& file) {
  auto fd = ReadDocumentFile(file);
  if (!fd.ok()) return fd.status();
  const Doc& doc = fd->doc;
  if (auto kind = doc.find("kind"); kind != doc.end() && *kind != "Deployment") {
    return InvalidArgument(
        absl::StrCat(file, ": kind is ", kind->dump(), ", expected Deployment"),
        *kind == "AgentSpec" ? "register specs with `palm spec register -f FILE`" : "");
  }
  const Doc& name = At(doc, {"name"});
  if (!name.is_string() || name.get<std::string>().empty()) {
    return InvalidArgument(absl::StrCat(file, ": name: required (the deployment's name)"));
  }
  const std::string n = name.get<std::string>();
  auto r = ctx.Call("PUT", ctx.WithTenant(DeploymentPath(n)), doc.dump());
  if (!r.ok()) return Annotate(r.status(), file);
  std::string msg = absl::StrCat("deployment ", n, r->status == 201 ? " created" : " configured");
  if (const Doc& rev = At(r->doc, {"revision"}); rev.is_number()) {
    absl::StrAppend(&msg, " (revision ", rev.dump(), ")");
  }
  return MaybeWait(ctx, n, *r, msg);
}

absl::Status Scale(Context& ctx, const std::string& name, int64_t replicas) {
  if (replicas < 0) return UsageError("replicas must be 0 or more");
  auto r = ctx.Call("POST", ctx.WithTenant(DeploymentPath(name) + "/scale"),
                    Doc{{"replicas", replicas}}.dump());
  if (!r.ok()) return r.status();
  return MaybeWait(ctx, name, *r,
                   absl::StrCat("deployment ", name, " scaled to ", replicas,
                                replicas == 1 ? " replica" : " replicas"));
}

absl::Status Drain(Context& ctx, const std::string& name) {
  auto r = ctx.Call("POST", ctx.WithTenant(DeploymentPath(name) + "/drain"));
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  std::cout << "deployment " << name
            << " draining: its instances get no new tasks and stop once idle; tasks stay "
               "queued until `palm deployment resume "
            << name << "`\n";
  return absl::OkStatus();
}

// ---- Rollouts ----

// POSTs /v1/deployments/{name}/{verb} (with `body` unless null) and prints `line(answer)`, or
// the answer for -o json/yaml. With --wait, verbs that start a rollout (`waits`) then wait
// for it as `deployment apply --wait` does.
absl::Status RolloutAction(Context& ctx, const std::string& name, const std::string& verb,
                           const Doc& body, bool waits,
                           const std::function<std::string(const Doc&)>& line) {
  auto r = ctx.Call("POST", ctx.WithTenant(absl::StrCat(DeploymentPath(name), "/", verb)),
                    body.is_null() ? "" : body.dump());
  if (!r.ok()) return r.status();
  if (waits) return MaybeWait(ctx, name, *r, line(r->doc));
  if (!PrintMachine(ctx.format(), *r)) std::cout << line(r->doc) << "\n";
  return absl::OkStatus();
}

// A line that says `what` happened, then the rollout's phase, step and weight.
std::function<std::string(const Doc&)> Says(const std::string& name, const std::string& what) {
  return [name, what](const Doc& d) { return RolloutLine(name, what, d); };
}

absl::Status Pause(Context& ctx, const std::string& name) {
  return RolloutAction(ctx, name, "pause", nullptr, false, Says(name, "rollout paused"));
}

// The same endpoint ends a drain or resumes a paused (or aborted) rollout.
absl::Status Resume(Context& ctx, const std::string& name) {
  return RolloutAction(ctx, name, "resume", nullptr, true, [name](const Doc& d) {
    if (RolloutInProgress(d)) return RolloutLine(name, "rollout resumed", d);
    return absl::StrCat("deployment ", name, " resumed: its instances are starting again");
  });
}

absl::Status Promote(Context& ctx, const std::string& name, bool full) {
  return RolloutAction(ctx, name, "promote", Doc{{"full", full}}, true,
                       Says(name, full ? "rollout fully promoted" : "rollout promoted"));
}

absl::Status Abort(Context& ctx, const std::string& name) {
  return RolloutAction(ctx, name, "abort", nullptr, false, [name](const Doc& d) {
    return RolloutLine(
        name,
        absl::StrCat("rollout aborted, back on stable revision ",
                     Cell(At(d, {"status", "stable_revision"}))),
        d);
  });
}

absl::Status Undo(Context& ctx, const std::string& name, int64_t to_revision) {
  Doc body = Doc::object();
  if (to_revision > 0) body["to_revision"] = to_revision;
  return RolloutAction(ctx, name, "undo", body, true, [name](const Doc& d) {
    return RolloutLine(name, absl::StrCat("undo to revision ", CurrentRevision(d)), d);
  });
}

absl::Status Restart(Context& ctx, const std::string& name) {
  return RolloutAction(ctx, name, "restart", nullptr, true, [name](const Doc& d) {
    return RolloutLine(name, absl::StrCat("restarting as revision ", CurrentRevision(d)), d);
  });
}

absl::Status History(Context& ctx, const std::string& name) {
  auto r = ctx.Get(ctx.WithTenant(DeploymentPath(name) + "/history"));
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  if (std::string table = HistoryTable(r->doc); !table.empty()) {
    std::cout << table;
  } else {
    std::cerr << "deployment " << name << " has no revisions yet\n";
  }
  return absl::OkStatus();
}

struct UpdateOptions {
  std::string spec;
  std::string config;
  std::vector<std::string> env;
};

// The fields of a deployment document that the daemon owns: an apply ignores them, so they
// are left out of the document sent back.
constexpr const char* kServerFields[] = {
    "tenant", "created_at", "updated_at", "revision", "latest_revision", "stable_revision",
    "rollout", "status", "next_instance_seq", "drained", "last_deployed_task",
    "last_deployed_at"};

// GETs the deployment, changes spec (--spec), config (--config replaces it) and env (--env
// sets the keys given) and PUTs it back: a template change makes a new revision and rolls
// it out with the deployment's strategy.
absl::Status Update(Context& ctx, const std::string& name, const UpdateOptions& o) {
  if (o.spec.empty() && o.config.empty() && o.env.empty()) {
    return UsageError("nothing to update", "give --spec NAME@VERSION, --config JSON or --env K=V");
  }
  std::string spec_name, spec_version;
  if (!o.spec.empty()) {
    PALM_RETURN_IF_ERROR(SplitSpecRef(o.spec, true, &spec_name, &spec_version));
  }
  Doc config, env = Doc::object();
  if (!o.config.empty()) {
    PALM_ASSIGN_OR_RETURN(config, ParseConfigFlag(o.config));
  }
  PALM_RETURN_IF_ERROR(ParseEnvFlags(o.env, &env));
  const std::string path = ctx.WithTenant(DeploymentPath(name));
  auto cur = ctx.Get(path);
  if (!cur.ok()) return cur.status();
  Doc body = cur->doc;
  if (!body.is_object()) {
    return Error(absl::StatusCode::kInternal, "BAD_ANSWER",
                 absl::StrCat("deployment ", name, ": the daemon's answer is not a document"));
  }
  for (const char* field : kServerFields) body.erase(field);
  if (!o.spec.empty()) {
    body.erase("agent_ref");
    body["spec"] = o.spec;
  }
  if (!config.is_null()) body["config"] = std::move(config);
  if (!body["env"].is_object()) body["env"] = Doc::object();
  body["env"].update(env);
  auto r = ctx.Call("PUT", path, body.dump());
  if (!r.ok()) return r.status();
  const int64_t before = CurrentRevision(cur->doc), after = CurrentRevision(r->doc);
  const std::string what =
      after == before ? absl::StrCat("unchanged, revision ", after)
                      : absl::StrCat("updated to revision ", after, " with spec ",
                                     Cell(At(r->doc, {"spec"})));
  return MaybeWait(ctx, name, *r, RolloutLine(name, what, r->doc));
}

absl::Status Delete(Context& ctx, const std::string& name) {
  auto cur = ctx.Get(ctx.WithTenant(DeploymentPath(name)));
  if (!cur.ok()) return cur.status();
  int64_t instances = Num(At(cur->doc, {"status", "replicas", "current"}), -1);
  if (instances < 0) instances = Num(At(cur->doc, {"replicas"}));
  auto yes = ctx.Confirm(absl::StrCat("delete deployment ", name, " and stop its ", instances,
                                      instances == 1 ? " instance" : " instances"));
  if (!yes.ok()) return yes.status();
  if (!*yes) {
    std::cerr << "not deleted\n";
    ctx.set_exit_code(kExitFailure);
    return absl::OkStatus();
  }
  auto r = ctx.Call("DELETE", ctx.WithTenant(DeploymentPath(name)));
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  // The daemon answers once the deployment is gone; its instances stop in the background
  // (stop signal, grace, SIGKILL), so do not claim they have stopped already.
  std::cout << "deployment " << name << " deleted; stopping its " << instances
            << (instances == 1 ? " instance" : " instances") << "\n";
  return absl::OkStatus();
}

// What the end of a --wait prints or fails with (see WaitForDeployment).
absl::Status FinishWait(Context& ctx, const std::string& name, RolloutWait state,
                        const Doc& d) {
  if (state == RolloutWait::kFailed) return RolloutFailure(name, d);
  if (state == RolloutWait::kPaused) {
    (ctx.format() == OutputFormat::kTable ? std::cout : std::cerr) << PausedMessage(name, d)
                                                                   << "\n";
    return absl::OkStatus();
  }
  if (ctx.format() == OutputFormat::kTable) {
    const RolloutProgress p = ReadProgress(d);
    std::cout << "deployment " << name << " ready " << p.ready << "/" << p.desired << "\n";
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WaitForDeployment(Context& ctx, const std::string& name, absl::Duration timeout,
                               const Doc& baseline, ApiResult* last) {
  const absl::Time deadline = absl::Now() + timeout;
  const bool tty = StderrIsTty();
  bool drawn = false;
  ApiResult answer;
  while (true) {
    auto r = ctx.Get(ctx.WithTenant(DeploymentPath(name)));
    if (!r.ok()) {
      if (drawn) std::cerr << "\n";
      return r.status();
    }
    answer = std::move(*r);
    if (tty) {  // redrawn in place; a pipe or log file gets only the final line
      std::cerr << "\r\033[K" << "deployment " << name << ": "
                << ProgressLine(ReadProgress(answer.doc)) << "  " << RolloutBrief(answer.doc)
                << std::flush;
      drawn = true;
    }
    const RolloutWait state = ClassifyRollout(answer.doc, baseline);
    if (state != RolloutWait::kWaiting) {
      if (drawn) std::cerr << "\n";
      *last = std::move(answer);
      return FinishWait(ctx, name, state, last->doc);
    }
    if (absl::Now() >= deadline) break;
    absl::SleepFor(std::min(absl::Milliseconds(500), deadline - absl::Now()));
  }
  if (drawn) std::cerr << "\n";
  *last = std::move(answer);
  return Error(absl::StatusCode::kDeadlineExceeded, "HEALTH_CHECK_FAILED",
               WaitFailureMessage(name, last->doc, timeout),
               absl::StrCat("see `palm health unhealthy`, `palm events -d ", name,
                            "` and `palm instance logs ID`; raise --timeout to wait longer"));
}

void AddDeploymentCommands(CLI::App& app, Action* action) {
  auto o = std::make_shared<DeployOptions>();
  auto* deploy = app.add_subcommand("deploy", "Deploy a spec as N supervised replicas");
  deploy->add_option("spec", o->spec, "Spec to run: NAME@VERSION")->required();
  deploy->add_option("--name", o->name, "Deployment name (default: the spec's name)");
  deploy->add_option("--replicas", o->replicas, "Number of replicas (default 1)")
      ->check(CLI::Range(int64_t{0}, int64_t{10000}));
  deploy->add_option("--config", o->config, "JSON object merged over the spec's config");
  deploy->add_option("--env", o->env, "KEY=VALUE merged over the spec's env (repeatable)");
  deploy->add_option("--strategy", o->strategy, "Rollout strategy")
      ->check(CLI::IsMember({"rolling", "recreate", "blue_green", "canary"}));
  deploy->callback([action, o] {
    *action = [o](Context& ctx) { return Deploy(ctx, *o); };
  });

  auto* dep = app.add_subcommand("deployment", "Inspect and change deployments");
  dep->alias("deployments");
  dep->require_subcommand(1);

  dep->add_subcommand("list", "List deployments")->callback([action] { *action = List; });

  AddDeploymentVerb(*dep, action, "get", "Show a deployment and its status", Describe);

  auto file = std::make_shared<std::string>();
  auto* apply = dep->add_subcommand("apply", "Create or update a deployment from a file");
  apply->add_option("-f,--file", *file, "Deployment file (YAML or JSON; - reads stdin)")
      ->required();
  apply->callback([action, file] {
    *action = [file](Context& ctx) { return Apply(ctx, *file); };
  });

  auto scale_name = std::make_shared<std::string>();
  auto scale_n = std::make_shared<int64_t>(0);
  auto* scale = dep->add_subcommand("scale", "Change the number of replicas");
  scale->add_option("name", *scale_name, "Deployment name")->required();
  scale->add_option("replicas", *scale_n, "Replicas (0..10000)")
      ->required()
      ->check(CLI::Range(int64_t{0}, int64_t{10000}));
  scale->callback([action, scale_name, scale_n] {
    *action = [scale_name, scale_n](Context& ctx) { return Scale(ctx, *scale_name, *scale_n); };
  });

  auto u = std::make_shared<UpdateOptions>();
  auto* update = AddDeploymentVerb(
      *dep, action, "update",
      "Change the spec, config or env: a new revision, rolled out with the strategy",
      [u](Context& ctx, const std::string& name) { return Update(ctx, name, *u); });
  update->add_option("--spec", u->spec, "Spec to run: NAME@VERSION");
  update->add_option("--config", u->config, "JSON object that replaces the deployment's config");
  update->add_option("--env", u->env, "KEY=VALUE set in the deployment's env (repeatable)");

  AddDeploymentVerb(*dep, action, "drain",
                    "Stop giving tasks to every instance and stop them once idle, until resume",
                    Drain);
  AddDeploymentVerb(*dep, action, "resume",
                    "Resume a paused (or aborted) rollout, or end a drain", Resume);
  AddDeploymentVerb(*dep, action, "pause", "Hold the rollout under way where it stands", Pause);
  auto full = std::make_shared<bool>(false);
  AddDeploymentVerb(*dep, action, "promote",
                    "End the pause or analysis under way: canary to its next step, blue-green "
                    "to the preview",
                    [full](Context& ctx, const std::string& name) {
                      return Promote(ctx, name, *full);
                    })
      ->add_flag("--full", *full, "Skip every remaining step and analysis");
  AddDeploymentVerb(*dep, action, "abort",
                    "Route back to the stable revision at once and scale the new one to zero",
                    Abort);
  auto to_revision = std::make_shared<int64_t>(0);
  AddDeploymentVerb(*dep, action, "undo",
                    "Roll the template back to the previous revision (or --to-revision)",
                    [to_revision](Context& ctx, const std::string& name) {
                      return Undo(ctx, name, *to_revision);
                    })
      ->add_option("--to-revision", *to_revision, "Revision to return to (default the previous)")
      ->check(CLI::PositiveNumber);
  AddDeploymentVerb(*dep, action, "restart",
                    "Replace every instance with the strategy (a new revision, same template)",
                    Restart);
  AddDeploymentVerb(*dep, action, "history", "List the deployment's revisions", History);

  AddDeploymentVerb(*dep, action, "delete", "Stop every instance and remove the deployment",
                    Delete);
}

}  // namespace palm::cli
