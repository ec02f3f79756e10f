#include "test_util.h"
#include "util/flags.h"
#include "util/runtime.h"

using namespace multiref;
using multiref::testing::expect_error;

namespace {
struct Cfg {
  std::string name = "x";
  int steps = 10;
  double lr = 5e-7;
  bool bf16 = false;
  std::vector<std::string> refs;
  DTypeChoice dtype = DTypeChoice::Auto;
  void reg(FlagTable& t) {
    t.add("name", &name, "a name");
    t.add("max_steps", &steps, "steps");
    t.add("learning_rate", &lr, "lr");
    t.add("bf16", &bf16, "use bf16");
    t.add("refs", &refs, "refs");
    t.add_enum("dtype", &dtype, dtype_choices(), "dtype");
  }
};
}  // namespace

TEST(Flags, SpaceAndEqualsForms) {
  Cfg c;
  FlagTable t("prog", "test");
  c.reg(t);
  auto pos = t.parse(std::vector<std::string>{"--name", "a", "--max_steps=20", "--learning_rate", "1e-3", "--bf16",
                                              "--refs", "m1,m2", "--refs=m3", "--dtype=bfloat16"});
  EXPECT_EQ(c.name, "a");
  EXPECT_EQ(c.steps, 20);
  EXPECT_DOUBLE_EQ(c.lr, 1e-3);
  EXPECT_TRUE(c.bf16);
  EXPECT_EQ(c.refs, (std::vector<std::string>{"m1", "m2", "m3"}));
  EXPECT_EQ(c.dtype, DTypeChoice::BFloat16);
  EXPECT_TRUE(pos.empty());
  EXPECT_TRUE(t.was_set("bf16"));
  EXPECT_FALSE(t.was_set("unknown"));
}

// Issue 21: stray words were silently dropped (`tokenize --add_special_tokens maybe` succeeded); non-finite numbers
// were accepted (`theory --epsilon=-inf`).
TEST(Flags, StrayArgumentsAndNonFiniteNumbersAreErrors) {
  Cfg c;
  FlagTable t("prog", "test");
  c.reg(t);
  expect_error([&] { t.parse(std::vector<std::string>{"--name", "a", "extra"}); }, {"unexpected argument 'extra'"});
  expect_error(
      [&] {
        t.parse(std::vector<std::string>{"--bf16", "maybe"});
      },
      {"unexpected argument 'maybe'", "--bf16=true or =false"});
  expect_error([&] { t.parse(std::vector<std::string>{"--", "x"}); }, {"unexpected argument '--'"});
  for (std::string v : {"-inf", "inf", "nan", "1e999"})
    expect_error([&] { t.parse(std::vector<std::string>{"--learning_rate=" + v}); },
                 {"learning_rate", "finite number"});
  t.parse(std::vector<std::string>{"--bf16", "no"});
  EXPECT_FALSE(c.bf16);
}

TEST(Flags, BoolForms) {
  for (auto [args, want] : std::vector<std::pair<std::vector<std::string>, bool>>{{{"--bf16"}, true},
                                                                                  {{"--bf16=false"}, false},
                                                                                  {{"--bf16", "False"}, false},
                                                                                  {{"--bf16", "true"}, true},
                                                                                  {{"--bf16=1"}, true}}) {
    Cfg c;
    c.bf16 = !want;
    FlagTable t("prog", "test");
    c.reg(t);
    t.parse(args);
    EXPECT_EQ(c.bf16, want) << args[0];
  }
}

TEST(Flags, DashSpellingAccepted) {
  Cfg c;
  FlagTable t("prog", "test");
  c.reg(t);
  t.parse(std::vector<std::string>{"--max-steps", "7"});
  EXPECT_EQ(c.steps, 7);
}

TEST(Flags, Errors) {
  Cfg c;
  FlagTable t("prog", "test");
  c.reg(t);
  expect_error(
      [&] {
        t.parse(std::vector<std::string>{"--max_step", "3"});
      },
      {"unknown flag --max_step", "--max_steps"});
  expect_error([&] { t.parse(std::vector<std::string>{"--max_steps", "3x"}); }, {"--max_steps", "integer", "3x"});
  expect_error([&] { t.parse(std::vector<std::string>{"--learning_rate"}); }, {"--learning_rate", "needs a value"});
  expect_error([&] { t.parse(std::vector<std::string>{"--dtype", "fp8"}); }, {"--dtype", "fp8", "float32"});
  expect_error([&] { t.parse(std::vector<std::string>{"--bf16=maybe"}); }, {"--bf16", "true or false"});
}

TEST(Flags, HelpListsEveryFlagWithDefault) {
  Cfg c;
  FlagTable t("prog", "summary line");
  c.reg(t);
  t.parse(std::vector<std::string>{"--help"});
  EXPECT_TRUE(t.help_requested());
  std::string h = t.help();
  for (auto s : {"--name", "(default: x)", "--max_steps", "(default: 10)", "--learning_rate", "(default: 5e-07)",
                 "--bf16", "(default: false)", "--dtype", "{auto|float32|bfloat16|float16|float64}", "(default: auto)"})
    EXPECT_NE(h.find(s), std::string::npos) << s;
}

TEST(Flags, ResolvedConfigAsJson) {
  Cfg c;
  FlagTable t("prog", "test");
  c.reg(t);
  t.parse(std::vector<std::string>{"--max_steps=3", "--dtype", "float32"});
  auto j = t.to_json();
  EXPECT_EQ(j["max_steps"], 3);
  EXPECT_EQ(j["dtype"], "float32");
  EXPECT_EQ(j["name"], "x");
  EXPECT_EQ(j["bf16"], false);
}
