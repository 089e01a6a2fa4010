#include "palm/base/semver.h"

#include <charconv>
#include <vector>

namespace palm {
namespace {

struct Parsed {
  long long major = 0, minor = 0, patch = 0;
  std::vector<std::string_view> pre;
  bool ok = false;
};

bool Number(std::string_view s, long long* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

Parsed Parse(std::string_view v) {
  Parsed r;
  if (auto plus = v.find('+'); plus != std::string_view::npos) v = v.substr(0, plus);
  std::string_view core = v, pre;
  if (auto dash = v.find('-'); dash != std::string_view::npos) {
    core = v.substr(0, dash);
    pre = v.substr(dash + 1);
  }
  size_t d1 = core.find('.'), d2 = core.find('.', d1 == std::string_view::npos ? d1 : d1 + 1);
  if (d1 == std::string_view::npos || d2 == std::string_view::npos) return r;
  if (!Number(core.substr(0, d1), &r.major) || !Number(core.substr(d1 + 1, d2 - d1 - 1), &r.minor) ||
      !Number(core.substr(d2 + 1), &r.patch)) {
    return r;
  }
  while (!pre.empty()) {
    size_t dot = pre.find('.');
    r.pre.push_back(pre.substr(0, dot));
    if (dot == std::string_view::npos) break;
    pre = pre.substr(dot + 1);
  }
  r.ok = true;
  return r;
}

int Sign(long long x) { return x < 0 ? -1 : (x > 0 ? 1 : 0); }

}  // namespace

int CompareSemver(std::string_view a, std::string_view b) {
  Parsed x = Parse(a), y = Parse(b);
  if (!x.ok || !y.ok) return a.compare(b);
  if (x.major != y.major) return Sign(x.major - y.major);
  if (x.minor != y.minor) return Sign(x.minor - y.minor);
  if (x.patch != y.patch) return Sign(x.patch - y.patch);
  if (x.pre.empty() || y.pre.empty()) {
    // A release orders after its pre-releases.
    return x.pre.empty() == y.pre.empty() ? 0 : (x.pre.empty() ? 1 : -1);
  }
  for (size_t i = 0; i < x.pre.size() && i < y.pre.size(); ++i) {
    long long nx, ny;
    bool dx = Number(x.pre[i], &nx), dy = Number(y.pre[i], &ny);
    if (dx && dy) {
      if (nx != ny) return Sign(nx - ny);
    } else if (dx != dy) {
      return dx ? -1 : 1;  // numeric identifiers order before alphanumeric ones
    } else if (int c = x.pre[i].compare(y.pre[i]); c != 0) {
      return Sign(c);
    }
  }
  return Sign((long long)x.pre.size() - (long long)y.pre.size());
}

}  // namespace palm
