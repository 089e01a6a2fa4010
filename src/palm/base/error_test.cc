#include "palm/base/error.h"

#include "gtest/gtest.h"

namespace palm {
namespace {

TEST(Error, CarriesCodeAndHintThroughAnnotate) {
  absl::Status s = NotFound("DEPLOYMENT_NOT_FOUND", "deployment x not found", "palm deployment list");
  absl::Status a = Annotate(s, "scale");
  EXPECT_EQ(a.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(a.message(), "scale: deployment x not found");
  EXPECT_EQ(ErrorCode(a), "DEPLOYMENT_NOT_FOUND");
  EXPECT_EQ(ErrorHint(a), "palm deployment list");
}

TEST(Error, DefaultsCodeFromStatusCode) {
  EXPECT_EQ(ErrorCode(absl::InvalidArgumentError("x")), "INVALID_ARGUMENT");
  EXPECT_EQ(ErrorCode(absl::NotFoundError("x")), "NOT_FOUND");
  EXPECT_EQ(ErrorHint(absl::NotFoundError("x")), "");
}

}  // namespace
}  // namespace palm
