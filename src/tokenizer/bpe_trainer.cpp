#include "tokenizer/bpe_trainer.h"

#include <nlohmann/json.hpp>
#include <queue>
#include <set>
#include <unordered_map>

#include "tokenizer/pretokenizer.h"
#include "util/common.h"
#include "util/unicode.h"

namespace multiref {

const char* const kChatMLTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

namespace {
struct PairHash {
  size_t operator()(const std::pair<int32_t, int32_t>& p) const {
    return std::hash<uint64_t>()(((uint64_t)(uint32_t)p.first << 32) | (uint32_t)p.second);
  }
};
}  // namespace

TrainedBpe train_bpe(const std::string& corpus, const BpeTrainOptions& opts) {
  int64_t target = opts.vocab_size - (int64_t)opts.special_tokens.size();
  if (target < 256)
    fail("--vocab_size ", opts.vocab_size, " is too small: it needs 256 byte tokens plus ", opts.special_tokens.size(),
         " special tokens");
  size_t bad = 0;
  if (!utf8_valid(corpus, &bad)) fail("training text is not valid UTF-8 (byte offset ", bad, ")");
  // Word frequencies after NFC and the Qwen2 pre-tokenizer: merges never cross piece boundaries.
  std::string text = nfc(corpus);
  PreTokenizer pre(kQwen2Pattern, "train-tokenizer");
  std::unordered_map<std::string, int64_t> counts;
  pre.split(text, [&](size_t b, size_t e) { ++counts[text.substr(b, e - b)]; });

  TrainedBpe out;
  std::unordered_map<std::string, int32_t> token_id;
  for (int b = 0; b < 256; ++b) {
    out.tokens.push_back(std::string(1, (char)b));
    token_id.emplace(out.tokens.back(), b);
  }
  std::vector<std::vector<int32_t>> words;
  std::vector<int64_t> freq;
  // Sorted by word so that training does not depend on hash order.
  std::vector<std::pair<std::string, int64_t>> sorted(counts.begin(), counts.end());
  std::sort(sorted.begin(), sorted.end());
  for (auto& [w, c] : sorted) {
    std::vector<int32_t> ids;
    for (char ch : w) ids.push_back((uint8_t)ch);
    words.push_back(std::move(ids));
    freq.push_back(c);
  }
  std::unordered_map<std::pair<int32_t, int32_t>, int64_t, PairHash> pair_count;
  std::unordered_map<std::pair<int32_t, int32_t>, std::set<size_t>, PairHash> where;
  for (size_t w = 0; w < words.size(); ++w)
    for (size_t i = 0; i + 1 < words[w].size(); ++i) {
      auto p = std::make_pair(words[w][i], words[w][i + 1]);
      pair_count[p] += freq[w];
      where[p].insert(w);
    }
  // Max-heap of (count, pair) with lazy invalidation: an entry whose count is stale is re-pushed.
  struct Entry {
    int64_t count;
    std::string merged;
    std::pair<int32_t, int32_t> pair;
    bool operator<(const Entry& o) const { return count != o.count ? count < o.count : merged > o.merged; }
  };
  auto merged_bytes = [&](const std::pair<int32_t, int32_t>& p) { return out.tokens[p.first] + out.tokens[p.second]; };
  std::priority_queue<Entry> heap;
  for (auto& [p, c] : pair_count) heap.push({c, merged_bytes(p), p});
  while ((int64_t)out.tokens.size() < target && !heap.empty()) {
    Entry top = heap.top();
    heap.pop();
    auto it = pair_count.find(top.pair);
    int64_t now = it == pair_count.end() ? 0 : it->second;
    if (now != top.count) {
      if (now > 0) heap.push({now, top.merged, top.pair});
      continue;
    }
    if (now < opts.min_frequency) break;
    // Two merge paths can spell the same bytes ("ab"+"c", "a"+"bc"): the token is then reused, as HF's
    // trainer does, and only the merge rule is new.
    auto known = token_id.find(top.merged);
    int32_t new_id = known != token_id.end() ? known->second : (int32_t)out.tokens.size();
    if (known == token_id.end()) {
      out.tokens.push_back(top.merged);
      token_id.emplace(top.merged, new_id);
    }
    out.merges.push_back(top.pair);
    std::set<size_t> affected = where[top.pair];
    std::unordered_map<std::pair<int32_t, int32_t>, int64_t, PairHash> delta;
    for (size_t w : affected) {
      auto& ids = words[w];
      for (size_t i = 0; i + 1 < ids.size(); ++i) delta[{ids[i], ids[i + 1]}] -= freq[w];
      std::vector<int32_t> merged;
      for (size_t i = 0; i < ids.size();) {
        if (i + 1 < ids.size() && ids[i] == top.pair.first && ids[i + 1] == top.pair.second) {
          merged.push_back(new_id);
          i += 2;
        } else {
          merged.push_back(ids[i++]);
        }
      }
      ids = std::move(merged);
      for (size_t i = 0; i + 1 < ids.size(); ++i) {
        delta[{ids[i], ids[i + 1]}] += freq[w];
        where[{ids[i], ids[i + 1]}].insert(w);
      }
    }
    for (auto& [p, d] : delta) {
      if (d == 0) continue;
      int64_t& c = pair_count[p];
      c += d;
      if (d > 0) heap.push({c, merged_bytes(p), p});
    }
    pair_count.erase(top.pair);
    where.erase(top.pair);
  }
  return out;
}

void write_trained_tokenizer(const TrainedBpe& bpe, const BpeTrainOptions& opts, const std::string& dir) {
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (size_t i = 0; i < bpe.tokens.size(); ++i) vocab[bytes_to_byte_level(bpe.tokens[i])] = i;
  nlohmann::json merges = nlohmann::json::array();
  for (auto& [a, b] : bpe.merges)
    merges.push_back({bytes_to_byte_level(bpe.tokens[(size_t)a]), bytes_to_byte_level(bpe.tokens[(size_t)b])});
  nlohmann::json added = nlohmann::json::array(), decoder = nlohmann::json::object();
  for (size_t i = 0; i < opts.special_tokens.size(); ++i) {
    nlohmann::json t = {{"id", bpe.tokens.size() + i},
                        {"content", opts.special_tokens[i]},
                        {"single_word", false},
                        {"lstrip", false},
                        {"rstrip", false},
                        {"normalized", false},
                        {"special", true}};
    added.push_back(t);
    nlohmann::json d = t;
    d.erase("id");
    decoder[std::to_string(bpe.tokens.size() + i)] = d;
  }
  nlohmann::json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  nlohmann::ordered_json tj;
  tj["version"] = "1.0";
  tj["truncation"] = nullptr;
  tj["padding"] = nullptr;
  tj["added_tokens"] = added;
  tj["normalizer"] = {{"type", "NFC"}};
  tj["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", kQwen2Pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
        byte_level}}};
  tj["post_processor"] = byte_level;
  tj["decoder"] = byte_level;
  tj["model"] = {{"type", "BPE"},
                 {"dropout", nullptr},
                 {"unk_token", nullptr},
                 {"continuing_subword_prefix", ""},
                 {"end_of_word_suffix", ""},
                 {"fuse_unk", false},
                 {"byte_fallback", false},
                 {"ignore_merges", false},
                 {"vocab", vocab},
                 {"merges", merges}};
  auto has = [&](const char* s) {
    return std::find(opts.special_tokens.begin(), opts.special_tokens.end(), s) != opts.special_tokens.end();
  };
  nlohmann::json cfg = {{"added_tokens_decoder", decoder},
                        {"bos_token", nullptr},
                        {"eos_token", has("<|im_end|>") ? nlohmann::json("<|im_end|>") : nlohmann::json(nullptr)},
                        {"pad_token", has("<|endoftext|>") ? nlohmann::json("<|endoftext|>") : nlohmann::json(nullptr)},
                        {"chat_template", kChatMLTemplate},
                        {"clean_up_tokenization_spaces", false},
                        {"errors", "replace"},
                        {"model_max_length", 32768},
                        {"split_special_tokens", false},
                        {"tokenizer_class", "PreTrainedTokenizerFast"}};
  write_file_atomic(join_path(dir, "tokenizer.json"), tj.dump(2) + "\n");
  write_file_atomic(join_path(dir, "tokenizer_config.json"), cfg.dump(2) + "\n");
}

}  // namespace multiref
