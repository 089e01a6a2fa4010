// Rollout benchmark: what a rolling update costs against the floor of replacing every
// instance at once (recreate), in one run on the same machine against one real daemon.
//  A spec running `/bin/sleep 100000` (no probes, so ready = Running; SIGTERM ends it at
//  once, grace 1 s) deployed with REPLICAS replicas and strategy
//  {type: rolling, max_surge: "25%", max_unavailable: 0}, polled until every replica is
//  available. Then, REPEATS times:
//  (a) rolling: PUT the deployment with a new config (a new revision) and poll
//      GET /v1/deployments/{name} every 5 ms until status.phase is Complete, current_revision
//      is the new one and replicas.updated == replicas.ready == REPLICAS;
//  (b) recreate: PUT the strategy {type: recreate} (no new revision), then a new config,
//      timed the same way; then the strategy back to rolling for the next repeat.
// For each: wall time (PUT sent -> the poll that saw it complete), the daemon's own view
// (the revision's deployed_at -> outcome_at in /history), the daemon's CPU seconds
// (utime+stime from /proc) over the rollout and its share of one core, the instance starts
// (InstanceStarted events) and the most instances the status reported at once.
// Usage: rollout_bench PATH/TO/palm [--replicas N (100)] [--repeats K (1)]
//        (or positionally: rollout_bench PATH/TO/palm [REPLICAS] [REPEATS])
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"
#include "nlohmann/json.hpp"
#include "palm/http/client.h"

namespace {

using palm::bench::Clock;
using palm::bench::CpuSeconds;
using palm::bench::GetJson;
using palm::bench::Json;
using palm::bench::Seconds;

constexpr char kName[] = "fleet";

struct RolloutRun {
  std::string strategy;
  int64_t revision = 0;
  double wall_s = 0;          // PUT sent -> complete seen by the poll
  double daemon_view_s = -1;  // the revision's deployed_at -> outcome_at (daemon clock)
  double daemon_cpu_s = 0;
  int64_t starts = 0;         // InstanceStarted events during the rollout
  int64_t peak_current = 0;   // the most instances status.replicas.current showed
  std::string outcome;
};

[[noreturn]] void Fail(palm::bench::BenchDaemon& bd, const std::string& dir,
                       const std::string& what) {
  std::fprintf(stderr, "rollout_bench: %s (daemon output: %s/daemon.out)\n", what.c_str(),
               dir.c_str());
  bd.Stop();
  std::exit(1);
}

// The seq of the newest event (0 when there is none), paging forward from the start
// (so it does not depend on how `order=desc` pages).
int64_t LastSeq(palm::http::Client& c) {
  int64_t seq = 0;
  while (true) {
    Json page = GetJson(c, absl::StrCat("/v1/events?since=", seq, "&limit=1000"));
    if (!page.is_object() || !page["items"].is_array() || page["items"].empty()) break;
    for (Json& e : page["items"]) seq = std::max(seq, e.value("seq", seq));
    if (page["next"].is_null()) break;
  }
  return seq;
}

// Events of `kind` on the deployment after `since`, page by page.
int64_t CountEvents(palm::http::Client& c, int64_t since, const std::string& kind) {
  int64_t n = 0;
  while (true) {
    Json page = GetJson(c, absl::StrCat("/v1/events?deployment=", kName, "&since=", since,
                                        "&limit=1000"));
    if (!page.is_object() || !page["items"].is_array() || page["items"].empty()) break;
    for (Json& e : page["items"]) {
      if (e.value("kind", "") == kind) ++n;
      since = std::max(since, e.value("seq", since));
    }
    if (page["next"].is_null()) break;
  }
  return n;
}

// deployed_at -> outcome_at of `revision`, from the history; -1 when not there.
std::pair<double, std::string> DaemonView(palm::http::Client& c, int64_t revision) {
  Json h = GetJson(c, absl::StrCat("/v1/deployments/", kName, "/history"));
  if (!h.is_object() || !h["items"].is_array()) return {-1, ""};
  for (Json& rev : h["items"]) {
    if (rev.value("revision", int64_t{0}) != revision) continue;
    std::string outcome = rev["outcome"].is_string() ? rev["outcome"].get<std::string>() : "";
    absl::Time from, to;
    std::string err;
    if (rev["deployed_at"].is_string() && rev["outcome_at"].is_string() &&
        absl::ParseTime(absl::RFC3339_full, rev["deployed_at"].get<std::string>(), &from, &err) &&
        absl::ParseTime(absl::RFC3339_full, rev["outcome_at"].get<std::string>(), &to, &err)) {
      return {absl::ToDoubleSeconds(to - from), outcome};
    }
    return {-1, outcome};
  }
  return {-1, ""};
}

Json Document(int replicas, int64_t version, const Json& strategy) {
  return {{"name", kName},
          {"spec", "idle@1.0.0"},
          {"replicas", replicas},
          {"config", {{"v", version}}},
          {"strategy", strategy}};
}

class Bench {
 public:
  Bench(palm::bench::BenchDaemon& bd, std::string dir, int replicas)
      : bd_(bd), dir_(std::move(dir)), replicas_(replicas) {}

