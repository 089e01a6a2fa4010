// palm rollout status N [--watch], and the views of a deployment's rollout (api.md
// "Rollouts") that the deployment verbs share: the one-line summary an action prints, what
// --wait makes of a rollout, the status report and the revision history table.
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

constexpr absl::Duration kPollInterval = absl::Milliseconds(500);

std::string Str(const Doc& v) { return v.is_string() ? v.get<std::string>() : std::string(); }

int64_t Int(const Doc& v, int64_t fallback = 0) {
  return v.is_number() ? v.get<int64_t>() : fallback;
}

const Doc& Rollout(const Doc& d) { return At(d, {"status", "rollout"}); }

// status.rollout.strategy, else the deployment's strategy.type, else "rolling" (the default).
std::string StrategyType(const Doc& d) {
  std::string type = Str(At(Rollout(d), {"strategy"}));
  if (type.empty()) type = Str(At(d, {"strategy", "type"}));
  return type.empty() ? "rolling" : type;
}

bool InFlight(const std::string& phase) {
  return phase == "Pending" || phase == "Progressing" || phase == "RollingBack";
}

// The template went back to the revision the rollout started from (an automatic rollback
// after a failed analysis or a missed deadline): the revision rolled out did not stick.
bool RolledBack(const Doc& d) {
  const Doc& ro = Rollout(d);
  const int64_t current = CurrentRevision(d);
  return At(ro, {"to_revision"}).is_number() && Int(At(ro, {"to_revision"})) != current &&
         Int(At(ro, {"from_revision"}), -1) == current;
}

// Whether `a` and `b` show the same rollout (it started at the same time, between the same
// revisions).
bool SameRollout(const Doc& a, const Doc& b) {
  for (const char* key : {"started_at", "from_revision", "to_revision"}) {
    if (At(Rollout(a), {key}) != At(Rollout(b), {key})) return false;
  }
  return true;
}

// "2/6 (pause)" (the API's `step` is the 0-based index of the step under way; people count
// from 1), "6/6 (done)" past the last one, "" when the strategy has no steps.
std::string StepText(const Doc& rollout) {
  const int64_t steps = Int(At(rollout, {"steps"}));
  if (steps <= 0) return "";
  const int64_t index = Int(At(rollout, {"step"}));
  std::string out = absl::StrCat(std::min(index + 1, steps), "/", steps);
  if (std::string name = Str(At(rollout, {"step_name"})); !name.empty()) {
    absl::StrAppend(&out, " (", name, ")");
  }
  return out;
}

// "[#########...........] 9/20 updated"
std::string UpdatedBar(const Doc& d) {
  constexpr int64_t kWidth = 20;
  const RolloutProgress p = ReadProgress(d);
  const int64_t filled =
      p.desired <= 0 ? kWidth : std::clamp<int64_t>(p.updated, 0, p.desired) * kWidth / p.desired;
  return absl::StrCat("[", std::string(filled, '#'), std::string(kWidth - filled, '.'), "] ",
                      p.updated, "/", p.desired, " updated");
}

// "error rate 2%, p99 9ms, 41 tasks": one side of an analysis measurement.
std::string WindowText(const Doc& w) {
  if (!w.is_object()) return "-";
  const Doc& rate = At(w, {"error_rate"});
  return absl::StrCat("error rate ",
                      rate.is_number() ? FormatPercent(rate.get<double>() * 100) : "-", ", p99 ",
                      FormatMillis(At(w, {"p99_ms"})), ", ", Cell(At(w, {"count"})), " tasks");
}

void AddAnalysisRows(const Doc& analysis, Table* t) {
  const Doc& last = At(analysis, {"last"});
  std::string run =
      absl::StrCat(Cell(At(analysis, {"phase"})), ", ", Cell(At(analysis, {"measurements"})),
                   " measurements: ", Cell(At(analysis, {"successful"})), " successful, ",
                   Cell(At(analysis, {"failed"})), " failed, ",
                   Cell(At(analysis, {"inconclusive"})), " inconclusive");
  t->AddRow({"Analysis:", run});
  if (!last.is_object()) return;
  t->AddRow({"Last measurement:", Cell(At(last, {"outcome"}))});
  if (const Doc& reasons = At(last, {"reasons"}); reasons.is_array() && !reasons.empty()) {
    std::vector<std::string> parts;
    for (const Doc& r : reasons) parts.push_back(Cell(r));
    t->AddRow({"Reasons:", absl::StrJoin(parts, "; ")});
  }
  t->AddRow({"Candidate:", WindowText(At(last, {"candidate"}))});
  t->AddRow({"Stable:", WindowText(At(last, {"stable"}))});
}

