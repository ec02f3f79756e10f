#include "tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "tokenizer/pretokenizer.h"
#include "util/common.h"
#include "util/json_text.h"
#include "util/unicode.h"

namespace multiref {

Tokenizer::~Tokenizer() = default;

void Tokenizer::set_pretokenizer(const std::string& pattern) {
  regex_ = std::make_unique<PreTokenizer>(pattern, source);
}

namespace {

nlohmann::json parse_json_file(const std::string& path) {
  return parse_json(read_file(path), path);
}

// tokenizer_config.json stores tokens as strings or as serialized AddedToken objects.
std::string token_content(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

AddedToken parse_added(const nlohmann::json& a, int64_t id, const std::string& where) {
  if (!a.is_object() || !a.contains("content") || !a["content"].is_string())
    fail(where, ": added token ", id, " needs a string \"content\"");
  AddedToken t;
  t.id = id;
  t.content = a["content"].get<std::string>();
  auto flag = [&](const char* k) { return a.contains(k) && a[k].is_boolean() && a[k].get<bool>(); };
  t.special = flag("special");
  t.lstrip = flag("lstrip");
  t.rstrip = flag("rstrip");
  t.normalized = flag("normalized");
  t.single_word = flag("single_word");
  if (t.content.empty()) fail(where, ": added token ", id, " has empty content");
  return t;
}

size_t max_plausible_id(size_t entries) {
  return 2 * entries + 1024;
}

std::vector<std::string> byte_level_vocab(const nlohmann::json& vocab, const std::string& where) {
  if (!vocab.is_object()) fail(where, ": \"vocab\" must be an object of token -> id");
  std::vector<std::string> id_to_bytes;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0)
      fail(where, ": vocab entry \"", it.key(), "\" needs a non-negative integer id");
    auto id = (size_t)it.value().get<int64_t>();
    // The id table is sized by the largest id: bound it by the number of entries (a BPE vocab numbers its
    // tokens 0..n-1; some slack for gaps) before a corrupt id of 10^9 asks for gigabytes.
    if (id >= max_plausible_id(vocab.size()))
      fail(where, ": vocab entry \"", text_excerpt(it.key(), 40), "\" has id ", id, ", far beyond the vocab's ",
           vocab.size(), " entries (ids run 0..", vocab.size() - 1, "): is the file corrupt?");
    if (id >= id_to_bytes.size()) id_to_bytes.resize(id + 1);
    std::string bytes;
    if (!byte_level_to_bytes(it.key(), bytes))
      fail(where, ": vocab token \"", it.key(), "\" (id ", id, ") is not in the byte-level alphabet");
    if (!id_to_bytes[id].empty()) fail(where, ": id ", id, " is used twice in the vocab");
    id_to_bytes[id] = bytes;
  }
  return id_to_bytes;
}

// merges as "a b" strings (merges.txt, older tokenizer.json) or ["a", "b"] pairs (newer tokenizer.json).
void add_byte_level_merge(BPE& bpe, const std::string& a, const std::string& b, int32_t rank,
                          const std::string& where) {
  std::string ab, bb;
  if (!byte_level_to_bytes(a, ab) || !byte_level_to_bytes(b, bb))
    fail(where, ": merge ", rank, " (\"", a, " ", b, "\") is not in the byte-level alphabet");
  int32_t ia = bpe.id_of(ab), ib = bpe.id_of(bb);
  if (ia < 0 || ib < 0) fail(where, ": merge ", rank, " (\"", a, " ", b, "\") uses a token missing from the vocab");
  bpe.add_merge(ia, ib, rank, where);
}

void check_value(const nlohmann::json& obj, const char* key, const nlohmann::json& allowed_a,
                 const nlohmann::json& allowed_b, const std::string& where) {
  if (!obj.contains(key)) return;
  const auto& v = obj[key];
  if (v != allowed_a && v != allowed_b) fail(where, ": ", key, " = ", json_excerpt(v), " is not supported");
}

}  // namespace