  void Put(const Json& doc, int64_t want_revision) {
    auto r = bd_.client().Do("PUT", std::string("/v1/deployments/") + kName, doc.dump());
    if (!r.ok() || r->status >= 300) {
      Fail(bd_, dir_, "PUT /v1/deployments/" + std::string(kName) + " failed: " +
                          (r.ok() ? r->body : r.status().ToString()));
    }
    Json body = Json::parse(r->body, nullptr, false);
    if (want_revision > 0 && body.value("revision", int64_t{0}) != want_revision) {
      Fail(bd_, dir_, absl::StrCat("expected revision ", want_revision, ", got: ", r->body));
    }
  }

  // Polls until the deployment is Complete at `revision` with every replica updated and
  // ready; returns when that was seen. Records the peak of status.replicas.current.
  Clock::time_point WaitComplete(int64_t revision, double timeout_s, int64_t* peak) {
    auto t0 = Clock::now();
    Json last;
    while (Seconds(Clock::now() - t0) < timeout_s) {
      Json d = GetJson(bd_.client(), std::string("/v1/deployments/") + kName);
      if (d.is_object() && d["status"].is_object()) {
        Json& st = d["status"];
        if (peak && st["replicas"]["current"].is_number()) {
          *peak = std::max(*peak, st["replicas"]["current"].get<int64_t>());
        }
        if (st["phase"] == "Complete" && st["current_revision"] == revision &&
            st["replicas"]["updated"] == replicas_ && st["replicas"]["ready"] == replicas_) {
          return Clock::now();
        }
        last = st;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    Fail(bd_, dir_, absl::StrCat("revision ", revision, " not complete in ", timeout_s,
                                 " s; last status: ", last.dump()));
  }

  RolloutRun Roll(const std::string& strategy_name, const Json& strategy) {
    RolloutRun run;
    run.strategy = strategy_name;
    run.revision = ++revision_;
    int64_t since = LastSeq(bd_.client());
    double cpu0 = CpuSeconds(bd_.pid());
    auto t0 = Clock::now();
    Put(Document(replicas_, run.revision, strategy), run.revision);
    auto t1 = WaitComplete(run.revision, 600, &run.peak_current);
    run.daemon_cpu_s = CpuSeconds(bd_.pid()) - cpu0;
    run.wall_s = Seconds(t1 - t0);
    run.starts = CountEvents(bd_.client(), since, "InstanceStarted");
    std::tie(run.daemon_view_s, run.outcome) = DaemonView(bd_.client(), run.revision);
    return run;
  }

  // Changes only the strategy (no new revision).
  void SetStrategy(const Json& strategy) { Put(Document(replicas_, revision_, strategy), 0); }

  void Deploy(const Json& strategy) {
    auto r = bd_.client().Do("POST", "/v1/deployments", Document(replicas_, 1, strategy).dump());
    if (!r.ok() || r->status >= 300) {
      Fail(bd_, dir_, "POST /v1/deployments failed: " + (r.ok() ? r->body : ""));
    }
    revision_ = 1;
  }

 private:
  palm::bench::BenchDaemon& bd_;
  std::string dir_;
  int replicas_;
  int64_t revision_ = 0;
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string Cpu(double cpu_s, double wall_s) {
  return absl::StrFormat("%.2f s (%.0f %% of a core)", cpu_s,
                         wall_s > 0 ? cpu_s / wall_s * 100 : 0.0);
}

void PrintRun(const RolloutRun& r, int replicas) {
  std::printf(
      "  %-9s rev %-3lld %8.3f s   daemon view %s   daemon CPU %-26s %lld starts (%s), peak "
      "%lld instances, %s\n",
      r.strategy.c_str(), static_cast<long long>(r.revision), r.wall_s,
      r.daemon_view_s >= 0 ? absl::StrFormat("%.3f s", r.daemon_view_s).c_str() : "   -   ",
      Cpu(r.daemon_cpu_s, r.wall_s).c_str(), static_cast<long long>(r.starts),
      r.starts == replicas ? "one per replica" : "NOT one per replica",
      static_cast<long long>(r.peak_current), r.outcome.empty() ? "?" : r.outcome.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PATH/TO/palm [--replicas N (100)] [--repeats K (1)]\n",
                 argv[0]);
    return 2;
  }
  std::string palm = argv[1];
  int replicas = 100, repeats = 1;
  std::vector<std::string> positional;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto flag = [&](const char* name, int* out) {
      std::string f = std::string("--") + name;
      if (a == f && i + 1 < argc) {
        *out = std::atoi(argv[++i]);
        return true;
      }
      if (a.rfind(f + "=", 0) == 0) {
        *out = std::atoi(a.c_str() + f.size() + 1);
        return true;
      }
      return false;
    };
    if (flag("replicas", &replicas) || flag("repeats", &repeats)) continue;
    positional.push_back(a);
  }
  if (positional.size() > 0) replicas = std::atoi(positional[0].c_str());
  if (positional.size() > 1) repeats = std::atoi(positional[1].c_str());
  if (replicas < 1 || repeats < 1) {
    std::fprintf(stderr, "rollout_bench: replicas and repeats must be >= 1\n");
    return 2;
  }

  palm::bench::BenchDir bench_dir;
  palm::bench::BenchDaemon bd(palm, bench_dir.path());
  palm::http::Client& c = bd.client();
  Json spec = {{"name", "idle"},
               {"version", "1.0.0"},
               {"command", {"/bin/sleep", "100000"}},
               {"stop", {{"signal", "SIGTERM"}, {"grace_s", 1}}}};
  auto r = c.Do("POST", "/v1/specs", spec.dump());
  if (!r.ok() || r->status >= 300) {
    Fail(bd, bench_dir.path(), "POST /v1/specs failed: " + (r.ok() ? r->body : ""));
  }

  const Json rolling = {{"type", "rolling"}, {"max_surge", "25%"}, {"max_unavailable", 0}};
  const Json recreate = {{"type", "recreate"}};
  Bench bench(bd, bench_dir.path(), replicas);
  double cpu0 = CpuSeconds(bd.pid());
  auto t0 = Clock::now();
  bench.Deploy(rolling);
  auto t1 = bench.WaitComplete(1, 300, nullptr);
  double deploy_s = Seconds(t1 - t0), deploy_cpu = CpuSeconds(bd.pid()) - cpu0;

  std::vector<RolloutRun> runs;
  std::vector<double> rolling_s, recreate_s, ratios;
  for (int k = 0; k < repeats; ++k) {
    bench.SetStrategy(rolling);
    RolloutRun a = bench.Roll("rolling", rolling);
    bench.SetStrategy(recreate);
    RolloutRun b = bench.Roll("recreate", recreate);
    runs.push_back(a);
    runs.push_back(b);
    rolling_s.push_back(a.wall_s);
    recreate_s.push_back(b.wall_s);
    ratios.push_back(b.wall_s > 0 ? a.wall_s / b.wall_s : 0);
  }
  bd.Stop();

  std::printf(
      "palm rollout benchmark: %d replicas of /bin/sleep (no probes), rolling {max_surge: 25%%, "
      "max_unavailable: 0} vs recreate, %d repeat(s), %u CPUs\n",
      replicas, repeats, std::thread::hardware_concurrency());
  std::printf("  deploy -> %d available: %.3f s, daemon CPU %s\n", replicas, deploy_s,
              Cpu(deploy_cpu, deploy_s).c_str());
  bool ok = true;
  for (const RolloutRun& run : runs) {
    PrintRun(run, replicas);
    ok = ok && run.outcome == "Complete";
  }
  double med_rolling = Median(rolling_s), med_recreate = Median(recreate_s);
  std::vector<double> cpu_rolling, cpu_recreate;
  for (const RolloutRun& run : runs) {
    (run.strategy == "rolling" ? cpu_rolling : cpu_recreate).push_back(run.daemon_cpu_s);
  }
  std::printf("  %-34s %.3f s (median of %d)\n", "rolling update, wall", med_rolling, repeats);
  std::printf("  %-34s %.3f s (median of %d)\n", "recreate (baseline), wall", med_recreate,
              repeats);
  std::printf("  %-34s %.2fx (median of the per-repeat ratios: %.2fx)\n",
              "ratio rolling / recreate", med_recreate > 0 ? med_rolling / med_recreate : 0,
              Median(ratios));
  std::printf("  %-34s rolling %s, recreate %s\n", "daemon CPU (median)",
              Cpu(Median(cpu_rolling), med_rolling).c_str(),
              Cpu(Median(cpu_recreate), med_recreate).c_str());
  if (!ok) std::fprintf(stderr, "rollout_bench: a revision's outcome is not Complete\n");
  return ok ? 0 : 1;
}
