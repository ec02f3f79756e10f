// `multiref tokenize`, `multiref train-tokenizer` and `multiref init --tokenizer` end to end.
#include <fstream>

#include "model/model_config.h"
#include "test_util.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

using namespace multiref;
using namespace multiref::testing;

namespace {
// GSM8K questions and answers (tests/fixtures/gsm8k: 300 rows).
std::string training_corpus(size_t max_lines) {
  std::string text;
  std::ifstream in(fixture_dir() + "/gsm8k/train.jsonl");
  std::string line;
  for (size_t i = 0; i < max_lines && std::getline(in, line); ++i) {
    auto j = nlohmann::json::parse(line);
    text += j["question"].get<std::string>() + "\n" + j["answer"].get<std::string>() + "\n";
  }
  return text;
}
}  // namespace

TEST(TokenizeCli, TextMessagesAndDecode) {
  TempDir tmp;
  std::string tok = fixture_dir() + "/tokenizers/llama3";
  std::ofstream(tmp / "in.jsonl") << R"({"text": "This is a test sentence."})"
                                  << "\n"
                                  << R"({"messages": [{"role": "user", "content": " Hi "}]})"
                                  << "\n";
  auto r = run_command(
      mr("tokenize --tokenizer " + tok + " --input " + (tmp / "in.jsonl") + " --output " + (tmp / "out.jsonl")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto out = read_json_lines(tmp / "out.jsonl");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0]["ids"], nlohmann::json({2028, 374, 264, 1296, 11914, 13}));
  // The original Llama 3 template: BOS, header, trimmed content, eot, assistant header.
  EXPECT_EQ(out[1]["text"],
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  auto ids = out[1]["ids"].get<std::vector<int64_t>>();
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids[0], 128000);
  EXPECT_EQ(ids[1], 128006);

  r = run_command(mr("tokenize --tokenizer " + tok + " --add_special_tokens --input " + (tmp / "in.jsonl") +
                     " --output " + (tmp / "out2.jsonl")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto out2 = read_json_lines(tmp / "out2.jsonl");
  EXPECT_EQ(out2[0]["ids"], nlohmann::json({128000, 2028, 374, 264, 1296, 11914, 13}));
  EXPECT_EQ(out2[1]["ids"], out[1]["ids"]) << "chat renderings already hold their BOS";

  std::ofstream(tmp / "ids.jsonl") << R"({"ids": [128000, 2028, 374, 264, 1296, 11914, 13]})"
                                   << "\n";
  r = run_command(mr("tokenize --tokenizer " + tok + " --decode --skip_special_tokens --input " + (tmp / "ids.jsonl") +
                     " --output " + (tmp / "dec.jsonl")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_json_lines(tmp / "dec.jsonl")[0]["text"], "This is a test sentence.");

  // Overriding the template.
  r = run_command(mr("tokenize --tokenizer " + tok + " --chat_template plain --input " + (tmp / "in.jsonl") +
                     " --output " + (tmp / "plain.jsonl")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_json_lines(tmp / "plain.jsonl")[1]["text"], " Hi \n\n");
}

TEST(TokenizeCli, BadInput) {
  TempDir tmp;
  std::string tok = fixture_dir() + "/tokenizers/llama3";
  auto run = [&](const std::string& input, const std::string& extra = "") {
    std::ofstream(tmp / "in.jsonl") << input;
    return run_command(mr("tokenize --tokenizer " + tok + " --input " + (tmp / "in.jsonl") + " --output " +
                          (tmp / "out.jsonl") + " " + extra));
  };
  struct Case {
    std::string input, extra;
    std::vector<std::string> fragments;
  };
  for (auto& c : std::vector<Case>{
           {"{\"text\": \"ok\"}\n{\"txt\": 1}\n", "", {"in.jsonl:2", "expected"}},
           {"{\"text\": \"ok\"}\n{\"text\": \"bad \xC3\x28\"}\n", "", {"in.jsonl:2", "UTF-8"}},
           {"{\"ids\": [1, 99999999]}\n", "--decode", {"in.jsonl:1", "99999999"}},
           {"{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}\n", "", {"in.jsonl:1", "wizard"}},
           {"{\"text\": \"x\"}\n", "--chat_template jinja2", {"jinja2", "chatml"}},
       }) {
    auto r = run(c.input, c.extra);
    EXPECT_NE(r.exit_code, 0) << c.input;
    for (auto& f : c.fragments) EXPECT_NE(r.output.find(f), std::string::npos) << "'" << f << "' not in: " << r.output;
    EXPECT_FALSE(file_exists(tmp / "out.jsonl"));
  }
  auto r = run_command(mr("tokenize --tokenizer " + (tmp / "nowhere") + " --input x --output y"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("nowhere"), std::string::npos) << r.output;
}

TEST(TrainTokenizer, TrainsLoadsRoundTripsAndIsDeterministic) {
  TempDir tmp;
  std::ofstream(tmp / "corpus.txt") << training_corpus(300);
  auto r = run_command(
      mr("train-tokenizer --input " + (tmp / "corpus.txt") + " --vocab_size 700 --output " + (tmp / "tok")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto tok = Tokenizer::load(tmp / "tok");
  EXPECT_EQ(tok->vocab_size(), 700);
  EXPECT_EQ(tok->token_to_id("<|endoftext|>"), 697);
  EXPECT_EQ(tok->token_to_id("<|im_end|>"), 699);
  EXPECT_EQ(tok->eos_id, 699);
  EXPECT_EQ(tok->pad_id, 697);
  auto fmt = detect_chat_template(tok->chat_template, "trained");
  EXPECT_EQ(fmt.kind, ChatTemplateKind::ChatML);
  EXPECT_FALSE(fmt.qwen_default_system);
  std::string sample = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.";
  auto ids = tok->encode(sample);
  EXPECT_EQ(tok->decode(ids), sample);
  EXPECT_LT(ids.size(), sample.size() / 2) << "merges learned from the corpus must compress its own text";
  auto chat = tok->encode("<|im_start|>user\nHi<|im_end|>\n");
  EXPECT_EQ(chat.front(), 698);
  // Same corpus, same files.
  r = run_command(
      mr("train-tokenizer --input " + (tmp / "corpus.txt") + " --vocab_size 700 --output " + (tmp / "tok2")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_file(tmp / "tok/tokenizer.json"), read_file(tmp / "tok2/tokenizer.json"));
  // Bad input.
  r = run_command(mr("train-tokenizer --input " + (tmp / "corpus.txt") + " --vocab_size 100 --output " + (tmp / "t3")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("too small"), std::string::npos) << r.output;
  EXPECT_FALSE(dir_exists(tmp / "t3"));
}

TEST(TrainTokenizer, MergesReproduceHandCountedPairs) {
  // "aaab aaab aab": pieces "aaab", " aaab", " aab" (the pre-tokenizer keeps the leading space). Pair counts:
  // (a,a) = 2+2+1 = 5 is the most frequent, so the first merge is "aa"; then words become [aa a b], [' ' aa a b],
  // [' ' aa b]: (a,b)=2, (aa,a)=2, (' ',aa)=2, (aa,b)=1. Ties go to the merged bytes that sort first: " aa" < "aaa" <
  // "ab".
  BpeTrainOptions opts;
  opts.vocab_size = 256 + 2 + 3;
  opts.min_frequency = 1;
  auto bpe = train_bpe("aaab aaab aab", opts);
  ASSERT_EQ(bpe.merges.size(), 2u);
  EXPECT_EQ(bpe.tokens[256], "aa");
  EXPECT_EQ(bpe.tokens[257], " aa");
}

TEST(InitWithTokenizer, SizesVocabularyAndCopiesFiles) {
  TempDir tmp;
  std::ofstream(tmp / "corpus.txt") << training_corpus(200);
  auto r = run_command(
      mr("train-tokenizer --input " + (tmp / "corpus.txt") + " --vocab_size 600 --output " + (tmp / "tok")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_command(mr("init --arch qwen2 --preset tiny --tokenizer " + (tmp / "tok") + " --output_dir " + (tmp / "m")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto c = load_model_config(tmp / "m");
  EXPECT_EQ(c.vocab_size, 600);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{599, 597}));
  EXPECT_EQ(c.pad_token_id, 597);
  EXPECT_FALSE(c.bos_token_id.has_value());
  EXPECT_TRUE(file_exists(tmp / "m/tokenizer.json"));
  EXPECT_TRUE(file_exists(tmp / "m/tokenizer_config.json"));
  auto gen = nlohmann::json::parse(read_file(tmp / "m/generation_config.json"));
  EXPECT_EQ(gen["eos_token_id"], nlohmann::json({599, 597}));
  EXPECT_EQ(Tokenizer::load(tmp / "m")->vocab_size(), 600);
}