struct TokenizerLoader {
  static void from_tokenizer_json(Tokenizer& t, const std::string& path) {
    auto j = parse_json_file(path);
    t.format = "tokenizer.json";
    if (!j.contains("model") || !j["model"].is_object()) fail(path, ": missing \"model\"");
    const auto& m = j["model"];
    std::string type = m.value("type", "BPE");
    if (type != "BPE") fail(path, ": model.type \"", type, "\" is not supported (only byte-level BPE)");
    check_value(m, "dropout", nullptr, nullptr, path + ": model");
    check_value(m, "byte_fallback", false, false, path + ": model");
    check_value(m, "continuing_subword_prefix", nullptr, "", path + ": model");
    check_value(m, "end_of_word_suffix", nullptr, "", path + ": model");
    bool ignore_merges = m.value("ignore_merges", false);
    t.bpe_ = std::make_unique<BPE>(byte_level_vocab(m.at("vocab"), path), ignore_merges, path);
    if (!m.contains("merges") || !m["merges"].is_array()) fail(path, ": model.merges must be a list");
    int32_t rank = 0;
    for (const auto& mg : m["merges"]) {
      if (mg.is_string()) {
        auto s = mg.get<std::string>();
        auto sp = s.find(' ');
        if (sp == std::string::npos) fail(path, ": merge ", rank, " \"", s, "\" is not \"a b\"");
        add_byte_level_merge(*t.bpe_, s.substr(0, sp), s.substr(sp + 1), rank, path);
      } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
        add_byte_level_merge(*t.bpe_, mg[0].get<std::string>(), mg[1].get<std::string>(), rank, path);
      } else {
        fail(path, ": merge ", rank, " must be \"a b\" or [\"a\", \"b\"]");
      }
      ++rank;
    }
    // normalizer: none or NFC (possibly inside a one-element Sequence).
    if (j.contains("normalizer") && !j["normalizer"].is_null()) {
      auto n = j["normalizer"];
      if (n.value("type", "") == "Sequence" && n.contains("normalizers") && n["normalizers"].size() == 1)
        n = n["normalizers"][0];
      if (n.value("type", "") != "NFC") fail(path, ": normalizer ", json_excerpt(n), " is not supported (none or NFC)");
      t.nfc_ = true;
    }
    // pre_tokenizer: Sequence[Split(regex, Isolated), ByteLevel(use_regex=false)] or ByteLevel(use_regex=true).
    if (!j.contains("pre_tokenizer") || j["pre_tokenizer"].is_null()) fail(path, ": pre_tokenizer is required");
    std::vector<nlohmann::json> steps;
    const auto& pt = j["pre_tokenizer"];
    if (pt.value("type", "") == "Sequence") {
      for (auto& s : pt.at("pretokenizers")) steps.push_back(s);
    } else {
      steps.push_back(pt);
    }
    std::string pattern;
    bool byte_level = false;
    for (auto& s : steps) {
      std::string st = s.value("type", "");
      if (st == "Split") {
        if (!pattern.empty()) fail(path, ": more than one Split pre-tokenizer is not supported");
        if (!s.contains("pattern") || !s["pattern"].contains("Regex"))
          fail(path, ": pre_tokenizer Split needs pattern.Regex (String patterns are not supported)");
        pattern = s["pattern"]["Regex"].get<std::string>();
        if (s.value("behavior", "Isolated") != "Isolated")
          fail(path, ": pre_tokenizer Split behavior \"", s.value("behavior", ""), "\" is not supported (Isolated)");
        if (s.value("invert", false)) fail(path, ": pre_tokenizer Split invert=true is not supported");
      } else if (st == "ByteLevel") {
        byte_level = true;
        if (s.value("add_prefix_space", false))
          fail(path, ": pre_tokenizer ByteLevel add_prefix_space=true is not supported");
        if (s.value("use_regex", true)) {
          if (!pattern.empty()) fail(path, ": ByteLevel use_regex=true after a Split is not supported");
          pattern = kGpt2Pattern;
        }
      } else {
        fail(path, ": pre_tokenizer type \"", st, "\" is not supported (Split, ByteLevel, Sequence)");
      }
    }
    if (!byte_level) fail(path, ": a ByteLevel pre_tokenizer is required (only byte-level BPE is supported)");
    t.set_pretokenizer(pattern);
    if (j.contains("decoder") && !j["decoder"].is_null() && j["decoder"].value("type", "") != "ByteLevel")
      fail(path, ": decoder ", j["decoder"].value("type", ""), " is not supported (ByteLevel)");
    if (j.contains("added_tokens"))
      for (auto& a : j["added_tokens"]) t.added_.push_back(parse_added(a, a.value("id", (int64_t)-1), path));
    // A TemplateProcessing post-processor that starts with the BOS token means "add BOS" (Llama 3's).
    if (j.contains("post_processor") && j["post_processor"].is_object()) {
      std::string dump = j["post_processor"].dump();
      t.add_bos =
          dump.find("TemplateProcessing") != std::string::npos && dump.find("begin_of_text") != std::string::npos;
    }
  }

  static void from_vocab_merges(Tokenizer& t, const std::string& dir, const nlohmann::json& cfg) {
    std::string vpath = join_path(dir, "vocab.json"), mpath = join_path(dir, "merges.txt");
    t.format = "vocab.json+merges.txt";
    std::string cls = cfg.value("tokenizer_class", "");
    if (cls.empty())
      fail(dir,
           ": vocab.json + merges.txt need tokenizer_config.json with \"tokenizer_class\" to choose the "
           "pre-tokenizer (Qwen2Tokenizer or GPT2Tokenizer)");
    if (cls == "Qwen2Tokenizer" || cls == "Qwen2TokenizerFast") {
      t.set_pretokenizer(kQwen2Pattern);
      t.nfc_ = true;
    } else if (cls == "GPT2Tokenizer" || cls == "GPT2TokenizerFast") {
      t.set_pretokenizer(kGpt2Pattern);
    } else {
      fail(join_path(dir, "tokenizer_config.json"), ": tokenizer_class \"", cls,
           "\" is not supported with vocab.json + merges.txt (Qwen2Tokenizer, GPT2Tokenizer)");
    }
    t.bpe_ = std::make_unique<BPE>(byte_level_vocab(parse_json_file(vpath), vpath), false, vpath);
    std::istringstream in(read_file(mpath));
    std::string line;
    int32_t rank = 0;
    for (int lineno = 1; std::getline(in, line); ++lineno) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || (lineno == 1 && line.rfind("#version", 0) == 0)) continue;
      auto sp = line.find(' ');
      if (sp == std::string::npos) fail(mpath, ":", lineno, ": expected \"a b\", got \"", line, "\"");
      add_byte_level_merge(*t.bpe_, line.substr(0, sp), line.substr(sp + 1), rank++, cat(mpath, ":", lineno));
    }
  }

  // Llama 3's tokenizer.model: one "<base64 bytes> <rank>" line per token; merges implied by ranks.
  static void from_tiktoken(Tokenizer& t, const std::string& path) {
    t.format = "tiktoken";
    static const std::string b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int dec[256];
    std::fill(dec, dec + 256, -1);
    for (size_t i = 0; i < b64.size(); ++i) dec[(uint8_t)b64[i]] = (int)i;
    std::istringstream in(read_file(path));
    std::string line;
    std::vector<std::string> id_to_bytes;
    for (int lineno = 1; std::getline(in, line); ++lineno) {
      if (line.empty()) continue;
      auto sp = line.find(' ');
      if (sp == std::string::npos) fail(path, ":", lineno, ": expected \"<base64> <rank>\"");
      std::string bytes;
      int val = 0, bits = 0;
      for (size_t i = 0; i < sp; ++i) {
        char c = line[i];
        if (c == '=') break;
        if (dec[(uint8_t)c] < 0) fail(path, ":", lineno, ": invalid base64");
        val = (val << 6) | dec[(uint8_t)c];
        bits += 6;
        if (bits >= 8) {
          bits -= 8;
          bytes += (char)((val >> bits) & 0xFF);
        }
      }
      char* end = nullptr;
      long rank = std::strtol(line.c_str() + sp + 1, &end, 10);
      if (rank < 0 || *end != '\0') fail(path, ":", lineno, ": invalid rank");
      if ((size_t)rank >= max_plausible_id((size_t)lineno))
        fail(path, ":", lineno, ": rank ", rank, " is far beyond the ", lineno,
             " lines read so far: is the file corrupt?");
      if ((size_t)rank >= id_to_bytes.size()) id_to_bytes.resize((size_t)rank + 1);
      id_to_bytes[(size_t)rank] = bytes;
    }
    t.bpe_ = std::make_unique<BPE>(std::move(id_to_bytes), /*ignore_merges=*/true, path);
    t.bpe_->derive_merges_from_ranks();
    t.set_pretokenizer(kLlama3Pattern);
    t.add_bos = true;  // Llama 3 prepends <|begin_of_text|> when special tokens are added
  }
};

