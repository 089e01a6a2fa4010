// Object names (DESIGN.md section 3): [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters.
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace palm {

inline constexpr size_t kMaxNameLength = 63;

// OK when `name` is a valid object name; otherwise kInvalidArgument whose message names
// `field` (e.g. "spec.name"), quotes the value and says what rule it breaks.
absl::Status ValidateName(std::string_view field, std::string_view name);

}  // namespace palm
