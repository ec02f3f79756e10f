#include "data/preference_data.h"

#include <algorithm>
#include <filesystem>

#include "util/common.h"
#include "util/jsonl.h"
#include "util/keep_last.h"

namespace multiref {

namespace {

const char* kFetchHint =
    "UltraFeedback preference pairs come as jsonl lines {\"prompt\", \"chosen\", \"rejected\"}; e.g. export HF's "
    "trl-lib/ultrafeedback_binarized or HuggingFaceH4/ultrafeedback_binarized to DATA_DIR/ultrafeedback/"
    "train.jsonl and test.jsonl, or pass a jsonl path as --dataset";

bool is_eval_name(const std::string& name) {
  return name.find("eval") != std::string::npos || name.find("test") != std::string::npos;
}

// A response side: a plain string, or a conversation whose last message is the assistant's answer (its
// earlier turns are then the prompt, which must agree with the other side's).
std::string response_of(const nlohmann::json& v, const std::string& key, const std::string& where,
                        std::vector<ChatMessage>* prompt_turns) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) {
    if (v.empty()) return "";
    auto msgs = parse_messages(v, where + " (\"" + key + "\")");
    if (msgs.back().role != "assistant")
      fail(where, ": \"", key, "\" is a conversation whose last message has role '", msgs.back().role,
           "'; it must end with the assistant's response");
    std::string out = msgs.back().content;
    msgs.pop_back();
    if (prompt_turns) *prompt_turns = std::move(msgs);
    return out;
  }
  fail(where, ": \"", key, "\" must be a string or a list of {\"role\", \"content\"} messages, got ", v.type_name());
}

bool same_turns(const std::vector<ChatMessage>& a, const std::vector<ChatMessage>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].role != b[i].role || a[i].content != b[i].content) return false;
  return true;
}

}  // namespace

std::vector<std::string> preference_files(const std::string& dataset, const std::string& data_dir,
                                          const std::string& split) {
  if (split != "train" && split != "test") fail("split '", split, "': expected train or test");
  if (dataset != "ultrafeedback") {
    if (!file_exists(dataset))
      fail("--dataset '", dataset, "' is neither 'ultrafeedback' nor an existing jsonl file. ", kFetchHint);
    return {dataset};
  }
  std::string dir = join_path(data_dir, "ultrafeedback");
  if (!std::filesystem::is_directory(dir))
    fail(dir, ": no such directory (looked under the data dir '", data_dir,
         "'; set it with --data_dir or $MULTIREF_DATA). ", kFetchHint);
  std::vector<std::string> all, picked;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    auto name = e.path().filename().string();
    if (e.is_regular_file() && name.size() > 6 && name.substr(name.size() - 6) == ".jsonl") all.push_back(name);
  }
  std::sort(all.begin(), all.end());
  for (auto& n : all)
    if (is_eval_name(n) == (split == "test")) picked.push_back(join_path(dir, n));
  if (picked.empty()) {
    std::string have;
    for (auto& n : all) have += (have.empty() ? "" : ", ") + n;
    fail(dir, ": no ", split, " file (",
         split == "test" ? "a .jsonl whose name contains 'eval' or 'test'"
                         : "a .jsonl whose name contains neither 'eval' nor 'test'",
         "); found: ", have.empty() ? "nothing" : have, ". ", kFetchHint);
  }
  return picked;
}

PreferenceData load_preferences(const std::vector<std::string>& files) {
  PreferenceData d;
  d.files = files;
  for (auto& path : files) {
    for (auto& row : read_jsonl(path)) {
      const auto& j = row.value;
      for (const char* k : {"chosen", "rejected"})
        if (!j.contains(k))
          fail(row.where, ": missing \"", k, "\" (each line needs \"prompt\", \"chosen\", \"rejected\")");
      PreferenceExample ex;
      ex.line = std::stoll(row.where.substr(row.where.rfind(':') + 1));  // where = "path:line"
      std::vector<ChatMessage> turns_c, turns_r;
      ex.chosen = response_of(j["chosen"], "chosen", row.where, &turns_c);
      ex.rejected = response_of(j["rejected"], "rejected", row.where, &turns_r);
      if (j.contains("prompt") && j["prompt"].is_string()) {
        auto p = j["prompt"].get<std::string>();
        // The message-list shape repeats the prompt inside chosen/rejected; those turns (with any system
        // message) are the prompt then. The flat shape has only the string.
        if (!turns_c.empty())
          ex.prompt = turns_c;
        else if (!p.empty())
          ex.prompt = {{"user", p}};
      } else if (j.contains("prompt") && j["prompt"].is_array()) {
        if (!j["prompt"].empty()) ex.prompt = parse_messages(j["prompt"], row.where + " (\"prompt\")");
      } else if (j.contains("prompt")) {
        fail(row.where, ": \"prompt\" must be a string or a list of messages, got ", j["prompt"].type_name());
      } else {
        ex.prompt = turns_c;
      }
      if (!turns_c.empty() && !turns_r.empty() && !same_turns(turns_c, turns_r))
        fail(row.where,
             ": \"chosen\" and \"rejected\" conversations differ before their last message; a preference "
             "pair must answer the same prompt");
      bool has_user = std::any_of(ex.prompt.begin(), ex.prompt.end(),
                                  [](const ChatMessage& m) { return m.role == "user" && !m.content.empty(); });
      if (!has_user || ex.chosen.empty() || ex.rejected.empty()) {
        ++d.skipped_empty;
        continue;
      }
      d.rows.push_back(std::move(ex));
    }
  }
  return d;
}

void truncate_pair(PairTokens& p, const TruncationSettings& t) {
  auto longer = [&] { return (int64_t)std::max(p.chosen.size(), p.rejected.size()); };
  if ((int64_t)p.prompt.size() + longer() > t.max_length && (int64_t)p.prompt.size() > t.max_prompt_length) {
    if (t.keep_end)
      keep_last(p.prompt, t.max_prompt_length);
    else
      p.prompt.resize((size_t)t.max_prompt_length);
    p.truncated = true;
  }
  int64_t room = t.max_length - (int64_t)p.prompt.size();
  if (longer() > room) {
    for (auto* r : {&p.chosen, &p.rejected})
      if ((int64_t)r->size() > room) r->resize((size_t)room);
    p.truncated = true;
  }
}

PairTokens tokenize_pair(const Tokenizer& tok, const ChatFormat& chat, const PreferenceExample& ex,
                         const TruncationSettings& t) {
  std::string prompt = chat.render(ex.prompt, /*add_generation_prompt=*/true);
  auto response = [&](const std::string& answer) {
    auto conv = ex.prompt;
    conv.push_back({"assistant", answer});
    std::string full = chat.render(conv, /*add_generation_prompt=*/false);
    if (full.compare(0, prompt.size(), prompt) != 0)
      fail("line ", ex.line,
           ": the chat template's rendering of the conversation does not start with its rendering of "
           "the prompt, so the response cannot be separated; pass --chat_template");
    return tok.encode(full.substr(prompt.size()));
  };
  PairTokens p;
  p.prompt = tok.encode(prompt);
  p.chosen = response(ex.chosen);
  p.rejected = response(ex.rejected);
  truncate_pair(p, t);
  return p;
}

}  // namespace multiref