std::shared_ptr<const Tokenizer> Tokenizer::load(const std::string& path) {
  std::shared_ptr<Tokenizer> t(new Tokenizer());
  t->source = path;
  std::string dir = path, tj;
  if (file_exists(path)) {
    tj = path;
    auto slash = path.rfind('/');
    dir = slash == std::string::npos ? "." : path.substr(0, slash);
  } else if (!dir_exists(path)) {
    fail(path, ": no such tokenizer directory or file");
  } else if (file_exists(join_path(dir, "tokenizer.json"))) {
    tj = join_path(dir, "tokenizer.json");
  }
  std::string cfg_path = join_path(dir, "tokenizer_config.json");
  nlohmann::json cfg = file_exists(cfg_path) ? parse_json_file(cfg_path) : nlohmann::json::object();
  if (!tj.empty()) {
    TokenizerLoader::from_tokenizer_json(*t, tj);
  } else if (file_exists(join_path(dir, "vocab.json")) && file_exists(join_path(dir, "merges.txt"))) {
    TokenizerLoader::from_vocab_merges(*t, dir, cfg);
  } else if (file_exists(join_path(dir, "tokenizer.model"))) {
    if (cfg.empty()) fail(dir, ": tokenizer.model needs tokenizer_config.json for its special tokens");
    TokenizerLoader::from_tiktoken(*t, join_path(dir, "tokenizer.model"));
  } else {
    fail(dir, ": no tokenizer.json, vocab.json + merges.txt, or tokenizer.model found");
  }
  // added_tokens_decoder of tokenizer_config.json adds to (or repeats) the tokenizer's own added tokens.
  if (cfg.contains("added_tokens_decoder") && cfg["added_tokens_decoder"].is_object()) {
    for (auto it = cfg["added_tokens_decoder"].begin(); it != cfg["added_tokens_decoder"].end(); ++it) {
      int64_t id = -1;
      try {
        id = std::stoll(it.key());
      } catch (...) {
        fail(cfg_path, ": added_tokens_decoder key \"", it.key(), "\" is not an id");
      }
      bool known = false;
      for (auto& a : t->added_) known = known || a.id == id;
      if (!known) t->added_.push_back(parse_added(it.value(), id, cfg_path));
    }
  }
  if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) t->add_bos = cfg["add_bos_token"].get<bool>();
  if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean()) t->add_eos = cfg["add_eos_token"].get<bool>();
  t->clean_up_spaces_ = cfg.value("clean_up_tokenization_spaces", false) == true;
  if (cfg.contains("chat_template")) {
    const auto& ct = cfg["chat_template"];
    if (ct.is_string()) {
      t->chat_template = ct.get<std::string>();
    } else if (ct.is_array()) {  // [{"name": "default", "template": ...}, ...]
      for (auto& e : ct)
        if (e.value("name", "") == "default") t->chat_template = e.value("template", "");
    }
  }
  if (t->chat_template.empty() && file_exists(join_path(dir, "chat_template.jinja")))
    t->chat_template = read_file(join_path(dir, "chat_template.jinja"));
  t->bos_token = token_content(cfg.value("bos_token", nlohmann::json()));
  t->eos_token = token_content(cfg.value("eos_token", nlohmann::json()));
  t->pad_token = token_content(cfg.value("pad_token", nlohmann::json()));
  t->finish(cfg_path);
  return t;
}

