// Prompt datasets: the three row kinds, the fields kept for the rewards, file and directory layouts, every bad
// row named by file and line, and prompt ids against the ChatML text written out by hand (real Qwen2.5 tokenizer).
#include "data/prompt_data.h"
#include "data/rewards.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

using namespace multiref;
using namespace multiref::testing;

TEST(PromptData, ThreeKindsKeepTheOtherFields) {
  TempDir tmp;
  std::string f = tmp.write("p.jsonl",
                            "{\"prompt\": \"What is 2+2?\", \"answer\": \"4\", \"meta\": {\"id\": 7}}\n"
                            "\n"
                            "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"tests\": [\"assert f()\"]}\n"
                            "{\"prompt_ids\": [5, 0, 9]}\n");
  auto rows = load_prompt_rows(f, "train");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].kind, PromptKind::Text);
  EXPECT_EQ(rows[0].text, "What is 2+2?");
  EXPECT_EQ(rows[0].row, nlohmann::json({{"prompt", "What is 2+2?"}, {"answer", "4"}, {"meta", {{"id", 7}}}}));
  EXPECT_EQ(rows[0].where, f + ":1");
  EXPECT_EQ(rows[1].kind, PromptKind::Messages);
  ASSERT_EQ(rows[1].messages.size(), 1u);
  EXPECT_EQ(rows[1].messages[0].content, "Hi");
  EXPECT_EQ(rows[1].row["tests"], nlohmann::json({"assert f()"}));
  EXPECT_EQ(rows[1].where, f + ":3");
  EXPECT_EQ(rows[2].kind, PromptKind::Ids);
  EXPECT_EQ(rows[2].ids, (std::vector<int64_t>{5, 0, 9}));
  EXPECT_EQ(rows[2].row, nlohmann::json({{"prompt_ids", {5, 0, 9}}}));
  for (auto& r : rows) EXPECT_FALSE(r.gsm8k);
  EXPECT_TRUE(load_prompt_rows(f, "test").empty()) << "a single file is the train split";
  // Ids need no tokenizer; truncation keeps the end.
  EXPECT_EQ(prompt_row_ids(rows[2], nullptr, nullptr, "", 2), (std::vector<int64_t>{0, 9}));
  expect_error([&] { prompt_row_ids(rows[0], nullptr, nullptr, "", 100); }, {f + ":1", "tokenizer", "prompt_ids"});
}

TEST(PromptData, Gsm8kRowsAndTheirGold) {
  TempDir tmp;
  std::string f = tmp.write("g.jsonl",
                            "{\"question\": \"How many?\", \"answer\": \"3 + 4\\n#### 1,007\"}\n"
                            "{\"question\": \"And now?\", \"answer\": \" 12 \"}\n");
  auto rows = load_prompt_rows(f, "train");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_TRUE(are_gsm8k_rows(rows));
  EXPECT_EQ(rows[0].kind, PromptKind::Text);
  EXPECT_EQ(rows[0].text, "How many?");
  // A worked solution: gold after "####", as written and without commas; a bare answer is its own final answer.
  auto p = gsm8k_problem(rows[0]);
  EXPECT_EQ(p.gold_raw, "1,007");
  EXPECT_EQ(p.gold, "1007");
  EXPECT_EQ(gsm8k_problem(rows[1]).gold, "12");
  // The paper's system prompt on GSM8K rows by default, none elsewhere; an explicit value always wins.
  EXPECT_EQ(resolve_system_prompt("auto", rows), kGsm8kXmlSystemPrompt);
  EXPECT_EQ(resolve_system_prompt("", rows), "");
  auto other = load_prompt_rows(tmp.write("o.jsonl", "{\"prompt\": \"x\", \"question\": \"a field\"}\n"), "train");
  EXPECT_FALSE(are_gsm8k_rows(other)) << "with a prompt, a question is just a field";
  EXPECT_EQ(other[0].text, "x");
  EXPECT_EQ(resolve_system_prompt("auto", other), "");
  EXPECT_EQ(resolve_system_prompt("Be brief.", other), "Be brief.");
  expect_error([&] { gsm8k_problem(other[0]); }, {"o.jsonl:1", "\"answer\""});
  // --dataset gsm8k: the GSM8K loader's checks and hint, as prompt rows.
  std::filesystem::create_directories(tmp / "data/gsm8k");
  std::filesystem::copy_file(fixture_dir() + "/gsm8k/test.jsonl", tmp / "data/gsm8k/test.jsonl");
  auto test = load_task_rows("gsm8k", tmp / "data", "test");
  EXPECT_EQ(test.size(), 500u);
  EXPECT_TRUE(are_gsm8k_rows(test));
  expect_error([&] { load_task_rows("gsm8k", tmp / "data", "train"); }, {"train.jsonl", "curl"});
}

