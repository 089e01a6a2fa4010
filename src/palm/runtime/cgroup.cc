#include "palm/runtime/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <string_view>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "palm/base/error.h"

namespace palm::runtime {
namespace {

constexpr int64_t kCpuPeriodUs = 100'000;
constexpr int64_t kMinCpuQuotaUs = 1'000;  // the kernel refuses less than 1 ms

std::optional<std::string> ReadFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[4096];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

absl::Status WriteFile(const std::string& path, absl::string_view data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return Error(absl::StatusCode::kInternal, "CGROUP_FAILED",
                 absl::StrCat("open ", path, ": ", std::strerror(errno)));
  }
  ssize_t n;
  do {
    n = ::write(fd, data.data(), data.size());
  } while (n < 0 && errno == EINTR);
  const int err = errno;
  ::close(fd);
  if (n < 0) {
    return Error(absl::StatusCode::kInternal, "CGROUP_FAILED",
                 absl::StrCat("write \"", absl::StripTrailingAsciiWhitespace(data), "\" to ", path,
                              ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

bool IsDir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool MakeDir(const std::string& path, std::string* error) {
  if (::mkdir(path.c_str(), 0755) == 0 || (errno == EEXIST && IsDir(path))) return true;
  *error = absl::StrCat("mkdir ", path, ": ", std::strerror(errno));
  return false;
}

// "a/b/c" -> {"a", "a/b", "a/b/c"} below `root`; each is created when missing. Calls
// `each(dir)` after creating each one (v2 enables controllers on the way down).
template <typename F>
bool MakeDirs(const std::string& root, absl::string_view rel, std::string* error, F each) {
  std::string dir = root;
  for (absl::string_view part : absl::StrSplit(rel, '/', absl::SkipEmpty())) {
    if (!each(dir, error)) return false;
    absl::StrAppend(&dir, "/", part);
    if (!MakeDir(dir, error)) return false;
  }
  return true;
}

// One line of /proc/self/mountinfo that mounts a cgroup filesystem.
struct CgroupMount {
  std::string root;         // field 4: the mounted subtree of the hierarchy
  std::string mountpoint;   // field 5
  bool v2 = false;
  std::vector<std::string> controllers;  // v1: from the super options
};

std::vector<CgroupMount> ParseMounts(const std::string& mountinfo) {
  std::vector<CgroupMount> out;
  for (absl::string_view line : absl::StrSplit(mountinfo, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    size_t dash = 0;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (dash < 5 || dash + 3 >= f.size()) continue;
    const absl::string_view fstype = f[dash + 1];
    if (fstype != "cgroup" && fstype != "cgroup2") continue;
    CgroupMount m;
    m.root = std::string(f[3]);
    m.mountpoint = std::string(f[4]);
    m.v2 = fstype == "cgroup2";
    if (!m.v2) {
      for (absl::string_view opt : absl::StrSplit(f[dash + 3], ',')) {
        if (opt != "rw" && opt != "ro" && !absl::StrContains(opt, '=')) {
          m.controllers.emplace_back(opt);
        }
      }
    }
    out.push_back(std::move(m));
  }
  return out;
}

// /proc/self/cgroup: "<id>:<controllers>:<path>" -> path per controller ("" key = v2).
std::vector<std::pair<std::vector<std::string>, std::string>> ParseOwn(const std::string& text) {
  std::vector<std::pair<std::vector<std::string>, std::string>> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() != 3) continue;
    std::vector<std::string> controllers;
    for (absl::string_view c : absl::StrSplit(f[1], ',', absl::SkipEmpty())) {
      controllers.emplace_back(c);
    }
    out.emplace_back(std::move(controllers), std::string(f[2]));
  }
  return out;
}

// The directory of the cgroup at `own_path` under `m`.
std::string OwnDir(const CgroupMount& m, const std::string& own_path) {
  absl::string_view rel = own_path;
  if (m.root != "/" && absl::ConsumePrefix(&rel, m.root)) {
    // the mount shows only the subtree at m.root (a container): paths are relative to it
  }
  std::string dir = m.mountpoint;
  if (!rel.empty() && rel != "/") absl::StrAppend(&dir, rel);
  return dir;
}

bool Has(const std::vector<std::string>& v, std::string_view s) {
  for (const auto& x : v) {
    if (x == s) return true;
  }
  return false;
}

std::optional<uint64_t> ReadNumber(const std::string& path) {
  std::optional<std::string> text = ReadFile(path);
  uint64_t n = 0;
  if (!text || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &n)) return std::nullopt;
  return n;
}

}  // namespace

std::string_view ToString(CgroupVersion v) {
  switch (v) {
    case CgroupVersion::kV1:
      return "cgroup v1";
    case CgroupVersion::kV2:
      return "cgroup v2";
    case CgroupVersion::kNone:
      break;
  }
  return "none";
}

std::string CgroupName(std::string_view instance_id) {
  std::string out;
  out.reserve(instance_id.size());
  for (const char c : instance_id) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-') {
      out.push_back(c);
    } else if (c == '/') {
      out.push_back('.');
    } else {
      absl::StrAppend(&out, "%", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    }
  }
  return out;
}

std::string ProbeCgroupName(uint64_t n) { return absl::StrCat("_probe-", ::getpid(), "-", n); }

std::shared_ptr<Cgroups> Cgroups::Detect(const CgroupOptions& options) {
  std::shared_ptr<Cgroups> cg(new Cgroups());
  if (!options.enabled) {
    cg->reason_ = "disabled";
    return cg;
  }
  const std::optional<std::string> own_text = ReadFile(options.proc_self_cgroup);
  const std::optional<std::string> mount_text = ReadFile(options.proc_self_mountinfo);
  if (!own_text || !mount_text) {
    cg->reason_ = absl::StrCat("cannot read ", options.proc_self_cgroup, " or ",
                               options.proc_self_mountinfo);
    return cg;
  }
  const auto own = ParseOwn(*own_text);
  const auto mounts = ParseMounts(*mount_text);
  const bool absolute = !options.parent.empty() && options.parent[0] == '/';
  std::vector<std::string> why;

  // cgroup v2: the unified hierarchy with memory, pids and cpu available to our cgroup.
  for (const CgroupMount& m : mounts) {
    if (!m.v2) continue;
    std::string own_path;
    for (const auto& [controllers, path] : own) {
      if (controllers.empty()) own_path = path;
    }
    if (own_path.empty()) continue;
    const std::string start = absolute ? m.mountpoint : OwnDir(m, own_path);
    std::vector<std::string> avail =
        absl::StrSplit(absl::StripAsciiWhitespace(ReadFile(start + "/cgroup.controllers")
                                                      .value_or("")),
                       ' ', absl::SkipEmpty());
    if (!Has(avail, "memory") || !Has(avail, "pids") || !Has(avail, "cpu")) {
      why.push_back(absl::StrCat("cgroup v2 at ", start, " lacks the memory, pids or cpu controller"));
      continue;
    }
    std::string error;
    const auto enable = [](const std::string& dir, std::string* error) {
      absl::Status st = WriteFile(dir + "/cgroup.subtree_control", "+memory +pids +cpu");
      if (!st.ok()) *error = std::string(st.message());
      return st.ok();
    };
    std::string base = start;
    if (!MakeDirs(start, options.parent, &error, enable) ||
        !enable(absl::StrCat(start, "/", absl::StripPrefix(options.parent, "/")), &error)) {
      why.push_back(absl::StrCat("cgroup v2: ", error));
      continue;
    }
    cg->version_ = CgroupVersion::kV2;
    cg->hierarchies_.push_back({{}, absl::StrCat(start, "/", absl::StripPrefix(options.parent, "/"))});
    return cg;
  }

  // cgroup v1: one hierarchy per needed controller (co-mounted ones share a directory).
  for (const char* controller : {"memory", "pids", "cpu", "freezer", "cpuacct"}) {
    const bool required = absl::string_view(controller) != "cpuacct";
    if (cg->Find(controller) != nullptr) continue;  // co-mounted with an earlier one
    const CgroupMount* mount = nullptr;
    for (const CgroupMount& m : mounts) {
      if (!m.v2 && Has(m.controllers, controller)) {
        mount = &m;
        break;
      }
    }
    std::string own_path = "/";
    for (const auto& [controllers, path] : own) {
      if (Has(controllers, controller)) own_path = path;
    }
    std::string error;
    if (mount == nullptr) {
      error = absl::StrCat("no ", controller, " hierarchy mounted");
    } else {
      const std::string start = absolute ? mount->mountpoint : OwnDir(*mount, own_path);
      if (MakeDirs(start, options.parent, &error, [](const std::string&, std::string*) { return true; })) {
        cg->hierarchies_.push_back(
            {mount->controllers, absl::StrCat(start, "/", absl::StripPrefix(options.parent, "/"))});
        continue;
      }
    }
    if (!required) continue;
    why.push_back(absl::StrCat("cgroup v1: ", error));
    cg->hierarchies_.clear();
    cg->reason_ = absl::StrJoin(why, "; ");
    return cg;
  }
  cg->version_ = CgroupVersion::kV1;
  return cg;
}

const Cgroups::Hierarchy* Cgroups::Find(std::string_view controller) const {
  for (const Hierarchy& h : hierarchies_) {
    if (version_ == CgroupVersion::kV2 || Has(h.controllers, controller)) return &h;
  }
  return nullptr;
}

std::vector<std::string> Cgroups::Dirs(const std::string& name) const {
  std::vector<std::string> out;
  for (const Hierarchy& h : hierarchies_) out.push_back(DirOf(h, name));
  return out;
}

absl::StatusOr<std::vector<std::string>> Cgroups::Create(const std::string& name,
                                                         const CgroupLimits& limits) const {
  if (!available()) {
    return Error(absl::StatusCode::kFailedPrecondition, "CGROUP_UNAVAILABLE",
                 absl::StrCat("cgroups are not available: ", reason_));
  }
  if (Exists(name)) PALM_RETURN_IF_ERROR(Kill(name));  // an earlier run's leftovers
  for (const Hierarchy& h : hierarchies_) {
    std::string error;
    if (!MakeDir(DirOf(h, name), &error)) {
      return Error(absl::StatusCode::kInternal, "CGROUP_FAILED", error);
    }
  }
  PALM_RETURN_IF_ERROR(SetLimits(name, limits));
  return Dirs(name);
}

absl::Status Cgroups::SetLimits(const std::string& name, const CgroupLimits& l) const {
  const std::string bytes =
      l.memory_mb ? absl::StrCat(*l.memory_mb * (int64_t{1} << 20)) : std::string();
  std::string quota;
  if (l.cpu) {
    quota = absl::StrCat(
        std::max<int64_t>(kMinCpuQuotaUs, std::llround(*l.cpu * static_cast<double>(kCpuPeriodUs))));
  }
  if (version_ == CgroupVersion::kV2) {
    const std::string dir = DirOf(hierarchies_[0], name);
    PALM_RETURN_IF_ERROR(WriteFile(dir + "/memory.max", l.memory_mb ? bytes : "max"));
    // Without this a limited group swaps instead of being OOM-killed at its limit.
    if (::access((dir + "/memory.swap.max").c_str(), F_OK) == 0) {
      PALM_RETURN_IF_ERROR(WriteFile(dir + "/memory.swap.max", l.memory_mb ? "0" : "max"));
    }
    PALM_RETURN_IF_ERROR(
        WriteFile(dir + "/pids.max", l.max_procs ? absl::StrCat(*l.max_procs) : "max"));
    return WriteFile(dir + "/cpu.max",
                     absl::StrCat(l.cpu ? quota : "max", " ", kCpuPeriodUs));
  }
  if (const Hierarchy* h = Find("memory")) {
    const std::string dir = DirOf(*h, name);
    const std::string limit = l.memory_mb ? bytes : "-1";
    const std::string memsw = dir + "/memory.memsw.limit_in_bytes";
    const bool has_memsw = ::access(memsw.c_str(), F_OK) == 0;
    // memsw (memory + swap) may never be below the memory limit: raise it first when
    // lifting the limit, lower it last when setting one.
    if (has_memsw && !l.memory_mb) PALM_RETURN_IF_ERROR(WriteFile(memsw, limit));
    PALM_RETURN_IF_ERROR(WriteFile(dir + "/memory.limit_in_bytes", limit));
    if (has_memsw && l.memory_mb) PALM_RETURN_IF_ERROR(WriteFile(memsw, limit));
  }
  if (const Hierarchy* h = Find("pids")) {
    PALM_RETURN_IF_ERROR(WriteFile(DirOf(*h, name) + "/pids.max",
                                   l.max_procs ? absl::StrCat(*l.max_procs) : "max"));
  }
  if (const Hierarchy* h = Find("cpu")) {
    const std::string dir = DirOf(*h, name);
    PALM_RETURN_IF_ERROR(WriteFile(dir + "/cpu.cfs_period_us", absl::StrCat(kCpuPeriodUs)));
    PALM_RETURN_IF_ERROR(WriteFile(dir + "/cpu.cfs_quota_us", l.cpu ? quota : "-1"));
  }
  return absl::OkStatus();
}

bool Cgroups::Exists(const std::string& name) const {
  return available() && IsDir(DirOf(hierarchies_[0], name));
}

std::vector<int> Cgroups::Members(const std::string& name) const {
  std::vector<int> pids;
  const Hierarchy* h = version_ == CgroupVersion::kV1 ? Find("freezer") : Find("");
  if (h == nullptr) return pids;
  const std::optional<std::string> text = ReadFile(DirOf(*h, name) + "/cgroup.procs");
  if (!text) return pids;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    int pid = 0;
    if (absl::SimpleAtoi(line, &pid) && pid > 0) pids.push_back(pid);
  }
  return pids;
}

