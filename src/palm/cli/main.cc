#include "palm/cli/main.h"

#include <signal.h>

#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "palm/cli/output.h"

namespace palm::cli {
namespace {

constexpr const char* kFooter =
    "Global flags may be given before or after the verb.\n"
    "Exit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 refused by policy/kill switch/"
    "budget, 5 timed out.";

// CLI11 handles --help before it notices an unknown verb, so `palm health --help` would
// print the main help and succeed. Verbs are checked first: walking down the command
// tree, the first positional word at each level that has verbs must name one of them.
// Returns the unknown word with the verbs it could have been, or "" when all is well.
std::string UnknownVerb(CLI::App& app, const std::vector<std::string>& args) {
  static const char* const kValueFlags[] = {"--endpoint", "--token", "--data-dir", "-o",
                                            "--output", "--tenant", "--timeout"};
  CLI::App* level = &app;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") break;
    if (!a.empty() && a[0] == '-') {
      for (const char* f : kValueFlags) {
        if (a == f) ++i;  // its value is the next word
      }
      continue;
    }
    auto subs = level->get_subcommands([](CLI::App*) { return true; });
    if (subs.empty()) break;  // a leaf: the rest are its arguments
    CLI::App* next = nullptr;
    for (CLI::App* sub : subs) {
      if (sub->check_name(a)) next = sub;
    }
    if (next == nullptr) {
      std::string names;
      for (CLI::App* sub : subs) names += (names.empty() ? "" : ", ") + sub->get_name();
      return absl::StrCat("unknown command \"", a, "\"", level == &app ? "" : " for ",
                          level == &app ? "" : level->get_name(), " (one of: ", names, ")");
    }
    level = next;
  }
  return {};
}

}  // namespace

std::unique_ptr<CLI::App> BuildApp(GlobalOptions* g, Action* action) {
  auto app = std::make_unique<CLI::App>(
      "palm: run fleets of AI agents as one governed system", "palm");
  app->footer(kFooter);
  app->require_subcommand(1);
  // Subcommands hand options they do not know to their parents, so global flags work
  // after the verb too ("palm instance list -o json").
  app->fallthrough();
  app->set_help_all_flag("--help-all", "Show help for every verb");

  app->add_option("--endpoint", g->endpoint, "Daemon URL")
      ->envname("PALM_ENDPOINT")
      ->capture_default_str();
  app->add_option("--token", g->token, "API token (default: <data-dir>/admin.token)")
      ->envname("PALM_TOKEN");
  app->add_option("--data-dir", g->data_dir, "Data directory")
      ->envname("PALM_DATA_DIR")
      ->capture_default_str();
  app->add_option("-o,--output", g->output, "Output format: table|json|yaml")
      ->check(CLI::IsMember({"table", "json", "yaml"}))
      ->capture_default_str();
  app->add_option("--tenant", g->tenant, "Tenant")->capture_default_str();
  app->add_flag("-y,--yes", g->yes, "Skip confirmations");
  app->add_flag("--wait", g->wait,
                "Block until the change is complete (deploy, deployment apply | scale | update "
                "| undo | restart | promote | resume: until the rollout is done, paused or "
                "failed) or the task is finished (task submit)");
  app->add_option("--timeout", g->timeout,
                  "How long to wait: 30s, 5m, 1h, 500ms or seconds (default depends on verb)")
      ->check([](const std::string& s) {
        auto d = ParseDuration(s);
        return d.ok() ? std::string() : std::string(d.status().message());
      });

  AddDaemonCommands(*app, action);
  AddStatusCommand(*app, action);
  AddSpecCommands(*app, action);
  AddDeploymentCommands(*app, action);
  AddRolloutCommands(*app, action);
  AddInstanceCommands(*app, action);
  AddHealthCommands(*app, action);
  AddEventsCommand(*app, action);
  AddTaskCommands(*app, action);
  AddFleetCommands(*app, action);
  for (CLI::App* sub : app->get_subcommands([](CLI::App*) { return true; })) {
    sub->fallthrough();
    for (CLI::App* leaf : sub->get_subcommands([](CLI::App*) { return true; })) leaf->fallthrough();
  }
  return app;
}

int ParseArgs(const std::vector<std::string>& args, GlobalOptions* globals, Action* action) {
  auto app = BuildApp(globals, action);
  if (std::string unknown = UnknownVerb(*app, args); !unknown.empty()) {
    std::cerr << "error: " << unknown << "\nRun with --help for more information.\n";
    return kExitUsage;
  }
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app->parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    return app->exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app->exit(e);
  } catch (const CLI::ParseError& e) {
    app->exit(e, std::cerr, std::cerr);
    return kExitUsage;
  }
  if (!*action) {
    std::cerr << app->help();
    return kExitUsage;
  }
  return -1;
}

int Main(int argc, char** argv) {
  // A closed pipe (`palm instance logs x | head`) ends the write, not the process.
  signal(SIGPIPE, SIG_IGN);
  GlobalOptions globals;
  Action action;
  std::vector<std::string> args(argv + 1, argv + argc);
  if (int code = ParseArgs(args, &globals, &action); code >= 0) return code;
  Context ctx(std::move(globals));
  absl::Status status = action(ctx);
  std::cout.flush();
  if (!status.ok()) {
    std::cerr << FormatError(status) << "\n";
    return ExitCodeFor(status);
  }
  return ctx.exit_code();
}

}  // namespace palm::cli