void Tokenizer::finish(const std::string& cfg_path) {
  vocab_size_ = bpe_->size();
  added_by_first_byte_.assign(256, {});
  for (size_t i = 0; i < added_.size(); ++i) {
    auto& a = added_[i];
    if (a.id < 0) fail(source, ": added token \"", a.content, "\" has no id");
    if (a.id < bpe_->size() && !bpe_->bytes_of(a.id).empty() && bpe_->bytes_of(a.id) != a.content)
      fail(source, ": added token \"", a.content, "\" reuses id ", a.id, " of a different vocab token");
    if (!utf8_valid(a.content)) fail(source, ": added token ", a.id, " is not valid UTF-8");
    added_by_id_[a.id] = i;
    added_by_first_byte_[(uint8_t)a.content[0]].push_back(i);
    vocab_size_ = std::max(vocab_size_, a.id + 1);
  }
  for (auto& v : added_by_first_byte_)
    std::stable_sort(v.begin(), v.end(),
                     [&](size_t x, size_t y) { return added_[x].content.size() > added_[y].content.size(); });
  auto resolve = [&](const std::string& tok, std::optional<int64_t>& id, const char* what) {
    if (tok.empty()) return;
    id = token_to_id(tok);
    if (!id) fail(cfg_path, ": ", what, " \"", tok, "\" is not a token of this tokenizer");
  };
  resolve(bos_token, bos_id, "bos_token");
  resolve(eos_token, eos_id, "eos_token");
  resolve(pad_token, pad_id, "pad_token");
  if (add_bos && !bos_id) {
    for (auto& a : added_)
      if (a.content == "<|begin_of_text|>") bos_id = a.id, bos_token = a.content;
    if (!bos_id) add_bos = false;
  }
  if (add_eos && !eos_id) fail(cfg_path, ": add_eos_token is true but no eos_token is set");
}

