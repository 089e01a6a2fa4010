// palm events [--follow] [--deployment N] [--since SEQ] [--limit N].
#include <iostream>
#include <optional>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "palm/base/error.h"
#include "palm/cli/commands.h"
#include "palm/cli/health_view.h"
#include "palm/cli/output.h"
#include "palm/cli/sse.h"

namespace palm::cli {
namespace {

constexpr absl::Duration kBackoffInitial = absl::Milliseconds(250);
constexpr absl::Duration kBackoffMax = absl::Seconds(5);
// Column widths of the streamed table (it cannot measure rows it has not seen yet).
const std::vector<size_t> kStreamWidths = {5, 20, 8, 18, 20};

struct EventsOptions {
  bool follow = false;
  std::string deployment;
  int64_t since = -1;  // -1: not given
  int64_t limit = 0;   // 0: not given
};

std::string Query(const EventsOptions& o, std::optional<int64_t> since) {
  std::string q;
  auto add = [&q](const char* k, const std::string& v) {
    absl::StrAppend(&q, q.empty() ? "?" : "&", k, "=", v);
  };
  if (since) add("since", absl::StrCat(*since));
  if (!o.deployment.empty()) add("deployment", UrlEncode(o.deployment));
  return q;
}

absl::Status List(Context& ctx, const EventsOptions& o) {
  std::string path =
      absl::StrCat("/v1/events", Query(o, o.since >= 0 ? std::optional(o.since) : std::nullopt));
  if (o.limit > 0)
    absl::StrAppend(&path, path.find('?') == std::string::npos ? "?" : "&", "limit=", o.limit);
  auto r = ctx.Get(ctx.WithTenant(path));
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  Table t(EventHeaders());
  if (const Doc& items = At(r->doc, {"items"}); items.is_array()) {
    for (const Doc& e : items) t.AddRow(EventRow(e));
  }
  if (t.rows() == 0) {
    std::cerr << "No events" << (o.deployment.empty() ? "" : " for deployment " + o.deployment)
              << (o.since >= 0 ? absl::StrCat(" after seq ", o.since) : "") << ".\n";
    return absl::OkStatus();
  }
  std::cout << t.Render();
  if (const Doc& next = At(r->doc, {"next"}); next.is_number()) {
    std::cerr << "more events: palm events --since " << next.dump()
              << (o.deployment.empty() ? "" : " -d " + o.deployment) << "\n";
  }
  return absl::OkStatus();
}

// Prints one streamed event in the chosen format. The data is the event's JSON.
void PrintEvent(OutputFormat format, const Doc& event) {
  switch (format) {
    case OutputFormat::kJson:
      std::cout << event.dump(-1, ' ', false, nlohmann::detail::error_handler_t::replace) << "\n";
      break;
    case OutputFormat::kYaml:
      std::cout << "---\n" << ToYaml(event);
      break;
    case OutputFormat::kTable:
      std::cout << StreamRow(EventRow(event), kStreamWidths);
      break;
  }
}

// Streams events until Ctrl-C (or --limit events). A dropped stream (daemon restart) is
// resumed from the last seq printed, with backoff, so nothing is missed or printed twice.
absl::Status Follow(Context& ctx, const EventsOptions& o) {
  std::optional<int64_t> last;
  if (o.since >= 0) last = o.since;
  if (ctx.format() == OutputFormat::kTable) {
    std::vector<std::string> headers = EventHeaders();
    for (auto& h : headers) h = absl::AsciiStrToUpper(h);
    std::cout << StreamRow(headers, kStreamWidths) << std::flush;
  }
  SseParser parser;
  bool connected_once = false;
  bool lost = false;  // an outage is under way (reported once)
  int64_t printed = 0;
  absl::Duration backoff = kBackoffInitial;
  while (true) {
    parser.Reset();
    bool stop = false;
    absl::Status broken;
    const std::string path = absl::StrCat("/v1/events", Query(o, last));
    absl::Status s = ctx.Stream(
        ctx.WithTenant(path + (path.find('?') == std::string::npos ? "?" : "&") + "follow=1"),
        [&](std::string_view piece) {
          if (lost) std::cerr << "event stream resumed\n";
          connected_once = true;
          lost = false;
          backoff = kBackoffInitial;
          std::vector<SseEvent> events;
          if (absl::Status f = parser.Feed(piece, &events); !f.ok()) {
            broken = f;
            return false;
          }
          for (const SseEvent& e : events) {
            Doc doc = Doc::parse(e.data, nullptr, /*allow_exceptions=*/false);
            if (!doc.is_object()) continue;  // not an event of ours
            std::optional<int64_t> seq;
            if (const Doc& n = At(doc, {"seq"}); n.is_number_integer()) seq = n.get<int64_t>();
            if (seq && last && *seq <= *last) continue;  // replayed after a reconnect
            PrintEvent(ctx.format(), doc);
            if (seq) last = seq;
            if (o.limit > 0 && ++printed >= o.limit) {
              stop = true;
              break;
            }
          }
          std::cout.flush();
          if (!std::cout) stop = true;  // the reader went away (`| head`)
          return !stop;
        });
    if (stop) return absl::OkStatus();
    if (!broken.ok()) return broken;
    // Not retried: refusals (401, 400 for a bad --since, 404) and a daemon that was never
    // reached (a typo in --endpoint should not spin forever).
    if (!s.ok() && s.code() != absl::StatusCode::kUnavailable) return s;
    if (!s.ok() && !connected_once) return s;
    if (!lost) {
      std::cerr << "event stream lost (" << (s.ok() ? "closed by the daemon" : s.message())
                << "); reconnecting" << (last ? absl::StrCat(" from seq ", *last) : std::string())
                << "\n";
      lost = true;
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, kBackoffMax);
  }
}

}  // namespace

void AddEventsCommand(CLI::App& app, Action* action) {
  auto o = std::make_shared<EventsOptions>();
  auto* ev = app.add_subcommand("events", "List or follow events (lifecycle, probes, scaling)");
  ev->add_flag("-f,--follow", o->follow,
               "Stream events as they happen until Ctrl-C (reconnects when the daemon restarts)");
  ev->add_option("-d,--deployment", o->deployment, "Only this deployment's events");
  ev->add_option("--since", o->since, "Only events after this seq (with --follow: replay them)")
      ->check(CLI::NonNegativeNumber);
  ev->add_option("--limit", o->limit, "At most N events (with --follow: stop after N)")
      ->check(CLI::Range(int64_t{1}, int64_t{10000}));
  ev->callback([action, o] {
    *action = [o](Context& ctx) { return o->follow ? Follow(ctx, *o) : List(ctx, *o); };
  });
}

}  // namespace palm::cli
