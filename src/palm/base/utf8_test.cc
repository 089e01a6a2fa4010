#include "palm/base/utf8.h"

#include <string>

#include "gtest/gtest.h"

namespace palm {
namespace {

TEST(Utf8Test, ValidTextIsUnchanged) {
  EXPECT_EQ(ToValidUtf8("plain"), "plain");
  EXPECT_EQ(ToValidUtf8("h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80"), "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80");
  EXPECT_EQ(FindInvalidUtf8("h\xC3\xA9llo"), std::string_view::npos);
}

TEST(Utf8Test, InvalidBytesBecomeReplacementCharacters) {
  EXPECT_EQ(FindInvalidUtf8("ok\377"), 2u);
  EXPECT_EQ(ToValidUtf8("a\377b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(ToValidUtf8("\xC0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");        // overlong NUL
  EXPECT_EQ(ToValidUtf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(ToValidUtf8("x\xE2\x82"), "x\xEF\xBF\xBD\xEF\xBF\xBD");      // truncated sequence
  EXPECT_EQ(FindInvalidUtf8(ToValidUtf8("\xF4\x90\x80\x80 \xFE\xFF")), std::string_view::npos);
}

TEST(Utf8Test, CutsAtACharacterBoundary) {
  const std::string euros = "\xE2\x82\xAC\xE2\x82\xAC";  // two 3-byte characters
  EXPECT_EQ(CutUtf8(euros, 4), "\xE2\x82\xAC");
  EXPECT_EQ(CutUtf8(euros, 2), "");
  EXPECT_EQ(CutUtf8(euros, 6), euros);
  EXPECT_EQ(ToValidUtf8("ab\377cd", 4), "ab");  // the replacement does not fit
  EXPECT_EQ(ToValidUtf8("abcdef", 3), "abc");
}

}  // namespace
}  // namespace palm
