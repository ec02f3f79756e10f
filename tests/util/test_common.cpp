// common.h's file helpers, checked through the shell (an independent view of the file system).
#include <gtest/gtest.h>

#include "test_util.h"
#include "util/common.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

bool shell_ok(const std::string& cmd) {
  return run_command(cmd).exit_code == 0;
}

TEST(RemoveAll, TreesFilesLinksAndMissingPaths) {
  TempDir tmp;
  std::string t = tmp.path;
  ASSERT_TRUE(shell_ok("mkdir -p " + t + "/tree/a/b/c " + t + "/outside && echo x > " + t +
                       "/tree/a/b/c/f && echo y > " + t + "/tree/a/g && echo z > " + t + "/outside/keep && ln -s " + t +
                       "/outside " + t + "/tree/a/link && ln -s " + t + "/nowhere " + t +
                       "/tree/dangling && echo w > " + t + "/file"));
  remove_all(t + "/tree");
  EXPECT_FALSE(shell_ok("test -e " + t + "/tree -o -L " + t + "/tree")) << "the tree is still there";
  // A link inside the tree is removed, not followed.
  EXPECT_TRUE(shell_ok("test -f " + t + "/outside/keep")) << "remove_all followed a symbolic link";
  remove_all(t + "/file");
  EXPECT_FALSE(shell_ok("test -e " + t + "/file"));
  remove_all(t + "/does/not/exist");  // nothing there: no error
  ASSERT_TRUE(shell_ok("ln -s " + t + "/outside " + t + "/top_link"));
  remove_all(t + "/top_link");  // a link given directly: the link goes, its target stays
  EXPECT_FALSE(shell_ok("test -L " + t + "/top_link"));
  EXPECT_TRUE(shell_ok("test -f " + t + "/outside/keep"));
}

}  // namespace

// fail() cuts every long string argument to a bounded prefix (error messages quote input values that can be 100 KB);
// short ones, numbers and literals pass whole.
TEST(Fail, LongStringArgumentsAreCutShortOnesAreNot) {
  std::string big(100000, 'q'), short_one(600, 's');
  try {
    fail("file.json: role \"", big, "\" of ", 3, " ", short_one);
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_LT(m.size(), 1400u);
    EXPECT_NE(m.find("... (100000 bytes in all)\" of 3 "), std::string::npos) << m.substr(0, 200);
    EXPECT_NE(m.find(short_one), std::string::npos);
    EXPECT_EQ(m.rfind("file.json: role \"qqq", 0), 0u);
  }
  // A multi-byte character is never cut in half.
  std::string accents;
  while (accents.size() < 2000) accents += "\xc3\xa9";
  try {
    fail(accents);
  } catch (const Error& e) {
    std::string m = e.what();
    size_t cut = m.find("...");
    ASSERT_NE(cut, std::string::npos);
    EXPECT_EQ(cut % 2, 0u);
  }
}
