#include "data/prompt_data.h"

#include "data/rewards.h"
#include "tokenizer/tokenizer.h"
#include "util/common.h"
#include "util/json_text.h"
#include "util/jsonl.h"
#include "util/keep_last.h"

namespace multiref {

namespace {

std::string text_field(const nlohmann::json& value, const std::string& key, const std::string& where) {
  if (!value.is_string())
    fail(where, ": \"", key, "\" must be a string", key == "prompt" ? " (a list of messages goes in \"messages\")" : "",
         ", got ", value.type_name());
  auto s = value.get<std::string>();
  if (trim(s).empty()) fail(where, ": \"", key, "\" is empty");
  return s;
}

PromptRow parse_row(const JsonlRow& r) {
  PromptRow row;
  row.where = r.where;
  row.row = r.value;
  const auto& v = r.value;
  int kinds = (int)v.contains("prompt") + (int)v.contains("messages") + (int)v.contains("prompt_ids");
  if (kinds > 1) fail(r.where, ": give only one of \"prompt\", \"messages\" and \"prompt_ids\"");
  if (v.contains("prompt")) {
    row.kind = PromptKind::Text;
    row.text = text_field(v["prompt"], "prompt", r.where);
  } else if (v.contains("messages")) {
    row.kind = PromptKind::Messages;
    row.messages = parse_messages(v["messages"], r.where + " (\"messages\")");
  } else if (v.contains("prompt_ids")) {
    row.kind = PromptKind::Ids;
    const auto& ids = v["prompt_ids"];
    if (!ids.is_array() || ids.empty()) fail(r.where, ": \"prompt_ids\" must be a non-empty list of token ids");
    for (auto& id : ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0)
        fail(r.where, ": \"prompt_ids\" must hold non-negative integers, got ",
             id.is_number() ? json_excerpt(id) : id.type_name());
      row.ids.push_back(id.get<int64_t>());
    }
  } else if (v.contains("question")) {
    row.kind = PromptKind::Text;
    row.text = text_field(v["question"], "question", r.where);
    row.gsm8k = true;
  } else {
    fail(r.where,
         ": a prompt row needs one of \"prompt\" (text), \"messages\" (a conversation), \"prompt_ids\" (token ids) "
         "or GSM8K's \"question\"");
  }
  return row;
}

}  // namespace

std::vector<PromptRow> load_prompt_rows(const std::string& path, const std::string& split) {
  if (split != "train" && split != "test") fail("prompt data: split '", split, "': expected train or test");
  std::string file;
  if (dir_exists(path)) {
    file = join_path(path, split + ".jsonl");
    if (!file_exists(file)) {
      if (split == "test") return {};
      fail(path, ": a prompt dataset directory holds train.jsonl (and optionally test.jsonl); ", file, " is missing");
    }
  } else {
    if (split == "test") return {};
    file = path;
  }
  std::vector<PromptRow> rows;
  for (auto& r : read_jsonl(file)) rows.push_back(parse_row(r));
  if (rows.empty() && split == "train") fail(file, ": no prompt rows");
  return rows;
}

std::vector<PromptRow> load_task_rows(const std::string& dataset, const std::string& data_dir,
                                      const std::string& split) {
  if (dataset != "gsm8k") return load_prompt_rows(dataset, split);
  std::vector<PromptRow> rows;
  for (auto& p : load_gsm8k(dataset, data_dir, split)) {
    PromptRow row;
    row.kind = PromptKind::Text;
    row.text = p.question;
    row.row = {{"question", p.question}, {"answer", p.solution}};
    row.gsm8k = true;
    row.where = p.where;
    rows.push_back(std::move(row));
  }
  return rows;
}

bool are_gsm8k_rows(const std::vector<PromptRow>& rows) {
  for (auto& r : rows)
    if (!r.gsm8k) return false;
  return !rows.empty();
}

std::string resolve_system_prompt(const std::string& flag, const std::vector<PromptRow>& rows) {
  if (flag != "auto") return flag;
  return are_gsm8k_rows(rows) ? kGsm8kXmlSystemPrompt : "";
}

MathProblem gsm8k_problem(const PromptRow& row) {
  auto it = row.row.find("answer");
  if (it == row.row.end() || !it->is_string())
    fail(row.where, ": the GSM8K rewards compare with the row's \"answer\" (a string: a solution ending in \"#### ",
         "<final answer>\", or the final answer alone), and this row has ",
         it == row.row.end() ? "none" : std::string("a ") + it->type_name());
  MathProblem p;
  p.question = row.text;
  p.solution = it->get<std::string>();
  // A bare final answer reads as a solution that is only its "####" line.
  std::string solution = p.solution.find("####") == std::string::npos ? "#### " + p.solution : p.solution;
  p.gold_raw = gsm8k_gold_raw(solution, row.where);
  p.gold = gsm8k_gold(solution, row.where);
  p.where = row.where;
  return p;
}

std::vector<int64_t> prompt_row_ids(const PromptRow& row, const Tokenizer* tok, const ChatFormat* chat,
                                    const std::string& system_prompt, int64_t max_len) {
  std::vector<int64_t> ids;
  if (row.kind == PromptKind::Ids) {
    ids = row.ids;
  } else {
    if (!tok || !chat)
      fail(row.where, ": a text prompt needs the policy's tokenizer, and the policy has none; give \"prompt_ids\"");
    std::vector<ChatMessage> msgs = row.messages;
    if (row.kind == PromptKind::Text) {
      msgs.clear();
      if (!system_prompt.empty()) msgs.push_back({"system", system_prompt});
      msgs.push_back({"user", row.text});
    }
    ids = tok->encode(chat->render(msgs, /*add_generation_prompt=*/true));
  }
  keep_last(ids, max_len);
  return ids;
}

TaskPrompt task_prompt(const PromptRow& row, const Tokenizer* tok, const ChatFormat* chat,
                       const std::string& system_prompt, int64_t max_len) {
  TaskPrompt p;
  p.row = &row;
  p.ids = prompt_row_ids(row, tok, chat, system_prompt, max_len);
  if (!tok) return p;
  p.text = tok->decode(p.ids, /*skip_special_tokens=*/false, std::nullopt, /*unknown_ids_are_errors=*/false);
  if (row.kind == PromptKind::Text) {
    if (!system_prompt.empty()) p.turns.push_back({"system", system_prompt});
    p.turns.push_back({"user", row.text});
  } else if (row.kind == PromptKind::Messages) {
    p.turns = row.messages;
  } else {
    p.turns.push_back(
        {"user", tok->decode(p.ids, /*skip_special_tokens=*/true, std::nullopt, /*unknown_ids_are_errors=*/false)});
  }
  return p;
}

}  // namespace multiref
