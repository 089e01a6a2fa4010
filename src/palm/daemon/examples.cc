#include "palm/daemon/examples.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "palm/base/error.h"
#include "palm/base/log.h"
#include "palm/model/codec.h"

namespace palm::daemon {

namespace fs = std::filesystem;

absl::Status LoadExamples(controller::Supervisor& supervisor, const std::string& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(fs::path(dir) / "specs", ec)) {
    std::string ext = entry.path().extension().string();
    if (ext == ".yaml" || ext == ".yml" || ext == ".json") files.push_back(entry.path());
  }
  if (ec) return InvalidArgument(absl::StrCat("cannot read ", dir, "/specs: ", ec.message()));
  std::sort(files.begin(), files.end());
  std::vector<std::pair<fs::path, model::Json>> deployments;
  for (const fs::path& file : files) {
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    PALM_ASSIGN_OR_RETURN(model::Json doc, model::ParseDocument(text.str(), file.string()));
    if (doc.value("kind", "") == "Deployment") {
      deployments.emplace_back(file, std::move(doc));
      continue;
    }
    fs::path base = fs::absolute(file).parent_path();
    std::string workdir = doc.value("workdir", "");
    std::string resolved = (base / workdir).lexically_normal().string();
    if (resolved.size() > 1 && resolved.back() == '/') resolved.pop_back();
    doc["workdir"] = resolved;
    auto spec = model::SpecFromJson(doc);
    if (!spec.ok()) return Annotate(spec.status(), file.string());
    bool created = false;
    auto registered = supervisor.RegisterSpec(std::move(*spec), &created);
    if (!registered.ok()) return Annotate(registered.status(), file.string());
  }
  for (auto& [file, doc] : deployments) {
    auto d = model::DeploymentFromJson(doc);
    if (!d.ok()) return Annotate(d.status(), file.string());
    bool created = false;
    auto applied = supervisor.ApplyDeployment(std::move(*d), &created);
    if (!applied.ok()) return Annotate(applied.status(), file.string());
  }
  PALM_LOG(kInfo, "example fleet loaded from ", dir, " (", files.size(), " files)");
  return absl::OkStatus();
}

}  // namespace palm::daemon