// "deployment buyer: phase Progressing, step 1/6 (pause), weight 10%; 2/10 updated, 12
// available: <message>": what a --watch without a terminal prints when something changed.
std::string WatchLine(const std::string& name, const Doc& d) {
  const RolloutProgress p = ReadProgress(d);
  std::string line = absl::StrCat("deployment ", name, ": ", RolloutBrief(d), "; ", p.updated, "/",
                                  p.desired, " updated, ", p.ready, " available");
  if (std::string m = Str(At(Rollout(d), {"message"})); !m.empty()) absl::StrAppend(&line, ": ", m);
  return line;
}

// Redraws a block of lines in place on a terminal: the cursor goes back to the block's first
// line and everything below is cleared before the new block is written.
class InPlace {
 public:
  void Draw(const std::string& block) {
    if (lines_ > 0) std::cout << "\033[" << lines_ << "A\r\033[J";
    std::cout << block << std::flush;
    lines_ = std::count(block.begin(), block.end(), '\n');
  }

 private:
  int64_t lines_ = 0;
};

absl::Status Watch(Context& ctx, const std::string& name, const std::string& path) {
  absl::Duration timeout = absl::InfiniteDuration();
  if (!ctx.options().timeout.empty()) {
    auto t = ctx.Timeout(timeout);
    if (!t.ok()) return t.status();
    timeout = *t;
  }
  const absl::Time deadline = absl::Now() + timeout;
  const bool table = ctx.format() == OutputFormat::kTable;
  const bool tty = table && StdoutIsTty();
  InPlace screen;
  std::string last_line;
  ApiResult answer;
  while (true) {
    auto r = ctx.Get(path);
    if (!r.ok()) return r.status();
    answer = std::move(*r);
    if (tty) {
      screen.Draw(absl::StrCat(RolloutStatusText(answer.doc), UpdatedBar(answer.doc), "\n"));
    } else if (table) {
      if (std::string line = WatchLine(name, answer.doc); line != last_line) {
        std::cout << line << std::endl;
        last_line = std::move(line);
      }
    }
    if (!RolloutInProgress(answer.doc)) break;
    if (absl::Now() >= deadline) {
      return Error(
          absl::StatusCode::kDeadlineExceeded, "TIMEOUT",
          absl::StrCat("deployment ", name, ": rollout still ", RolloutBrief(answer.doc), " after ",
                       absl::FormatDuration(timeout)),
          absl::StrCat("it goes on; follow it with `palm rollout status ", name, " --watch`"));
    }
    absl::SleepFor(std::min(kPollInterval, deadline - absl::Now()));
  }
  if (!PrintMachine(ctx.format(), answer) && !tty) std::cout << RolloutStatusText(answer.doc);
  if (RolloutFailed(answer.doc)) return RolloutFailure(name, answer.doc);
  return absl::OkStatus();
}

absl::Status Status(Context& ctx, const std::string& name, bool watch) {
  const std::string path = ctx.WithTenant(absl::StrCat("/v1/deployments/", UrlEncode(name)));
  if (watch) return Watch(ctx, name, path);
  auto r = ctx.Get(path);
  if (!r.ok()) return r.status();
  if (!PrintMachine(ctx.format(), *r)) std::cout << RolloutStatusText(r->doc);
  return absl::OkStatus();
}

}  // namespace

int64_t CurrentRevision(const Doc& d) {
  return Int(At(d, {"status", "current_revision"}), Int(At(d, {"revision"})));
}

std::string RolloutPhase(const Doc& d) {
  std::string phase = Str(At(Rollout(d), {"phase"}));
  return phase.empty() ? Str(At(d, {"status", "phase"})) : phase;
}

