// Semantic version ordering (semver 2.0.0 precedence). Pure, thread-safe.
#pragma once

#include <string_view>

namespace palm {

// <0, 0, >0 as a orders before, equal to, after b. Build metadata is ignored; a
// pre-release orders before its release; malformed versions order by plain string compare.
int CompareSemver(std::string_view a, std::string_view b);

}  // namespace palm