std::optional<int64_t> Tokenizer::token_to_id(const std::string& token) const {
  for (auto& a : added_)
    if (a.content == token) return a.id;
  std::string bytes;  // vocab tokens are spelled in the byte-level alphabet, as in HF's token_to_id
  if (!byte_level_to_bytes(token, bytes)) return std::nullopt;
  int32_t id = bpe_->id_of(bytes);
  if (id >= 0) return id;
  return std::nullopt;
}

void Tokenizer::append_text_ids(const std::string& text, std::vector<int64_t>& out) const {
  if (text.empty()) return;
  const std::string& s = nfc_ ? nfc(text) : text;
  regex_->split(s, [&](size_t b, size_t e) { bpe_->encode_piece(std::string_view(s).substr(b, e - b), out); });
}

namespace {
bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_word_byte(char c) {
  return std::isalnum((unsigned char)c) || c == '_' || (unsigned char)c >= 0x80;
}
}  // namespace

std::vector<int64_t> Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  size_t bad = 0;
  if (!utf8_valid(text, &bad)) fail("text is not valid UTF-8 (byte offset ", bad, "); fix the input encoding");
  std::vector<int64_t> out;
  if (add_special_tokens && add_bos && bos_id) out.push_back(*bos_id);
  // Added tokens are matched first, leftmost-longest, in the raw text (HF AddedVocabulary); the text between
  // them goes through normalizer, pre-tokenizer and BPE.
  size_t seg_start = 0, i = 0;
  while (i < text.size()) {
    const AddedToken* hit = nullptr;
    for (size_t k : added_by_first_byte_[(uint8_t)text[i]]) {
      const auto& a = added_[k];
      if (text.compare(i, a.content.size(), a.content) != 0) continue;
      if (a.single_word && ((i > 0 && is_word_byte(text[i - 1])) ||
                            (i + a.content.size() < text.size() && is_word_byte(text[i + a.content.size()]))))
        continue;
      hit = &a;
      break;
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t b = i, e = i + hit->content.size();
    if (hit->lstrip)
      while (b > seg_start && is_ws(text[b - 1])) --b;
    if (hit->rstrip)
      while (e < text.size() && is_ws(text[e])) ++e;
    append_text_ids(text.substr(seg_start, b - seg_start), out);
    out.push_back(hit->id);
    seg_start = i = e;
  }
  append_text_ids(text.substr(seg_start), out);
  if (add_special_tokens && add_eos && eos_id) out.push_back(*eos_id);
  return out;
}

std::vector<std::vector<int64_t>> Tokenizer::encode_batch(const std::vector<std::string>& texts,
                                                          bool add_special_tokens, int threads) const {
  std::vector<std::vector<int64_t>> out(texts.size());
  if (threads <= 0) threads = (int)std::max(1u, std::thread::hardware_concurrency());
  threads = std::max(1, std::min<int>(threads, (int)texts.size()));
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors((size_t)threads);
  for (int w = 0; w < threads; ++w)
    pool.emplace_back([&, w] {
      try {
        for (size_t i = (size_t)w; i < texts.size(); i += (size_t)threads)
          out[i] = encode(texts[i], add_special_tokens);
      } catch (...) {
        errors[(size_t)w] = std::current_exception();
      }
    });
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  return out;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens,
                              std::optional<bool> clean_up_tokenization_spaces, bool unknown_ids_are_errors) const {
  std::string out, bytes;
  for (int64_t id : ids) {
    auto it = added_by_id_.find(id);
    if (it != added_by_id_.end()) {
      out += utf8_lossy(bytes);
      bytes.clear();
      const auto& a = added_[it->second];
      if (!(skip_special_tokens && a.special)) out += a.content;
      continue;
    }
    if (id < 0 || id >= bpe_->size() || bpe_->bytes_of(id).empty()) {
      if (!unknown_ids_are_errors) continue;
      fail("cannot decode token id ", id, ": not in the vocabulary of ", source, " (size ", vocab_size_, ")");
    }
    bytes += bpe_->bytes_of(id);
  }
  out += utf8_lossy(bytes);
  if (clean_up_tokenization_spaces.value_or(clean_up_spaces_)) {
    // transformers' clean_up_tokenization (enabled by clean_up_tokenization_spaces, e.g. in Llama 3's config)
    static const std::vector<std::pair<std::string, std::string>> rules = {
        {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
        {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (auto& [from, to] : rules)
      for (size_t p = 0; (p = out.find(from, p)) != std::string::npos;) out.replace(p, from.size(), to), p += to.size();
  }
  return out;
}

}  // namespace multiref
