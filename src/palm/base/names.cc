#include "palm/base/names.h"

#include "absl/strings/str_cat.h"
#include "palm/base/error.h"

namespace palm {
namespace {
bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
}  // namespace

absl::Status ValidateName(std::string_view field, std::string_view name) {
  constexpr std::string_view kRule =
      "use lowercase letters, digits and '-', starting and ending with a letter or digit, "
      "at most 63 characters (e.g. \"trading-fleet\")";
  auto bad = [&](std::string_view why) {
    std::string_view shown = name.substr(0, 80);
    std::string_view more = name.size() > 80 ? "..." : "";
    return InvalidArgument(
        absl::StrCat(std::string(field), ": \"", std::string(shown), std::string(more), "\" ",
                     std::string(why)),
        kRule);
  };
  if (name.empty()) return bad("is empty");
  if (name.size() > kMaxNameLength) {
    return bad(absl::StrCat("is ", name.size(), " characters long (max 63)"));
  }
  for (char c : name) {
    if (!IsLowerAlnum(c) && c != '-') {
      return bad(absl::StrCat("contains '", std::string(1, c),
                              "': only lowercase letters, digits and '-' are allowed"));
    }
  }
  if (!IsLowerAlnum(name.front()) || !IsLowerAlnum(name.back())) {
    return bad("must start and end with a lowercase letter or digit");
  }
  return absl::OkStatus();
}

}  // namespace palm
