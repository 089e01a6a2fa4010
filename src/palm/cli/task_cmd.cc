// palm task submit | list | get | cancel (api.md "Tasks").
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "palm/base/error.h"
#include "palm/cli/commands.h"
#include "palm/cli/health_view.h"
#include "palm/cli/output.h"

namespace palm::cli {
namespace {

constexpr absl::Duration kDefaultWait = absl::Minutes(5);
// The longest a single long-poll asks the daemon to hold (api.md allows 60; the CLI's
// HTTP client gives up after 30 s).
constexpr absl::Duration kMaxPoll = absl::Seconds(25);
constexpr const char* kStates[] = {"Queued", "Assigned", "Succeeded",
                                   "Failed", "TimedOut", "Cancelled"};

std::string TaskPath(const std::string& id) { return absl::StrCat("/v1/tasks/", UrlEncode(id)); }

std::string Str(const Doc& v) { return v.is_string() ? v.get<std::string>() : std::string(); }

bool IsBroadcast(const Doc& task) {
  return Str(At(task, {"mode"})) == "broadcast" || At(task, {"deliveries"}).is_array();
}

// "1/3": attempts of max_attempts.
std::string Attempts(const Doc& item, const Doc& max) {
  const Doc& a = At(item, {"attempts"});
  if (!a.is_number()) return "-";
  return max.is_number() ? absl::StrCat(a.dump(), "/", max.dump()) : a.dump();
}

// "Succeeded 3/3, Failed 1": broadcast deliveries by state, in the order of kStates.
std::string DeliveryCounts(const Doc& deliveries) {
  if (!deliveries.is_array()) return "-";
  std::vector<std::string> parts;
  for (const char* state : kStates) {
    int64_t n = 0;
    for (const Doc& d : deliveries) n += Str(At(d, {"state"})) == state ? 1 : 0;
    if (n > 0) parts.push_back(absl::StrCat(n, " ", state));
  }
  return parts.empty() ? "none" : absl::StrJoin(parts, ", ");
}

// A JSON value in one table cell: strings as is, anything else compact JSON, newlines
// shown as "\\n"; "-" for null or "".
std::string JsonCell(const Doc& v) {
  if (v.is_null() || v.is_discarded()) return "-";
  std::string s = v.is_string()
                      ? v.get<std::string>()
                      : v.dump(-1, ' ', false, nlohmann::detail::error_handler_t::replace);
  if (s.empty()) return "-";
  return absl::StrReplaceAll(s, {{"\r\n", "\\n"}, {"\n", "\\n"}, {"\r", "\\r"}, {"\t", " "}});
}

// Truncates a cell for list views.
std::string Shorten(std::string s, size_t max) {
  if (s.size() <= max) return s;
  s.resize(max - 3);
  return s + "...";
}

// The task for people: a route task as one row, a broadcast task as a line and one row
// per delivery.
std::string RenderTask(const Doc& task) {
  std::string out;
  if (!IsBroadcast(task)) {
    Table t({"id", "state", "attempts", "instance", "latency", "output/error"});
    t.AddRow({Cell(At(task, {"id"})), Cell(At(task, {"state"})),
              Attempts(task, At(task, {"max_attempts"})), Cell(At(task, {"instance"})),
              FormatMillis(At(task, {"latency_ms"})), TaskResultCell(task)});
    return t.Render();
  }
  const Doc& deliveries = At(task, {"deliveries"});
  const size_t n = deliveries.is_array() ? deliveries.size() : 0;
  out = absl::StrCat("task ", Cell(At(task, {"id"})), " ", Cell(At(task, {"state"})),
                     " (broadcast to ", n, n == 1 ? " instance" : " instances", ")\n");
  if (n == 0) return out;
  Table t({"instance", "state", "attempts", "output/error"});
  for (const Doc& d : deliveries) {
    t.AddRow({Cell(At(d, {"instance"})), Cell(At(d, {"state"})),
              Attempts(d, At(task, {"max_attempts"})), TaskResultCell(d)});
  }
  return out + t.Render();
}

// A long-poll must end before the HTTP client gives up: 30 s, or --timeout when shorter.
absl::Duration RequestTimeout(const Context& ctx) {
  absl::Duration timeout = absl::Seconds(30);
  if (auto t = ctx.Timeout(timeout); t.ok() && *t > absl::ZeroDuration() && *t < timeout) {
    timeout = *t;
  }
  return timeout;
}

std::string ProgressText(const Doc& task) {
  std::string s = absl::StrCat("task ", Cell(At(task, {"id"})), ": ", Cell(At(task, {"state"})));
  if (IsBroadcast(task)) {
    const Doc& ds = At(task, {"deliveries"});
    int64_t done = 0;
    if (ds.is_array()) {
      for (const Doc& d : ds) done += TaskFinished(d) ? 1 : 0;
    }
    absl::StrAppend(&s, " (", done, "/", ds.is_array() ? ds.size() : 0, " deliveries finished)");
  } else if (const Doc& inst = At(task, {"instance"}); inst.is_string()) {
    absl::StrAppend(&s, " (attempt ", Attempts(task, At(task, {"max_attempts"})), " on ",
                    inst.get<std::string>(), ")");
  }
  return s;
}

// ---- submit ----

struct SubmitOptions {
  std::string deployment;
  std::string input;
  std::string input_file;
  bool broadcast = false;
  std::string target;
  std::string idempotency_key;
  int64_t max_attempts = 0;  // 0: the daemon's default
  std::string lease;         // "": the daemon's default
};

absl::StatusOr<Doc> ReadInput(const SubmitOptions& o) {
  if (!o.input.empty() && !o.input_file.empty()) {
    return UsageError("give either --input or --input-file, not both");
  }
  if (o.input.empty() && o.input_file.empty()) {
    return UsageError("the task needs an input: --input JSON or --input-file FILE",
                      "e.g. --input '{\"question\": \"hi\"}'");
  }
  if (!o.input.empty()) return ParseJsonFlag("--input", o.input);
  std::string text;
  if (o.input_file == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream in(o.input_file, std::ios::binary);
    if (!in) {
      return NotFound("FILE_NOT_FOUND",
                      absl::StrCat("cannot read ", o.input_file, ": ", std::strerror(errno)));
    }
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  return ParseJsonFlag(absl::StrCat("--input-file ", o.input_file), text);
}

absl::Status Submit(Context& ctx, const SubmitOptions& o) {
  auto input = ReadInput(o);
  if (!input.ok()) return input.status();
  Doc body = Doc::object();
  body["deployment"] = o.deployment;
  body["input"] = std::move(*input);
  if (o.broadcast) body["mode"] = "broadcast";
  if (!o.target.empty()) body["target"] = o.target;
  if (!o.lease.empty()) {
    auto lease = ParseDuration(o.lease);
    if (!lease.ok()) return Annotate(lease.status(), "--lease");
    const double s = std::ceil(absl::ToDoubleSeconds(*lease));
    if (s < 1 || s > 86400) {
      return UsageError(absl::StrCat("--lease must be between 1s and 24h, got ", o.lease),
                        "the lease is how long an agent may work on the task before it is "
                        "handed to another one, e.g. --lease 30s");
    }
    body["timeout_s"] = static_cast<int64_t>(s);
  }
  if (o.max_attempts > 0) body["max_attempts"] = o.max_attempts;
  if (!o.idempotency_key.empty()) body["idempotency_key"] = o.idempotency_key;
  // The wait's timeout is checked before anything is submitted.
  absl::Duration timeout = kDefaultWait;
  if (ctx.options().wait) {
    auto t = ctx.Timeout(kDefaultWait);
    if (!t.ok()) return t.status();
    timeout = *t;
  }

  auto r = ctx.Call("POST", ctx.WithTenant("/v1/tasks"), body.dump());
  if (!r.ok()) return r.status();
  const std::string id = Str(At(r->doc, {"id"}));
  if (r->status == 200 && !o.idempotency_key.empty()) {
    std::cerr << "task " << (id.empty() ? "-" : id) << " already exists for idempotency key "
              << o.idempotency_key << "; it was not submitted again\n";
  }
  if (!ctx.options().wait || id.empty() || TaskFinished(r->doc)) {
    if (!PrintMachine(ctx.format(), *r)) std::cout << RenderTask(r->doc);
    return ctx.options().wait ? TaskOutcome(r->doc) : absl::OkStatus();
  }
  ApiResult last = *r;
  absl::Status waited = WaitForTask(ctx, id, timeout, &last);
  if (!waited.ok() && waited.code() != absl::StatusCode::kDeadlineExceeded) return waited;
  if (!PrintMachine(ctx.format(), last)) std::cout << RenderTask(last.doc);
  if (!waited.ok()) return waited;
  return TaskOutcome(last.doc);
}

// ---- list, get, cancel ----

struct ListOptions {
  std::string deployment;
  std::string state;
  int64_t limit = 0;
  std::string after;
};

absl::Status List(Context& ctx, const ListOptions& o) {
  std::string path = "/v1/tasks";
  auto add = [&path](const char* k, const std::string& v) {
    absl::StrAppend(&path, path.find('?') == std::string::npos ? "?" : "&", k, "=", UrlEncode(v));
  };
  if (!o.deployment.empty()) add("deployment", o.deployment);
  if (!o.state.empty()) {
    std::string state;
    for (const char* s : kStates) {
      if (absl::AsciiStrToLower(s) == absl::AsciiStrToLower(o.state)) state = s;
    }
    if (state.empty()) {
      return UsageError(absl::StrCat("unknown task state \"", o.state, "\""),
                        "one of: Queued, Assigned, Succeeded, Failed, TimedOut, Cancelled");
    }
    add("state", state);
  }
  if (o.limit > 0) add("limit", absl::StrCat(o.limit));
  if (!o.after.empty()) add("after", o.after);
  auto r = ctx.Get(ctx.WithTenant(path));
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  Table t({"id", "deployment", "mode", "state", "attempts", "instance", "age", "latency"});
  const absl::Time now = absl::Now();
  if (const Doc& items = At(r->doc, {"items"}); items.is_array()) {
    for (const Doc& task : items) {
      std::string instance = Cell(At(task, {"instance"}));
      std::string attempts = Attempts(task, At(task, {"max_attempts"}));
      if (const Doc& ds = At(task, {"deliveries"}); ds.is_array()) {
        instance = absl::StrCat(ds.size(), ds.size() == 1 ? " instance" : " instances");
      }
      t.AddRow({Cell(At(task, {"id"})), Cell(At(task, {"deployment"})), Cell(At(task, {"mode"})),
                Cell(At(task, {"state"})), attempts, Shorten(instance, 40),
                Age(At(task, {"created_at"}), now), FormatMillis(At(task, {"latency_ms"}))});
    }
  }
  if (t.rows() == 0) {
    std::cerr << "No tasks" << (o.deployment.empty() ? "" : " in deployment " + o.deployment)
              << (o.state.empty() ? "" : " in state " + o.state) << ".\n";
    return absl::OkStatus();
  }
  std::cout << t.Render();
  if (const Doc& next = At(r->doc, {"next"}); !next.is_null()) {
    std::cerr << "more tasks: palm task list --after " << Cell(next)
              << (o.deployment.empty() ? "" : " -d " + o.deployment)
              << (o.state.empty() ? "" : " --state " + o.state) << "\n";
  }
  return absl::OkStatus();
}

absl::Status Get(Context& ctx, const std::string& id) {
  auto r = ctx.Get(ctx.WithTenant(TaskPath(id)));
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  const Doc& task = r->doc;
  const bool broadcast = IsBroadcast(task);
  Table t({"field", "value"});
  t.AddRow({"ID:", Cell(At(task, {"id"}))});
  t.AddRow({"Deployment:", Cell(At(task, {"deployment"}))});
  t.AddRow({"Mode:", Cell(At(task, {"mode"}))});
  t.AddRow({"Target:", Cell(At(task, {"target"}))});
  t.AddRow({"State:", Cell(At(task, {"state"}))});
  if (broadcast) {
    t.AddRow({"Deliveries:", DeliveryCounts(At(task, {"deliveries"}))});
    t.AddRow({"Max attempts:", Cell(At(task, {"max_attempts"}))});
  } else {
    t.AddRow({"Attempts:", Attempts(task, At(task, {"max_attempts"}))});
    t.AddRow({"Instance:", Cell(At(task, {"instance"}))});
    t.AddRow({"Revision:", Cell(At(task, {"revision"}))});
  }
  if (const Doc& lease = At(task, {"timeout_s"}); lease.is_number()) {
    t.AddRow({"Lease:", absl::StrCat(lease.dump(), "s")});
  }
  t.AddRow({"Idempotency key:", Cell(At(task, {"idempotency_key"}))});
  t.AddRow({"Latency:", FormatMillis(At(task, {"latency_ms"}))});
  if (const Doc& cost = At(task, {"cost_usd"}); cost.is_number()) {
    t.AddRow({"Cost:", absl::StrCat("$", cost.dump())});
  }
  t.AddRow({"Input:", JsonCell(At(task, {"input"}))});
  if (!broadcast) {
    t.AddRow({"Output:", JsonCell(At(task, {"output"}))});
    t.AddRow({"Error:", JsonCell(At(task, {"error"}))});
    if (const Doc& lease = At(task, {"lease_expires_at"}); lease.is_string()) {
      t.AddRow({"Lease expires:", lease.get<std::string>()});
    }
  }
  const absl::Time now = absl::Now();
  t.AddRow({"Created:", absl::StrCat(Cell(At(task, {"created_at"})), " (",
                                     Age(At(task, {"created_at"}), now), " ago)")});
  t.AddRow({"Completed:", Cell(At(task, {"completed_at"}))});
  std::string body = t.Render();
  std::cout << body.substr(body.find('\n') + 1);
  if (const Doc& ds = At(task, {"deliveries"}); ds.is_array() && !ds.empty()) {
    Table d({"instance", "revision", "state", "attempts", "completed", "output/error"});
    for (const Doc& x : ds) {
      d.AddRow({Cell(At(x, {"instance"})), Cell(At(x, {"revision"})), Cell(At(x, {"state"})),
                Attempts(x, At(task, {"max_attempts"})), Cell(At(x, {"completed_at"})),
                TaskResultCell(x)});
    }
    std::cout << "Deliveries:\n" << d.Render();
  }
  return absl::OkStatus();
}

absl::Status Cancel(Context& ctx, const std::string& id) {
  auto r = ctx.Call("POST", ctx.WithTenant(TaskPath(id) + "/cancel"));
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  std::cout << "task " << id << " cancelled\n";
  return absl::OkStatus();
}

}  // namespace

bool TaskFinished(const Doc& task) {
  const std::string s = Str(At(task, {"state"}));
  return s == "Succeeded" || s == "Failed" || s == "TimedOut" || s == "Cancelled";
}

absl::Status TaskOutcome(const Doc& task) {
  const std::string state = Str(At(task, {"state"}));
  if (!TaskFinished(task) || state == "Succeeded") return absl::OkStatus();
  const std::string id = Cell(At(task, {"id"}));
  std::string code = "TASK_FAILED";
  std::string what;
  std::string hint = absl::StrCat("see `palm task get ", id, "`");
  if (state == "Cancelled") {
    code = "TASK_CANCELLED";
    what = absl::StrCat("task ", id, " was cancelled");
  } else if (IsBroadcast(task)) {
    std::vector<std::string> bad;
    size_t n = 0;
    if (const Doc& ds = At(task, {"deliveries"}); ds.is_array()) {
      n = ds.size();
      for (const Doc& d : ds) {
        const std::string s = Str(At(d, {"state"}));
        if (s == "Succeeded") continue;
        std::string one = absl::StrCat(Cell(At(d, {"instance"})), " ", s);
        if (const Doc& e = At(d, {"error"}); e.is_string() && !e.get<std::string>().empty()) {
          absl::StrAppend(&one, ": ", e.get<std::string>());
        }
        bad.push_back(std::move(one));
      }
    }
    what = absl::StrCat("task ", id, " ", state, ": ", bad.size(), " of ", n,
                        n == 1 ? " delivery" : " deliveries", " did not succeed");
    if (!bad.empty()) {
      const size_t shown = std::min<size_t>(bad.size(), 3);
      absl::StrAppend(
          &what, " (",
          absl::StrJoin(std::vector<std::string>(bad.begin(), bad.begin() + shown), "; "),
          bad.size() > shown ? "; ..." : "", ")");
    }
    if (state == "TimedOut") code = "TASK_TIMED_OUT";
    absl::StrAppend(&hint, " and the instances' logs (`palm instance logs ID`)");
  } else {
    const std::string instance = Str(At(task, {"instance"}));
    what = absl::StrCat("task ", id, " ", state);
    if (state == "TimedOut") {
      code = "TASK_TIMED_OUT";
      absl::StrAppend(&what, " after ", Attempts(task, At(task, {"max_attempts"})),
                      " attempts (no agent answered within the lease)");
      hint = absl::StrCat("raise --lease or --max-attempts, or see `palm task get ", id, "`",
                          instance.empty() ? "" : " and `palm instance logs " + instance + "`");
    } else {
      if (!instance.empty()) absl::StrAppend(&what, " on ", instance);
      if (!instance.empty()) {
        absl::StrAppend(&hint, " and `palm instance logs ", instance, "`");
      }
    }
    if (const Doc& e = At(task, {"error"}); e.is_string() && !e.get<std::string>().empty()) {
      absl::StrAppend(&what, ": ", e.get<std::string>());
    }
  }
  return Error(absl::StatusCode::kAborted, code, what, hint);
}

std::string TaskResultCell(const Doc& task) {
  const Doc& error = At(task, {"error"});
  const Doc& output = At(task, {"output"});
  const bool failed = Str(At(task, {"state"})) != "Succeeded" && !error.is_null();
  if (!failed && !output.is_null()) return JsonCell(output);
  if (!error.is_null()) return absl::StrCat("error: ", JsonCell(error));
  return "-";
}

std::string FormatMillis(const Doc& ms) {
  if (!ms.is_number()) return "-";
  const double v = ms.get<double>();
  if (v >= 1000) return absl::StrCat(FormatNumber(std::round(v / 10) / 100), "s");
  if (v >= 100) return absl::StrCat(FormatNumber(std::round(v)), "ms");
  return absl::StrCat(FormatNumber(std::round(v * 10) / 10), "ms");
}

absl::StatusOr<Doc> ParseJsonFlag(std::string_view flag, const std::string& text) {
  const std::string name(flag);
  const std::string hint =
      name.rfind("--input-file", 0) == 0
          ? "the file must hold one JSON value, e.g. {\"question\": \"hi\"} (a plain string "
            "needs JSON quotes: \"hello\")"
          : "give one JSON value, quoted for the shell, e.g. --input '{\"question\": \"hi\"}' "
            "(a plain string needs JSON quotes: --input '\"hello\"'), or put it in a file and "
            "pass --input-file FILE";
  if (absl::StripAsciiWhitespace(text).empty()) {
    return UsageError(absl::StrCat(name, " is empty: the task input must be a JSON value"), hint);
  }
  try {
    return Doc::parse(text);
  } catch (const Doc::parse_error& e) {
    std::string why = e.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." -> "line 1, ..."
    if (auto p = why.find("parse error at "); p != std::string::npos) {
      why = why.substr(p + std::strlen("parse error at "));
    } else if (auto b = why.find("] "); b != std::string::npos) {
      why = why.substr(b + 2);
    }
    return UsageError(absl::StrCat(name, " is not valid JSON: ", why), hint);
  }
}

absl::Status WaitForTask(Context& ctx, const std::string& id, absl::Duration timeout,
                         ApiResult* last) {
  const absl::Time deadline = absl::Now() + timeout;
  // Leave the long-poll 2 s of slack inside the HTTP client's own timeout.
  const absl::Duration per_request =
      std::min(kMaxPoll, std::max(absl::ZeroDuration(), RequestTimeout(ctx) - absl::Seconds(2)));
  const bool tty = StderrIsTty();
  bool drawn = false;
  auto clear = [&] {
    if (drawn) std::cerr << "\n";
    drawn = false;
  };
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    const int64_t wait_s = std::max<int64_t>(0, absl::ToInt64Seconds(std::min(left, per_request)));
    std::string path = TaskPath(id);
    if (wait_s > 0) absl::StrAppend(&path, "?wait_s=", wait_s);
    const absl::Time sent = absl::Now();
    auto r = ctx.Get(ctx.WithTenant(path));
    if (!r.ok()) {
      clear();
      return r.status();
    }
    *last = std::move(*r);
    if (TaskFinished(last->doc)) {
      clear();
      return absl::OkStatus();
    }
    if (tty) {  // redrawn in place; a pipe or log file gets nothing
      std::cerr << "\r\033[K" << ProgressText(last->doc) << std::flush;
      drawn = true;
    }
    const absl::Time now = absl::Now();
    if (now >= deadline) break;
    // Answered early without being finished (wait_s 0, or a daemon without long-poll):
    // do not spin.
    if (now - sent < absl::Milliseconds(250)) {
      absl::SleepFor(std::min(absl::Milliseconds(500), deadline - now));
    }
  }
  clear();
  return Error(
      absl::StatusCode::kDeadlineExceeded, "TASK_WAIT_TIMEOUT",
      absl::StrCat(ProgressText(last->doc), " after waiting ", absl::FormatDuration(timeout)),
      absl::StrCat("the task goes on; follow it with `palm task get ", id,
                   "`, cancel it with `palm task cancel ", id, "`, or raise --timeout"));
}

std::string TaskQueueLine(const Doc& tasks) {
  if (!tasks.is_object()) return "";
  std::vector<std::string> parts;
  if (const Doc& q = At(tasks, {"queued"}); !q.is_null()) parts.push_back(Cell(q) + " queued");
  if (const Doc& a = At(tasks, {"assigned"}); !a.is_null()) {
    parts.push_back(Cell(a) + " assigned");
  }
  if (const Doc& w = At(tasks, {"waiting_agents"}); !w.is_null()) {
    parts.push_back(absl::StrCat(Cell(w), w == 1 ? " agent" : " agents", " waiting"));
  }
  return absl::StrJoin(parts, " | ");
}

std::string TaskMetricsTable(const Doc& tasks) {
  const Doc& revisions = At(tasks, {"revisions"});
  if (!revisions.is_object() || revisions.empty()) return "";
  Table t({"revision", "window", "count", "ok", "fail", "timeout", "err%", "p50", "p90", "p99"});
  for (auto rev = revisions.begin(); rev != revisions.end(); ++rev) {
    if (!rev->is_object()) continue;
    for (auto w = rev->begin(); w != rev->end(); ++w) {
      const Doc& m = w.value();
      if (!m.is_object()) continue;
      // "window_60s" -> "60s", "totals" -> "total".
      std::string window = w.key();
      if (window.rfind("window_", 0) == 0) {
        window = window.substr(std::strlen("window_"));
      } else if (window == "totals") {
        window = "total";
      }
      std::string err = "-";
      if (const Doc& rate = At(m, {"error_rate"}); rate.is_number()) {
        err = FormatPercent(100.0 * rate.get<double>());
      } else if (const Doc& count = At(m, {"count"});
                 count.is_number() && count.get<double>() > 0) {
        double bad = 0;
        for (const char* k : {"failed", "timed_out"}) {
          if (const Doc& x = At(m, {k}); x.is_number()) bad += x.get<double>();
        }
        err = FormatPercent(100.0 * bad / count.get<double>());
      } else if (count.is_number()) {
        err = "0%";
      }
      // No latency without results (the daemon reports 0 then).
      const bool any = At(m, {"count"}).is_number() && At(m, {"count"}).get<double>() > 0;
      auto pct = [&](const char* k) { return any ? FormatMillis(At(m, {k})) : std::string("-"); };
      t.AddRow({rev.key(), window, Cell(At(m, {"count"})), Cell(At(m, {"succeeded"})),
                Cell(At(m, {"failed"})), Cell(At(m, {"timed_out"})), err, pct("p50_ms"),
                pct("p90_ms"), pct("p99_ms")});
    }
  }
  return t.rows() == 0 ? "" : t.Render();
}

void AddTaskCommands(CLI::App& app, Action* action) {
  auto* task = app.add_subcommand("task", "Submit work to a deployment's agents and follow it");
  task->alias("tasks");
  task->require_subcommand(1);

  auto so = std::make_shared<SubmitOptions>();
  auto* submit = task->add_subcommand(
      "submit", "Submit a task (one ready instance, or every one with --broadcast)");
  submit->add_option("deployment", so->deployment, "Deployment to run it")->required();
  submit->add_option("--input", so->input, "Task input: one JSON value, e.g. '{\"q\": \"hi\"}'");
  submit->add_option("--input-file", so->input_file, "Read the JSON input from FILE (- = stdin)");
  submit->add_flag("--broadcast", so->broadcast, "Deliver a copy to every ready instance");
  submit->add_option("--target", so->target,
                     "Route to revision stable|canary|preview, or to one instance by id");
  submit->add_option("--idempotency-key", so->idempotency_key,
                     "Submitting the same key again returns the existing task");
  submit
      ->add_option("--max-attempts", so->max_attempts,
                   "Deliveries before it ends TimedOut (1..100, default 3)")
      ->check(CLI::Range(int64_t{1}, int64_t{100}));
  submit
      ->add_option("--lease", so->lease,
                   "How long an agent may work on it before it is retried: 30s, 5m "
                   "(default 60s)")
      ->check([](const std::string& s) {
        auto d = ParseDuration(s);
        return d.ok() ? std::string() : std::string(d.status().message());
      });
  submit->callback([action, so] { *action = [so](Context& ctx) { return Submit(ctx, *so); }; });

  auto lo = std::make_shared<ListOptions>();
  auto* list = task->add_subcommand("list", "List tasks, oldest first");
  list->add_option("-d,--deployment", lo->deployment, "Only this deployment's tasks");
  list->add_option("--state", lo->state,
                   "Only tasks in this state: Queued, Assigned, Succeeded, Failed, TimedOut, "
                   "Cancelled");
  list->add_option("--limit", lo->limit, "At most N tasks (default 100)")
      ->check(CLI::Range(int64_t{1}, int64_t{10000}));
  list->add_option("--after", lo->after, "Only tasks after this id (the next page)");
  list->callback([action, lo] { *action = [lo](Context& ctx) { return List(ctx, *lo); }; });

  auto get_id = std::make_shared<std::string>();
  auto* get = task->add_subcommand("get", "Show one task and its deliveries");
  get->add_option("id", *get_id, "Task id")->required();
  get->callback(
      [action, get_id] { *action = [get_id](Context& ctx) { return Get(ctx, *get_id); }; });

  auto cancel_id = std::make_shared<std::string>();
  auto* cancel = task->add_subcommand("cancel", "Cancel a queued or running task");
  cancel->add_option("id", *cancel_id, "Task id")->required();
  cancel->callback([action, cancel_id] {
    *action = [cancel_id](Context& ctx) { return Cancel(ctx, *cancel_id); };
  });
}

}  // namespace palm::cli