std::string RolloutBrief(const Doc& d) {
  const Doc& ro = Rollout(d);
  const std::string phase = RolloutPhase(d);
  std::vector<std::string> parts = {absl::StrCat("phase ", phase.empty() ? "-" : phase)};
  if (At(ro, {"aborted"}) == true) parts.push_back("aborted");
  if (std::string step = StepText(ro); !step.empty()) parts.push_back("step " + step);
  if (StrategyType(d) == "canary" && At(ro, {"weight"}).is_number()) {
    parts.push_back(absl::StrCat("weight ", Int(At(ro, {"weight"})), "%"));
  }
  return absl::StrJoin(parts, ", ");
}

std::string RolloutLine(const std::string& name, const std::string& what, const Doc& d) {
  return absl::StrCat("deployment ", name, ": ", what, " (", RolloutBrief(d), ")");
}

bool RolloutInProgress(const Doc& d) {
  const std::string phase = Str(At(Rollout(d), {"phase"}));
  return InFlight(phase) || phase == "Paused";
}

bool RolloutFailed(const Doc& d) {
  const Doc& ro = Rollout(d);
  const std::string phase = Str(At(ro, {"phase"}));
  return phase == "Failed" || phase == "Degraded" || At(ro, {"aborted"}) == true;
}

RolloutWait ClassifyRollout(const Doc& d, const Doc& baseline) {
  const Doc& ro = Rollout(d);
  const std::string phase = Str(At(ro, {"phase"}));
  const bool history = !RolloutInProgress(baseline) && SameRollout(baseline, d);
  if (RolloutFailed(d) || (RolledBack(d) && !history)) return RolloutWait::kFailed;
  // A timed pause step ends by itself; the others wait for a human.
  if (phase == "Paused" &&
      (At(ro, {"pause_until"}).is_null() || Str(At(ro, {"pause_reason"})) == "user")) {
    return RolloutWait::kPaused;
  }
  if (InFlight(phase) || phase == "Paused") return RolloutWait::kWaiting;
  return ReadProgress(d).done ? RolloutWait::kDone : RolloutWait::kWaiting;
}

std::string PausedMessage(const std::string& name, const Doc& d) {
  const Doc& ro = Rollout(d);
  const std::string reason = Str(At(ro, {"pause_reason"}));
  if (reason == "preview") {
    return absl::StrCat("deployment ", name, ": preview revision ",
                        Int(At(ro, {"preview_revision"}), CurrentRevision(d)),
                        " is ready: run `palm deployment promote ", name, "` to switch to it");
  }
  std::string out = absl::StrCat("deployment ", name, ": rollout paused");
  if (std::string step = StepText(ro); !step.empty()) absl::StrAppend(&out, " at step ", step);
  if (reason == "user") {
    return absl::StrCat(out, " by `palm deployment pause`: run `palm deployment resume ", name,
                        "` to go on");
  }
  if (reason == "inconclusive") absl::StrAppend(&out, ", analysis inconclusive");
  return absl::StrCat(out, ": run `palm deployment promote ", name, "` to go on");
}

absl::Status RolloutFailure(const std::string& name, const Doc& d) {
  const Doc& ro = Rollout(d);
  const int64_t to = Int(At(ro, {"to_revision"}), CurrentRevision(d));
  std::string msg = absl::StrCat("deployment ", name, ": rollout to revision ", to, " failed (",
                                 RolloutBrief(d), ")");
  if (std::string m = Str(At(ro, {"message"})); !m.empty()) absl::StrAppend(&msg, ": ", m);
  if (CurrentRevision(d) != to) {
    absl::StrAppend(&msg, "; the template is back on revision ", CurrentRevision(d));
  }
  return Error(
      absl::StatusCode::kAborted, "DEPLOYMENT_FAILED", msg,
      absl::StrCat("see `palm rollout status ", name, "` and `palm events -d ", name,
                   "`; `palm deployment resume ", name, "` retries it, `palm deployment undo ",
                   name, "` returns to the stable revision"));
}

