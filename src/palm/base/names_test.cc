#include "palm/base/names.h"

#include <string>

#include "gtest/gtest.h"

namespace palm {
namespace {

TEST(ValidateName, AcceptsValidNames) {
  for (const char* n : {"a", "buyer", "trading-fleet", "a1", "0", "x-y-z-9"}) {
    EXPECT_TRUE(ValidateName("name", n).ok()) << n;
  }
  EXPECT_TRUE(ValidateName("name", std::string(63, 'a')).ok());
}

TEST(ValidateName, RefusesBadNamesWithFieldAndReason) {
  struct Case {
    std::string name;
    std::string expect;
  } cases[] = {{"", "is empty"},
               {"Bad!", "contains 'B'"},
               {"bad!", "contains '!'"},
               {"-a", "must start and end"},
               {"a-", "must start and end"},
               {"a_b", "contains '_'"},
               {"aB", "contains 'B'"},
               {"aBc", "contains 'B'"},
               {std::string(64, 'a'), "64 characters"}};
  for (const auto& c : cases) {
    absl::Status s = ValidateName("spec.name", c.name);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_NE(s.message().find("spec.name"), std::string::npos) << s;
    EXPECT_NE(s.message().find(c.expect), std::string::npos) << s;
  }
}

}  // namespace
}  // namespace palm
