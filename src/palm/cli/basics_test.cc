#include "palm/cli/basics.h"

#include "gtest/gtest.h"
#include "palm/base/error.h"

namespace palm::cli {
namespace {

TEST(ParseDuration, AcceptsUnitsAndPlainSeconds) {
  EXPECT_EQ(*ParseDuration("30s"), absl::Seconds(30));
  EXPECT_EQ(*ParseDuration("5m"), absl::Minutes(5));
  EXPECT_EQ(*ParseDuration("1h"), absl::Hours(1));
  EXPECT_EQ(*ParseDuration("500ms"), absl::Milliseconds(500));
  EXPECT_EQ(*ParseDuration("1m30s"), absl::Seconds(90));
  EXPECT_EQ(*ParseDuration("45"), absl::Seconds(45));
  EXPECT_EQ(*ParseDuration("1.5"), absl::Milliseconds(1500));
  EXPECT_EQ(*ParseDuration(" 10s "), absl::Seconds(10));
  EXPECT_EQ(*ParseDuration("0"), absl::ZeroDuration());
}

TEST(ParseDuration, RefusesGarbageAsUsageError) {
  for (const char* bad : {"", "abc", "5 minutes", "-5s", "-3", "10x", "inf", "nan"}) {
    auto d = ParseDuration(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_EQ(ExitCodeFor(d.status()), kExitUsage) << bad;
    EXPECT_NE(ErrorHint(d.status()), "") << bad;
  }
}

absl::Status Api(unsigned http, const std::string& code) {
  return StatusFromHttp(
      http, R"({"error": {"code": ")" + code + R"(", "message": "m", "hint": "h"}})");
}

TEST(ExitCodeFor, MapsApiErrorsAsDesignSays) {
  EXPECT_EQ(ExitCodeFor(absl::OkStatus()), kExitOk);
  EXPECT_EQ(ExitCodeFor(Api(404, "DEPLOYMENT_NOT_FOUND")), kExitNotFound);
  EXPECT_EQ(ExitCodeFor(Api(404, "INSTANCE_NOT_FOUND")), kExitNotFound);
  EXPECT_EQ(ExitCodeFor(Api(403, "POLICY_DENIED")), kExitRefused);
  EXPECT_EQ(ExitCodeFor(Api(403, "KILL_SWITCH_ACTIVE")), kExitRefused);
  EXPECT_EQ(ExitCodeFor(Api(403, "BUDGET_EXCEEDED")), kExitRefused);
  EXPECT_EQ(ExitCodeFor(Api(403, "FORBIDDEN")), kExitFailure);  // a role, not a policy
  EXPECT_EQ(ExitCodeFor(Api(409, "SPEC_VERSION_EXISTS")), kExitFailure);
  EXPECT_EQ(ExitCodeFor(Api(422, "SPEC_INVALID")), kExitFailure);
  EXPECT_EQ(ExitCodeFor(Api(401, "UNAUTHENTICATED")), kExitFailure);
  EXPECT_EQ(ExitCodeFor(Api(500, "INTERNAL")), kExitFailure);
  EXPECT_EQ(ExitCodeFor(absl::DeadlineExceededError("slow")), kExitTimeout);
  EXPECT_EQ(ExitCodeFor(UsageError("bad flag")), kExitUsage);
  EXPECT_EQ(ExitCodeFor(absl::UnavailableError("down")), kExitFailure);
}

TEST(StatusFromHttp, KeepsMessageCodeAndHint) {
  absl::Status s = StatusFromHttp(
      404, R"({"error": {"code": "DEPLOYMENT_NOT_FOUND", "message": "deployment x not found",
                          "hint": "list them with palm deployment list"}})");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrorCode(s), "DEPLOYMENT_NOT_FOUND");
  EXPECT_EQ(FormatError(s),
            "error: deployment x not found\nhint: list them with palm deployment list");
}

TEST(StatusFromHttp, NonJsonBodyStillGivesAMessage) {
  absl::Status s = StatusFromHttp(502, "Bad Gateway");
  EXPECT_EQ(FormatError(s), "error: the daemon answered HTTP 502: Bad Gateway");
  EXPECT_EQ(ExitCodeFor(s), kExitFailure);
  absl::Status empty = StatusFromHttp(500, "");
  EXPECT_EQ(FormatError(empty), "error: the daemon answered HTTP 500");
}

TEST(StatusFromHttp, UnauthorizedWithoutHintSaysWhereTheTokenComesFrom) {
  absl::Status s = StatusFromHttp(401, R"({"error": {"code": "UNAUTHENTICATED",
                                                      "message": "missing token"}})");
  EXPECT_NE(ErrorHint(s).find("admin.token"), std::string::npos);
}

TEST(FormatError, NoHintNoSecondLine) {
  EXPECT_EQ(FormatError(UsageError("replicas must be 0 or more")),
            "error: replicas must be 0 or more");
}

TEST(UrlEncode, EscapesReservedCharacters) {
  EXPECT_EQ(UrlEncode("buyer-001"), "buyer-001");
  EXPECT_EQ(UrlEncode("a b/c?d&e=f"), "a%20b%2Fc%3Fd%26e%3Df");
}

}  // namespace
}  // namespace palm::cli
