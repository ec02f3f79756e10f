#include "data/prompt_data.h"

#include "tokenizer/tokenizer.h"
#include "util/common.h"
#include "util/jsonl.h"

namespace multiref {

namespace {

PromptRow parse_row(const JsonlRow& r) {
  PromptRow row;
  row.where = r.where;
  int kinds = 0;
  for (auto& [key, value] : r.value.items()) {
    if (key == "prompt") {
      ++kinds;
      if (!value.is_string())
        fail(r.where, ": \"prompt\" must be a string (a list of messages goes in \"messages\"), got ",
             value.type_name());
      row.kind = PromptKind::Text;
      row.text = value.get<std::string>();
      if (trim(row.text).empty()) fail(r.where, ": \"prompt\" is empty");
    } else if (key == "messages") {
      ++kinds;
      row.kind = PromptKind::Messages;
      row.messages = parse_messages(value, r.where + " (\"messages\")");
    } else if (key == "prompt_ids") {
      ++kinds;
      row.kind = PromptKind::Ids;
      if (!value.is_array() || value.empty()) fail(r.where, ": \"prompt_ids\" must be a non-empty list of token ids");
      for (auto& id : value) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0)
          fail(r.where, ": \"prompt_ids\" must hold non-negative integers, got ",
               id.is_number() ? id.dump() : id.type_name());
        row.ids.push_back(id.get<int64_t>());
      }
    } else {
      row.fields[key] = value;
    }
  }
  if (kinds == 0)
    fail(r.where,
         ": a prompt row needs one of \"prompt\" (text), \"messages\" (a conversation) or \"prompt_ids\" "
         "(token ids)");
  if (kinds > 1) fail(r.where, ": give only one of \"prompt\", \"messages\" and \"prompt_ids\"");
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
  if ((int64_t)ids.size() > max_len) ids.erase(ids.begin(), ids.end() - max_len);
  return ids;
}

}  // namespace multiref
