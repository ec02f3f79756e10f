// util/json_text: the nesting limit and the bounded excerpts every error message quotes (issue 21's crashes).
#include "test_util.h"
#include "util/json_text.h"

using namespace multiref;
using multiref::testing::expect_error;

namespace {
std::string nested(int depth, const std::string& inner = "1") {
  return std::string((size_t)depth, '[') + inner + std::string((size_t)depth, ']');
}
}  // namespace

TEST(ParseJson, NestingLimit) {
  EXPECT_EQ(parse_json(nested(kMaxJsonDepth - 1), "x").dump().size(), (size_t)(2 * (kMaxJsonDepth - 1) + 1));
  expect_error([] { parse_json(nested(kMaxJsonDepth + 1), "f.json"); }, {"f.json", "nested deeper than 256"});
  // 10^5 levels (a stack overflow when an error message dumped it) and 10^6: refused without recursing.
  for (int d : {100000, 1000000})
    expect_error([&] { parse_json("{\"input_ids\":[1," + nested(d) + "]}", "in.jsonl:3"); },
                 {"in.jsonl:3", "nested deeper"});
  expect_error([] { parse_json("{\"a\": }", "g.json"); }, {"g.json", "not valid JSON"});
}

TEST(JsonExcerpt, BoundedPrefixSaysHowMuchWasLeft) {
  std::string big(100000, 'x');
  auto e = json_excerpt(nlohmann::json(big));
  EXPECT_LT(e.size(), 200u);
  EXPECT_EQ(e.rfind("\"xxx", 0), 0u) << e;
  EXPECT_NE(e.find("100002 bytes in all"), std::string::npos) << e;  // the dump's quotes count
  EXPECT_EQ(json_excerpt(nlohmann::json::parse("[1,2]")), "[1,2]");
  // A multi-byte character is never cut in half.
  std::string s = std::string(119, 'a') + "\xc3\xa9" + "tail";
  auto t = text_excerpt(s, 120);
  EXPECT_EQ(t.rfind(std::string(119, 'a') + "...", 0), 0u) << t;
}