TEST(PromptData, DirectoryLayout) {
  TempDir tmp;
  std::filesystem::create_directories(tmp / "d");
  tmp.write("d/train.jsonl", "{\"prompt_ids\": [1]}\n{\"prompt_ids\": [2]}\n");
  EXPECT_EQ(load_prompt_rows(tmp / "d", "train").size(), 2u);
  EXPECT_TRUE(load_prompt_rows(tmp / "d", "test").empty());
  tmp.write("d/test.jsonl", "{\"prompt_ids\": [3]}\n");
  EXPECT_EQ(load_prompt_rows(tmp / "d", "test")[0].ids, (std::vector<int64_t>{3}));
  std::filesystem::create_directories(tmp / "e");
  expect_error([&] { load_prompt_rows(tmp / "e", "train"); }, {"train.jsonl", "missing"});
  expect_error([&] { load_prompt_rows(tmp / "nowhere.jsonl", "train"); }, {"nowhere.jsonl", "cannot open"});
  expect_error([&] { load_prompt_rows(tmp / "d", "validation"); }, {"'validation'"});
}

TEST(PromptData, BadRowsNameFileAndLine) {
  TempDir tmp;
  auto bad = [&](const std::string& line, std::initializer_list<std::string> fragments) {
    std::string f = tmp.write("bad.jsonl", "{\"prompt_ids\": [1]}\n" + line + "\n");
    std::vector<std::string> want = {f + ":2"};
    want.insert(want.end(), fragments.begin(), fragments.end());
    try {
      load_prompt_rows(f, "train");
      ADD_FAILURE() << "expected an error for " << line;
    } catch (const Error& e) {
      for (auto& w : want) EXPECT_NE(std::string(e.what()).find(w), std::string::npos) << e.what();
    }
  };
  bad("{\"answer\": 3}", {"one of \"prompt\"", "\"question\""});
  bad("{\"question\": 3}", {"\"question\" must be a string"});
  bad("{\"prompt\": \"a\", \"prompt_ids\": [1]}", {"only one"});
  bad("{\"prompt\": [{\"role\": \"user\", \"content\": \"x\"}]}", {"\"messages\""});
  bad("{\"prompt\": \"  \"}", {"empty"});
  bad("{\"prompt_ids\": []}", {"non-empty"});
  bad("{\"prompt_ids\": [1, -2]}", {"non-negative", "-2"});
  bad("{\"prompt_ids\": [1, 2.5]}", {"non-negative", "2.5"});
  bad("{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}", {"robot"});
  bad("[1, 2]", {"JSON object"});
  bad("{not json", {"not valid JSON"});
  std::string empty = tmp.write("empty.jsonl", "\n");
  expect_error([&] { load_prompt_rows(empty, "train"); }, {"no prompt rows"});
}

TEST(PromptData, TextAndMessagesThroughTheChatTemplate) {
  TempDir tmp;
  std::string d = fixture_dir() + "/tokenizers";
  std::filesystem::create_symlink(d + "/qwen2/vocab.json", tmp / "vocab.json");
  std::filesystem::create_symlink(d + "/qwen2/merges.txt", tmp / "merges.txt");
  std::filesystem::create_symlink(d + "/qwen2.5/tokenizer_config.json", tmp / "tokenizer_config.json");
  auto tok = Tokenizer::load(tmp.path);
  auto chat = resolve_chat_format(tok->chat_template, tok->bos_token, "auto", tmp.path);
  PromptRow text;
  text.kind = PromptKind::Text;
  text.text = "What is 2+2?";
  std::string want =
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
      "<|im_start|>assistant\n";
  EXPECT_EQ(prompt_row_ids(text, tok.get(), &chat, "Be brief.", 1000), tok->encode(want));
  PromptRow conv;
  conv.kind = PromptKind::Messages;
  conv.messages = {{"system", "Be brief."}, {"user", "What is 2+2?"}};
  EXPECT_EQ(prompt_row_ids(conv, tok.get(), &chat, "ignored for messages", 1000), tok->encode(want));
  auto cut = prompt_row_ids(conv, tok.get(), &chat, "", 3);
  auto full = tok->encode(want);
  EXPECT_EQ(cut, std::vector<int64_t>(full.end() - 3, full.end())) << "the generation prompt survives truncation";
  // What the rewards see: the prompt as the policy saw it (special tokens kept), and the turns before the response.
  auto tp = task_prompt(text, tok.get(), &chat, "Be brief.", 1000);
  EXPECT_EQ(tp.ids, tok->encode(want));
  EXPECT_EQ(tp.text, want);
  ASSERT_EQ(tp.turns.size(), 2u);
  EXPECT_EQ(tp.turns[0].role, "system");
  EXPECT_EQ(tp.turns[1].content, "What is 2+2?");
  PromptRow ids;
  ids.kind = PromptKind::Ids;
  ids.ids = tok->encode(want);
  auto ti = task_prompt(ids, tok.get(), &chat, "", 1000);
  EXPECT_EQ(ti.text, want);
  ASSERT_EQ(ti.turns.size(), 1u) << "pre-tokenized: one user turn, decoded without the special tokens";
  EXPECT_EQ(ti.turns[0].content, "system\nBe brief.\nuser\nWhat is 2+2?\nassistant\n");
  auto none = task_prompt(ids, nullptr, nullptr, "", 1000);
  EXPECT_FALSE(none.text.has_value());
  EXPECT_TRUE(none.turns.empty());
}
