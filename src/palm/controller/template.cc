#include "palm/controller/template.h"

#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "palm/base/error.h"

namespace palm::controller {
namespace {

// Replaces every {{name}} in `s`; `where` names the field for errors.
absl::StatusOr<std::string> Substitute(const std::string& s, const model::StringMap& params,
                                       const std::string& where) {
  if (s.find("{{") == std::string::npos) return s;
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t open = s.find("{{", pos);
    if (open == std::string::npos) break;
    size_t close = s.find("}}", open + 2);
    if (close == std::string::npos) break;
    std::string name(absl::StripAsciiWhitespace(s.substr(open + 2, close - open - 2)));
    auto it = params.find(name);
    if (it == params.end()) {
      return InvalidArgument(
          absl::StrCat(where, ": unknown parameter {{", name, "}}"),
          "declare it under `params:` in the spec, or remove the placeholder");
    }
    out.append(s, pos, open - pos);
    out += it->second;
    pos = close + 2;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

absl::Status SubstituteJson(model::Json& j, const model::StringMap& params,
                            const std::string& where) {
  if (j.is_string()) {
    PALM_ASSIGN_OR_RETURN(std::string v, Substitute(j.get<std::string>(), params, where));
    j = v;
  } else if (j.is_object()) {
    for (auto& [k, v] : j.items()) {
      PALM_RETURN_IF_ERROR(SubstituteJson(v, params, absl::StrCat(where, ".", k)));
    }
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) {
      PALM_RETURN_IF_ERROR(SubstituteJson(j[i], params, absl::StrCat(where, "[", i, "]")));
    }
  }
  return absl::OkStatus();
}

std::string PortEnvName(const std::string& port) {
  std::string out = "PALM_PORT_";
  for (char c : port) out += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  return out;
}

}  // namespace

model::Json MergedConfig(const model::AgentSpec& spec, const model::Deployment& d) {
  model::Json config = spec.config.is_object() ? spec.config : model::Json::object();
  if (d.config.is_object() && !d.config.empty()) config.merge_patch(d.config);
  return config;
}

absl::StatusOr<runtime::SpawnRequest> RenderSpawn(const TemplateInput& in) {
  const model::AgentSpec& spec = in.spec;
  runtime::SpawnRequest req;
  req.instance_id = absl::StrCat(in.instance.tenant, "/", in.instance.id);
  for (size_t i = 0; i < spec.command.size(); ++i) {
    PALM_ASSIGN_OR_RETURN(std::string arg, Substitute(spec.command[i], spec.params,
                                                      absl::StrCat("spec.command[", i, "]")));
    req.argv.push_back(std::move(arg));
  }
  req.workdir = spec.workdir;
  req.log_path = in.instance.log_path;

  for (const auto& [k, v] : in.base_env) {
    if (k.rfind("PALM_", 0) != 0) req.env[k] = v;
  }
  for (const auto& [k, v] : spec.env) {
    PALM_ASSIGN_OR_RETURN(req.env[k], Substitute(v, spec.params, absl::StrCat("spec.env.", k)));
  }
  for (const auto& [k, v] : in.deployment.env) {
    PALM_ASSIGN_OR_RETURN(req.env[k],
                          Substitute(v, spec.params, absl::StrCat("deployment.env.", k)));
  }
  model::Json config = MergedConfig(spec, in.deployment);
  PALM_RETURN_IF_ERROR(SubstituteJson(config, spec.params, "config"));
  req.env["PALM_INSTANCE_ID"] = in.instance.id;
  req.env["PALM_DEPLOYMENT"] = in.deployment.name;
  req.env["PALM_REVISION"] = absl::StrCat(in.instance.revision);
  req.env["PALM_TENANT"] = in.instance.tenant;
  req.env["PALM_ENDPOINT"] = in.endpoint;
  req.env["PALM_TOKEN"] = in.token;
  req.env["PALM_CONFIG"] = config.dump();
  for (const auto& [name, port] : in.instance.ports) req.env[PortEnvName(name)] = absl::StrCat(port);

  req.limits.memory_mb = spec.resources.memory_mb;
  req.limits.max_procs = spec.resources.max_procs;
  req.limits.max_open_files = spec.resources.max_open_files;
  req.limits.cpu = spec.resources.cpu;
  return req;
}

}  // namespace palm::controller
