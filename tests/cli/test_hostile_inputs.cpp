// Issue 21's findings, each a regression test: hostile inputs end with a one-line error naming the input, a
// non-zero exit (never a signal), and no output file.
#include <fstream>

#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

namespace {
std::string nested(int depth) {
  return std::string((size_t)depth, '[') + "1" + std::string((size_t)depth, ']');
}
void write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}
// Exit status 1..2 (an Error), not 128+signal; the message names `where`.
void expect_clean_failure(const CommandResult& r, const std::string& where, const std::string& what) {
  EXPECT_TRUE(r.exit_code > 0 && r.exit_code < 64) << "exit " << r.exit_code << "\n" << r.output.substr(0, 2000);
  EXPECT_NE(r.output.find(where), std::string::npos) << r.output.substr(0, 2000);
  EXPECT_NE(r.output.find(what), std::string::npos) << r.output.substr(0, 2000);
  EXPECT_LT(r.output.size(), 4000u) << "the error echoes the whole bad value";
}
}  // namespace

TEST(HostileInputs, DeeplyNestedJsonIsAnErrorNotAStackOverflow) {
  TempDir tmp;
  std::string bin = multiref_binary();
  run_ok(bin + " init --arch qwen2 --preset tiny --seed 1 --output_dir " + (tmp / "m"));
  // multiref score on a line {"input_ids":[1,[[[...]]]]} (10^5 deep).
  write(tmp / "in.jsonl", "{\"input_ids\":[1,2,3]}\n{\"input_ids\":[1," + nested(100000) + "]}\n");
  auto r = run_command(bin + " score --model " + (tmp / "m") + " --input " + (tmp / "in.jsonl") + " --output " +
                       (tmp / "out.jsonl"));
  expect_clean_failure(r, "in.jsonl:2", "nested deeper");
  EXPECT_FALSE(file_exists(tmp / "out.jsonl"));
  // A config.json whose hidden_size is a deep array.
  run_ok("cp -r " + (tmp / "m") + " " + (tmp / "bad"));
  auto cfg = read_file(tmp / "bad/config.json");
  auto at = cfg.find("\"hidden_size\"");
  ASSERT_NE(at, std::string::npos);
  size_t from = cfg.find(':', at) + 1, to = cfg.find_first_of(",}", from);  // the value
  auto with_value = [&](const std::string& v) { return cfg.substr(0, from) + v + cfg.substr(to); };
  write(tmp / "bad/config.json", with_value(nested(100000)));
  r = run_command(bin + " score --model " + (tmp / "bad") + " --input " + (tmp / "in.jsonl") + " --output " +
                  (tmp / "out.jsonl"));
  expect_clean_failure(r, "config.json", "nested deeper");
  // A value within the limit but of the wrong type is quoted by a bounded excerpt, not whole.
  write(tmp / "bad/config.json", with_value("\"" + std::string(100000, 'h') + "\""));
  r = run_command(bin + " score --model " + (tmp / "bad") + " --input " + (tmp / "in.jsonl") + " --output " +
                  (tmp / "out.jsonl"));
  expect_clean_failure(r, "config.json", "bytes in all");
  EXPECT_FALSE(file_exists(tmp / "out.jsonl"));
}

// Sizes from config.json and token ids are checked against what the files hold before anything is allocated:
// num_hidden_layers 10^6 built layers until 4 GB, hidden_size 2^31 took 15 s to fail in torch, a vocab id of
// 1.5x10^8 sized the id table to it. Each now fails at once, within a memory cap far below those sizes.
TEST(HostileInputs, SizesAreCheckedBeforeAllocating) {
  TempDir tmp;
  std::string bin = multiref_binary();
  run_ok(bin + " init --arch qwen2 --preset tiny --seed 1 --output_dir " + (tmp / "m"));
  write(tmp / "in.jsonl", "{\"input_ids\":[1,2,3]}\n");
  auto cfg = read_file(tmp / "m/config.json");
  auto with_field = [&](const std::string& field, const std::string& v) {
    auto at = cfg.find("\"" + field + "\"");
    EXPECT_NE(at, std::string::npos) << field;
    size_t from = cfg.find(':', at) + 1, to = cfg.find_first_of(",}", from);
    return cfg.substr(0, from) + " " + v + cfg.substr(to);
  };
  // ulimit -v: 1.5 GB of address space is far below what the bad sizes would allocate.
  auto capped = [&](const std::string& cmd) { return run_command("ulimit -v 1500000 && " + cmd); };
  for (auto [field, value] : {std::pair{"num_hidden_layers", "1000000"}, std::pair{"hidden_size", "2147483648"},
                              std::pair{"intermediate_size", "1000000000"}, std::pair{"vocab_size", "1000000000"}}) {
    run_ok("rm -rf " + (tmp / "bad") + " && cp -r " + (tmp / "m") + " " + (tmp / "bad"));
    write(tmp / "bad/config.json", with_field(field, value));
    auto r = capped(bin + " score --model " + (tmp / "bad") + " --input " + (tmp / "in.jsonl") + " --output " +
                    (tmp / "out.jsonl"));
    expect_clean_failure(r, "config.json", std::string(field) + " is " + value + " but the weights have");
    EXPECT_FALSE(file_exists(tmp / "out.jsonl"));
  }
  // vocab.json with one id of 1.5x10^8.
  run_ok("mkdir -p " + (tmp / "tok"));
  write(tmp / "tok/vocab.json", "{\"a\": 0, \"b\": 1, \"ab\": 150000000}");
  write(tmp / "tok/merges.txt", "#version: 0.2\na b\n");
  write(tmp / "tok/tokenizer_config.json", "{\"tokenizer_class\": \"Qwen2Tokenizer\"}");
  write(tmp / "text.jsonl", "{\"text\": \"ab\"}\n");
  auto r = capped(bin + " tokenize --tokenizer " + (tmp / "tok") + " --input " + (tmp / "text.jsonl") + " --output " +
                  (tmp / "ids.jsonl"));
  expect_clean_failure(r, "vocab.json", "150000000, far beyond the vocab's 3 entries");
  EXPECT_FALSE(file_exists(tmp / "ids.jsonl"));
}