bool Cgroups::Contains(const std::string& name, int pid) const {
  for (int p : Members(name)) {
    if (p == pid) return true;
  }
  return false;
}

bool Cgroups::Populated(const std::string& name) const {
  if (!available()) return false;
  if (version_ == CgroupVersion::kV2) {
    const std::optional<std::string> events =
        ReadFile(DirOf(hierarchies_[0], name) + "/cgroup.events");
    return events && absl::StrContains(*events, "populated 1");
  }
  // Zombies are not listed in cgroup.procs (nor counted for rmdir).
  return !Members(name).empty();
}

absl::Status Cgroups::Kill(const std::string& name) const {
  if (!Exists(name)) return absl::OkStatus();
  if (version_ == CgroupVersion::kV2) {
    const std::string dir = DirOf(hierarchies_[0], name);
    if (::access((dir + "/cgroup.kill").c_str(), F_OK) == 0) {
      return WriteFile(dir + "/cgroup.kill", "1");
    }
    // Before Linux 5.14: freeze, kill, thaw (below).
    PALM_RETURN_IF_ERROR(WriteFile(dir + "/cgroup.freeze", "1"));
    for (int pid : Members(name)) ::kill(pid, SIGKILL);
    return WriteFile(dir + "/cgroup.freeze", "0");
  }
  const Hierarchy* h = Find("freezer");
  const std::string state = DirOf(*h, name) + "/freezer.state";
  // A frozen task cannot fork, so the member list read below is complete; a task still
  // FREEZING might fork once more, which the caller's next Populated()/Kill() catches.
  absl::Status frozen = WriteFile(state, "FROZEN");
  for (int pid : Members(name)) ::kill(pid, SIGKILL);
  absl::Status thawed = WriteFile(state, "THAWED");  // SIGKILLed tasks die once thawed
  return frozen.ok() ? thawed : frozen;
}

