#include "palm/cli/health_view.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "palm/cli/output.h"

namespace palm::cli {
namespace {

int64_t Int(const Doc& v, int64_t fallback) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number()) return static_cast<int64_t>(std::llround(v.get<double>()));
  return fallback;
}

}  // namespace

std::string FormatPercent(double pct) {
  if (std::isnan(pct) || pct < 0) return "-";
  if (pct == 0) return "0%";
  if (pct < 1) return "<1%";
  if (pct >= 100) return absl::StrCat(static_cast<int64_t>(std::llround(pct)), "%");
  if (pct > 99) return ">99%";
  return absl::StrCat(static_cast<int64_t>(std::llround(pct)), "%");
}

std::string CountWithPercent(const Doc& count, const Doc& pct, const Doc& total) {
  if (!count.is_number()) return "-";
  const std::string n = Cell(count);
  if (pct.is_number()) return absl::StrCat(n, " (", FormatPercent(pct.get<double>()), ")");
  if (total.is_number() && total.get<double>() > 0) {
    return absl::StrCat(n, " (", FormatPercent(100.0 * count.get<double>() / total.get<double>()),
                        ")");
  }
  return n;
}

std::string FormatNumber(double v, bool mean_style) {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  char buf[64];
  if (v == std::trunc(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, mean_style ? "%.1f" : "%.0f", v);
    return buf;
  }
  std::snprintf(buf, sizeof buf, "%.2f", v);
  std::string s = buf;
  // "230.50" -> "230.5"; keep one decimal for means ("76.0").
  const size_t keep = s.find('.') + (mean_style ? 2 : 1);
  while (s.size() > keep && s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  if (s == "-0" || s == "-0.0") s = s.substr(1);
  return s;
}

std::string MetricsSummary(const Doc& metrics) {
  if (!metrics.is_object() || metrics.empty()) return "";
  std::vector<std::string> parts;
  for (auto it = metrics.begin(); it != metrics.end(); ++it) {
    const Doc& m = it.value();
    std::string part = it.key();
    if (m.is_number()) {  // a bare number: tolerate a simpler shape
      absl::StrAppend(&part, " ", FormatNumber(m.get<double>()));
    } else {
      if (const Doc& sum = At(m, {"sum"}); sum.is_number()) {
        absl::StrAppend(&part, " sum ", FormatNumber(sum.get<double>()));
      }
      if (const Doc& mean = At(m, {"mean"}); mean.is_number()) {
        absl::StrAppend(&part, " mean ", FormatNumber(mean.get<double>(), true));
      }
    }
    parts.push_back(std::move(part));
  }
  return absl::StrJoin(parts, " · ");
}

std::string EventObject(const Doc& event) {
  const Doc& type = At(event, {"object", "type"});
  const Doc& name = At(event, {"object", "name"});
  if (!type.is_string() && !name.is_string()) return "-";
  return absl::StrCat(Cell(type), "/", Cell(name));
}

std::string EventTime(const Doc& event) {
  const Doc& time = At(event, {"time"});
  if (!time.is_string()) return "-";
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, time.get<std::string>(), &t, &err)) {
    return Cell(time);
  }
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

std::vector<std::string> EventHeaders() {
  return {"seq", "time", "severity", "kind", "object", "message"};
}

std::vector<std::string> EventRow(const Doc& event) {
  return {Cell(At(event, {"seq"})),  EventTime(event),   Cell(At(event, {"severity"})),
          Cell(At(event, {"kind"})), EventObject(event), Cell(At(event, {"message"}))};
}

std::string StreamRow(const std::vector<std::string>& cells, const std::vector<size_t>& widths) {
  std::string line;
  for (size_t i = 0; i < cells.size(); ++i) {
    line += cells[i];
    if (i + 1 < cells.size()) {
      const size_t w = i < widths.size() ? std::max(widths[i], cells[i].size()) : cells[i].size();
      line.append(w - cells[i].size() + 3, ' ');
    }
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line + "\n";
}

RolloutProgress ReadProgress(const Doc& d) {
  RolloutProgress p;
  const Doc& rep = At(d, {"status", "replicas"});
  p.desired = Int(At(rep, {"desired"}), Int(At(d, {"replicas"}), 0));
  p.ready = Int(At(rep, {"available"}), Int(At(rep, {"ready"}), 0));
  p.updated = Int(At(rep, {"updated"}), p.desired);
  p.phase = Cell(At(d, {"status", "phase"}));
  p.done = p.ready == p.desired && p.updated == p.desired;
  return p;
}

std::string ProgressLine(const RolloutProgress& p) {
  constexpr int64_t kWidth = 20;
  const int64_t filled =
      p.desired <= 0 ? kWidth : std::clamp<int64_t>(p.ready, 0, p.desired) * kWidth / p.desired;
  return absl::StrCat("ready ", p.ready, "/", p.desired, " [", std::string(filled, '#'),
                      std::string(kWidth - filled, '.'), "]");
}

std::string NotReadyReason(const Doc& d) {
  const Doc& failure = At(d, {"status", "last_probe_failure"});
  if (failure.is_object()) {
    const Doc& message = At(failure, {"message"});
    const Doc& probe = At(failure, {"probe"});
    const Doc& instance = At(failure, {"instance"});
    std::string out = probe.is_string() ? absl::StrCat(probe.get<std::string>(), " probe failed")
                                        : "probe failed";
    if (instance.is_string()) absl::StrAppend(&out, " on ", instance.get<std::string>());
    if (message.is_string() && !message.get<std::string>().empty()) {
      absl::StrAppend(&out, ": ", message.get<std::string>());
    }
    return out;
  }
  if (const Doc& conds = At(d, {"status", "conditions"}); conds.is_array()) {
    for (const Doc& c : conds) {
      const Doc& status = At(c, {"status"});  // a boolean, or "True" as Kubernetes spells it
      if (At(c, {"type"}) != "Available" || status == true || status == "True") continue;
      if (const Doc& m = At(c, {"message"}); m.is_string() && !m.get<std::string>().empty()) {
        return m.get<std::string>();
      }
      if (const Doc& r = At(c, {"reason"}); r.is_string()) return r.get<std::string>();
    }
  }
  return "";
}

std::string WaitFailureMessage(const std::string& name, const Doc& deployment,
                               absl::Duration waited) {
  const RolloutProgress p = ReadProgress(deployment);
  std::string out = absl::StrCat("HEALTH_CHECK_FAILED: deployment ", name, ": ", p.ready, " of ",
                                 p.desired, " ready");
  if (p.updated != p.desired) absl::StrAppend(&out, " (", p.updated, " updated)");
  absl::StrAppend(&out, " after ", absl::FormatDuration(waited));
  if (std::string reason = NotReadyReason(deployment); !reason.empty()) {
    absl::StrAppend(&out, ": ", reason);
  } else {
    absl::StrAppend(&out, " (phase ", p.phase, ")");
  }
  return out;
}

}  // namespace palm::cli