// Stray words on the command line were silently dropped; now they are errors naming the word.
TEST(HostileInputs, StrayArgumentsAreErrors) {
  TempDir tmp;
  write(tmp / "text.jsonl", "{\"text\": \"ab\"}\n");
  auto r = run_command(multiref_binary() + " tokenize --tokenizer " + fixture_dir() + "/tokenizers/qwen2 --input " +
                       (tmp / "text.jsonl") + " --output " + (tmp / "ids.jsonl") + " --add_special_tokens maybe");
  expect_clean_failure(r, "'maybe'", "--add_special_tokens=true or =false");
  EXPECT_FALSE(file_exists(tmp / "ids.jsonl"));
  r = run_command(multiref_binary() + " theory --epsilon=-inf");
  expect_clean_failure(r, "--epsilon", "finite number");
}

// The fuzzer's findings (tests/fuzz, seed 1): strings quoted from the input in error messages came back whole — a
// 100 KB merge in merges.txt or tokenizer.json, a chat role, a model_type, a safetensors dtype. Every string an
// error quotes is now a bounded prefix with the full length.
TEST(HostileInputs, LongStringsInErrorsAreQuotedByABoundedPrefix) {
  TempDir tmp;
  std::string bin = multiref_binary(), big(100000, 'x');
  write(tmp / "text.jsonl", "{\"text\": \"ab\"}\n");
  // A chat message whose role is 100 KB (Qwen2's tokenizer with Qwen2.5's chat template).
  write(tmp / "chat.jsonl", "{\"messages\": [{\"role\": \"" + big + "\", \"content\": \"hi\"}]}\n");
  run_ok("mkdir -p " + (tmp / "qwen") + " && cp " + fixture_dir() + "/tokenizers/qwen2/*.* " + fixture_dir() +
         "/tokenizers/qwen2.5/tokenizer_config.json " + (tmp / "qwen"));
  auto r = run_command(bin + " tokenize --tokenizer " + (tmp / "qwen") + " --input " + (tmp / "chat.jsonl") +
                       " --output " + (tmp / "ids.jsonl"));
  expect_clean_failure(r, "chat.jsonl:1", "100000 bytes in all");
  EXPECT_FALSE(file_exists(tmp / "ids.jsonl"));
  // merges.txt: a merge of a 100 KB token (appended to Qwen2's real merges).
  run_ok("echo 'a " + big + "' >> " + (tmp / "qwen/merges.txt"));
  r = run_command(bin + " tokenize --tokenizer " + (tmp / "qwen") + " --input " + (tmp / "text.jsonl") + " --output " +
                  (tmp / "ids.jsonl"));
  expect_clean_failure(r, "merges.txt:1513", "100000 bytes in all");
  EXPECT_FALSE(file_exists(tmp / "ids.jsonl"));
  // config.json: model_type of 100 KB.
  run_ok(bin + " init --arch qwen2 --preset tiny --seed 1 --output_dir " + (tmp / "m"));
  auto cfg = nlohmann::json::parse(read_file(tmp / "m/config.json"));
  cfg.erase("architectures");
  cfg["model_type"] = big;
  write(tmp / "m/config.json", cfg.dump());
  write(tmp / "in.jsonl", "{\"input_ids\":[1,2,3]}\n");
  r = run_command(bin + " score --model " + (tmp / "m") + " --input " + (tmp / "in.jsonl") + " --output " +
                  (tmp / "out.jsonl"));
  expect_clean_failure(r, "config.json", "100000 bytes in all");
  EXPECT_FALSE(file_exists(tmp / "out.jsonl"));
}