absl::Status Cgroups::Remove(const std::string& name) const {
  if (!available()) return absl::OkStatus();
  for (const Hierarchy& h : hierarchies_) {
    const std::string dir = DirOf(h, name);
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) continue;
    if (errno == EBUSY) {
      return Error(absl::StatusCode::kFailedPrecondition, "CGROUP_BUSY",
                   absl::StrCat("cgroup ", dir, " still has processes"));
    }
    return Error(absl::StatusCode::kInternal, "CGROUP_FAILED",
                 absl::StrCat("rmdir ", dir, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

void Cgroups::RemoveParentIfEmpty() const {
  // rmdir fails (ENOTEMPTY/EBUSY) while a group or a process is below: then it stays.
  for (const Hierarchy& h : hierarchies_) ::rmdir(h.base.c_str());
}

std::optional<Usage> Cgroups::UsageOf(const std::string& name) const {
  if (!Exists(name)) return std::nullopt;
  Usage u;
  if (version_ == CgroupVersion::kV2) {
    const std::string dir = DirOf(hierarchies_[0], name);
    if (std::optional<std::string> stat = ReadFile(dir + "/cpu.stat")) {
      for (absl::string_view line : absl::StrSplit(*stat, '\n')) {
        uint64_t us = 0;
        if (absl::ConsumePrefix(&line, "usage_usec ") && absl::SimpleAtoi(line, &us)) {
          u.cpu_ns = us * 1000;
        }
      }
    }
    u.memory_bytes = ReadNumber(dir + "/memory.current").value_or(0);
    u.procs = ReadNumber(dir + "/pids.current").value_or(0);
    return u;
  }
  if (const Hierarchy* h = Find("cpuacct")) {
    u.cpu_ns = ReadNumber(DirOf(*h, name) + "/cpuacct.usage").value_or(0);
  }
  if (const Hierarchy* h = Find("memory")) {
    u.memory_bytes = ReadNumber(DirOf(*h, name) + "/memory.usage_in_bytes").value_or(0);
  }
  if (const Hierarchy* h = Find("pids")) {
    u.procs = ReadNumber(DirOf(*h, name) + "/pids.current").value_or(0);
  }
  return u;
}

}  // namespace palm::runtime
