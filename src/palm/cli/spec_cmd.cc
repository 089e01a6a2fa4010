// palm spec register -f FILE | list | get NAME[@VER] | deprecate NAME@VER.
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "palm/base/error.h"
#include "palm/cli/commands.h"
#include "palm/cli/input.h"
#include "palm/cli/output.h"

namespace palm::cli {
namespace {

absl::Status Register(Context& ctx, const std::string& file) {
  auto fd = ReadDocumentFile(file);
  if (!fd.ok()) return fd.status();
  Doc& doc = fd->doc;
  if (auto kind = doc.find("kind"); kind != doc.end() && *kind != "AgentSpec") {
    return InvalidArgument(
        absl::StrCat(file, ": kind is ", kind->dump(), ", expected AgentSpec"),
        *kind == "Deployment" ? "apply deployments with `palm deployment apply -f FILE`" : "");
  }
  PALM_RETURN_IF_ERROR(ResolveWorkdir(doc, fd->dir));
  auto r = ctx.Call("POST", ctx.WithTenant("/v1/specs"), doc.dump());
  if (!r.ok()) return Annotate(r.status(), file);
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  const Doc& out = r->doc.is_object() ? r->doc : doc;
  std::cout << "spec " << Cell(At(out, {"name"})) << "@" << Cell(At(out, {"version"}))
            << (r->status == 201 ? " registered" : " unchanged") << "\n";
  return absl::OkStatus();
}

absl::Status List(Context& ctx) {
  auto r = ctx.Get(ctx.WithTenant("/v1/specs"));
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  Table t({"name", "version", "command", "deprecated", "created"});
  if (const Doc& items = At(r->doc, {"items"}); items.is_array()) {
    for (const Doc& s : items) {
      std::vector<std::string> argv;
      if (const Doc& c = At(s, {"command"}); c.is_array()) {
        for (const Doc& a : c) argv.push_back(a.is_string() ? a.get<std::string>() : a.dump());
      }
      std::string command = absl::StrJoin(argv, " ");
      if (command.size() > 48) command = command.substr(0, 45) + "...";
      t.AddRow({Cell(At(s, {"name"})), Cell(At(s, {"version"})), command,
                At(s, {"deprecated"}) == true ? "yes" : "no", Cell(At(s, {"created_at"}))});
    }
  }
  if (t.rows() == 0) {
    std::cerr << "No specs registered. Register one with `palm spec register -f FILE`.\n";
    return absl::OkStatus();
  }
  std::cout << t.Render();
  return absl::OkStatus();
}

absl::Status Get(Context& ctx, const std::string& ref) {
  std::string name, version;
  PALM_RETURN_IF_ERROR(SplitSpecRef(ref, false, &name, &version));
  std::string path = absl::StrCat("/v1/specs/", UrlEncode(name));
  if (!version.empty()) absl::StrAppend(&path, "/", UrlEncode(version));
  auto r = ctx.Get(ctx.WithTenant(path));
  if (!r.ok()) return r.status();
  if (!PrintMachine(ctx.format(), *r)) std::cout << ToYaml(r->doc);
  return absl::OkStatus();
}

absl::Status Deprecate(Context& ctx, const std::string& ref) {
  std::string name, version;
  PALM_RETURN_IF_ERROR(SplitSpecRef(ref, true, &name, &version));
  auto r = ctx.Call("POST", ctx.WithTenant(absl::StrCat("/v1/specs/", UrlEncode(name), "/",
                                                        UrlEncode(version), "/deprecate")));
  if (!r.ok()) return r.status();
  if (PrintMachine(ctx.format(), *r)) return absl::OkStatus();
  std::cout << "spec " << name << "@" << version
            << " deprecated (new deployments refuse it; running ones keep it)\n";
  return absl::OkStatus();
}

}  // namespace

absl::Status SplitSpecRef(const std::string& ref, bool need_version, std::string* name,
                          std::string* version) {
  std::string n, v;
  if (auto at = ref.find('@'); at != std::string::npos) {
    n = ref.substr(0, at);
    v = ref.substr(at + 1);
  } else if (auto slash = ref.rfind('/'); slash != std::string::npos) {
    // agent_ref: org/agents/name:version
    std::string last = ref.substr(slash + 1);
    auto colon = last.find(':');
    n = last.substr(0, colon);
    if (colon != std::string::npos) v = last.substr(colon + 1);
  } else {
    n = ref;
  }
  if (n.empty() || (need_version && v.empty()) ||
      (ref.find('@') != std::string::npos && v.empty())) {
    return UsageError(absl::StrCat("invalid spec reference \"", ref, "\""),
                      need_version ? "write NAME@VERSION, e.g. buyer@1.2.0"
                                   : "write NAME or NAME@VERSION, e.g. buyer@1.2.0");
  }
  *name = n;
  *version = v;
  return absl::OkStatus();
}

void AddSpecCommands(CLI::App& app, Action* action) {
  auto* spec = app.add_subcommand("spec", "Register and inspect agent specs (name@version)");
  spec->require_subcommand(1);

  auto file = std::make_shared<std::string>();
  auto* reg = spec->add_subcommand("register", "Register an AgentSpec from a YAML/JSON file");
  reg->add_option("-f,--file", *file, "Spec file (YAML or JSON; - reads stdin)")->required();
  reg->callback([action, file] {
    *action = [file](Context& ctx) { return Register(ctx, *file); };
  });

  auto* list = spec->add_subcommand("list", "List registered specs");
  list->callback([action] { *action = List; });

  auto get_ref = std::make_shared<std::string>();
  auto* get = spec->add_subcommand("get", "Show a spec (the highest version without @VER)");
  get->add_option("ref", *get_ref, "NAME or NAME@VERSION")->required();
  get->callback([action, get_ref] {
    *action = [get_ref](Context& ctx) { return Get(ctx, *get_ref); };
  });

  auto dep_ref = std::make_shared<std::string>();
  auto* dep = spec->add_subcommand("deprecate", "Deprecate a spec version");
  dep->add_option("ref", *dep_ref, "NAME@VERSION")->required();
  dep->callback([action, dep_ref] {
    *action = [dep_ref](Context& ctx) { return Deprecate(ctx, *dep_ref); };
  });
}

}  // namespace palm::cli