std::string RolloutStatusText(const Doc& d) {
  const Doc& st = At(d, {"status"});
  const Doc& ro = Rollout(d);
  const Doc& rep = At(st, {"replicas"});
  Table t({"field", "value"});
  t.AddRow({"Deployment:", Cell(At(d, {"name"}))});
  const std::string strategy = StrategyType(d);
  t.AddRow({"Strategy:", strategy});
  std::string phase = RolloutPhase(d);
  if (phase.empty()) phase = "-";
  if (std::string reason = Str(At(ro, {"pause_reason"})); !reason.empty() && phase == "Paused") {
    absl::StrAppend(&phase, " (", reason, ")");
  }
  if (At(ro, {"aborted"}) == true) absl::StrAppend(&phase, " (aborted)");
  t.AddRow({"Phase:", phase});
  const int64_t stable = Int(At(st, {"stable_revision"})), current = CurrentRevision(d);
  t.AddRow({"Revisions:", stable == current
                              ? absl::StrCat("current ", current, " (stable)")
                              : absl::StrCat("stable ", stable, " -> current ", current)});
  if (std::string step = StepText(ro); !step.empty()) t.AddRow({"Step:", step});
  if (strategy == "canary" && At(ro, {"weight"}).is_number()) {
    t.AddRow({"Weight:", absl::StrCat(Int(At(ro, {"weight"})), "%")});
  }
  t.AddRow({"Replicas:",
            absl::StrCat(Cell(At(rep, {"desired"})), " desired | ", Cell(At(rep, {"updated"})),
                         " updated | ", Cell(At(rep, {"ready"})), " ready | ",
                         Cell(At(rep, {"available"})), " available")});
  if (const Doc& a = At(ro, {"analysis"}); a.is_object()) AddAnalysisRows(a, &t);
  if (std::string m = Str(At(ro, {"message"})); !m.empty()) t.AddRow({"Message:", m});
  // The two-column layout without its header line.
  const std::string body = t.Render();
  return body.substr(body.find('\n') + 1);
}

std::string HistoryTable(const Doc& history) {
  Table t({"revision", "spec", "change-cause", "created", "outcome"});
  const Doc& items = At(history, {"items"});
  if (!items.is_array()) return "";
  for (const Doc& rev : items) {
    std::vector<std::string> marks;
    if (At(rev, {"current"}) == true) marks.push_back("current");
    if (At(rev, {"stable"}) == true) marks.push_back("stable");
    std::string number = Cell(At(rev, {"revision"}));
    if (!marks.empty()) absl::StrAppend(&number, " (", absl::StrJoin(marks, ", "), ")");
    std::string outcome = Cell(At(rev, {"outcome"}));
    const std::string why = Str(At(rev, {"outcome_message"}));
    if (!why.empty() && outcome != "Complete" && outcome != "Progressing") {
      absl::StrAppend(&outcome, ": ", why);
    }
    t.AddRow({std::move(number), Cell(At(rev, {"spec"})), Cell(At(rev, {"change_cause"})),
              EventTime(Doc{{"time", At(rev, {"created_at"})}}), std::move(outcome)});
  }
  return t.rows() == 0 ? "" : t.Render();
}

CLI::App* AddDeploymentVerb(CLI::App& parent, Action* action, const std::string& verb,
                            const std::string& help, DeploymentVerb fn) {
  auto name = std::make_shared<std::string>();
  auto* sub = parent.add_subcommand(verb, help);
  sub->add_option("name", *name, "Deployment name")->required();
  sub->callback([action, name, fn = std::move(fn)] {
    *action = [name, fn](Context& ctx) { return fn(ctx, *name); };
  });
  return sub;
}

void AddRolloutCommands(CLI::App& app, Action* action) {
  auto* rollout = app.add_subcommand("rollout", "Follow the rollout of a deployment");
  rollout->alias("rollouts");
  rollout->require_subcommand(1);
  auto watch = std::make_shared<bool>(false);
  auto* status = AddDeploymentVerb(
      *rollout, action, "status",
      "Show a deployment's rollout: phase, revisions, step, weight, replicas, analysis",
      [watch](Context& ctx, const std::string& name) { return Status(ctx, name, *watch); });
  status->add_flag("-w,--watch", *watch,
                   "Keep showing it until the rollout is no longer Progressing, Paused or "
                   "RollingBack; exit 1 when it ends Failed, Degraded or aborted");
}

}  // namespace palm::cli
