#include "tokenizer/chat_template.h"

#include "util/common.h"
#include "util/json_text.h"

namespace multiref {

namespace {

const char* const kQwenDefaultSystem = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
const char* const kLlamaAssistantHeader = "<|start_header_id|>assistant<|end_header_id|>\n\n";

bool contains(const std::string& s, const char* frag) {
  return s.find(frag) != std::string::npos;
}

bool is_supported_role(const std::string& r) {
  return r == "system" || r == "user" || r == "assistant";
}

// Jinja's `| trim` is Python's str.strip(): it removes every character for which str.isspace() holds, which
// includes Unicode spaces (NBSP, the U+2000 block, ideographic space, ...), not just ASCII blanks. These are the
// UTF-8 encodings of all of them (Python 3: [c for c in range(0x110000) if chr(c).isspace()]). Each multi-byte one
// starts with a lead byte, so a match at either end of valid UTF-8 always sits on a character boundary.
const std::vector<std::string>& unicode_spaces() {
  static const std::vector<std::string> v = {
      "\t",           "\n",           "\v",           "\f",           "\r",
      "\x1c",         "\x1d",         "\x1e",         "\x1f",         " ",
      "\xc2\x85",      // U+0085 NEXT LINE
      "\xc2\xa0",      // U+00A0 NO-BREAK SPACE
      "\xe1\x9a\x80",  // U+1680 OGHAM SPACE MARK
      "\xe2\x80\x80", "\xe2\x80\x81", "\xe2\x80\x82", "\xe2\x80\x83", "\xe2\x80\x84",
      "\xe2\x80\x85", "\xe2\x80\x86", "\xe2\x80\x87", "\xe2\x80\x88", "\xe2\x80\x89",
      "\xe2\x80\x8a",  // U+2000..U+200A
      "\xe2\x80\xa8",  // U+2028 LINE SEPARATOR
      "\xe2\x80\xa9",  // U+2029 PARAGRAPH SEPARATOR
      "\xe2\x80\xaf",  // U+202F NARROW NO-BREAK SPACE
      "\xe2\x81\x9f",  // U+205F MEDIUM MATHEMATICAL SPACE
      "\xe3\x80\x80",  // U+3000 IDEOGRAPHIC SPACE
  };
  return v;
}

std::string jinja_trim(const std::string& s) {
  size_t b = 0, e = s.size();
  for (bool again = true; again && b < e;) {
    again = false;
    for (const auto& sp : unicode_spaces())
      if (e - b >= sp.size() && s.compare(b, sp.size(), sp) == 0) {
        b += sp.size();
        again = true;
        break;
      }
  }
  for (bool again = true; again && b < e;) {
    again = false;
    for (const auto& sp : unicode_spaces())
      if (e - b >= sp.size() && s.compare(e - sp.size(), sp.size(), sp) == 0) {
        e -= sp.size();
        again = true;
        break;
      }
  }
  return s.substr(b, e - b);
}

void check_messages(const std::vector<ChatMessage>& messages) {
  // The official Qwen2.5 and Llama 3.1 templates fail on an empty list (messages[0] is undefined); refuse it for
  // every kind rather than render a conversation-less prompt.
  if (messages.empty()) fail("chat template: the conversation has no messages");
  for (size_t i = 0; i < messages.size(); ++i)
    if (!is_supported_role(messages[i].role))
      fail("chat template: message ", i, " has role \"", messages[i].role,
           "\"; only system, user and assistant are supported (no tool messages)");
}

// Qwen2.5-Instruct, no-tools branch. The first message, if system, is emitted as is (no trim); otherwise the default
// system turn is inserted. The loop then emits every other message identically, later system messages included
// (the template skips only a system message that is loop.first). Generic ChatML is the same without the default.
std::string render_chatml(const std::vector<ChatMessage>& m, bool add_generation_prompt, bool qwen_default_system) {
  std::string out;
  size_t start = 0;
  if (m[0].role == "system") {
    out += "<|im_start|>system\n" + m[0].content + "<|im_end|>\n";
    start = 1;
  } else if (qwen_default_system) {
    out += std::string("<|im_start|>system\n") + kQwenDefaultSystem + "<|im_end|>\n";
  }
  for (size_t i = start; i < m.size(); ++i) out += "<|im_start|>" + m[i].role + "\n" + m[i].content + "<|im_end|>\n";
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::string llama_turn(const ChatMessage& msg) {
  // `'...\n\n' + message['content'] | trim + '<|eot_id|>'`: a Jinja filter binds tighter than `+`, so only the
  // content is trimmed.
  return "<|start_header_id|>" + msg.role + "<|end_header_id|>\n\n" + jinja_trim(msg.content) + "<|eot_id|>";
}

// The original Llama-3-Instruct template: bos_token goes before the first message only (whatever its role), and the
// trailing assistant header sits outside any `if add_generation_prompt`, so it is always emitted.
std::string render_llama3(const std::vector<ChatMessage>& m, const ChatRenderOptions& opts) {
  std::string out = opts.bos_token;
  for (const auto& msg : m) out += llama_turn(msg);
  return out + kLlamaAssistantHeader;
}

// Llama 3.1-Instruct, no tools: bos_token, then a system header that is always emitted carrying the knowledge cutoff,
// the date and the first system message (trimmed, possibly empty); that message is then dropped from the loop, which
// renders every remaining message (later system messages included) as a plain Llama 3 turn.
std::string render_llama31(const std::vector<ChatMessage>& m, bool add_generation_prompt,
                           const ChatRenderOptions& opts) {
  std::string out = opts.bos_token + "<|start_header_id|>system<|end_header_id|>\n\n" +
                    "Cutting Knowledge Date: December 2023\n" + "Today Date: " + opts.date_string + "\n\n";
  size_t start = 0;
  if (m[0].role == "system") {
    out += jinja_trim(m[0].content);
    start = 1;
  }
  out += "<|eot_id|>";
  for (size_t i = start; i < m.size(); ++i) out += llama_turn(m[i]);
  if (add_generation_prompt) out += kLlamaAssistantHeader;
  return out;
}

std::string render_plain(const std::vector<ChatMessage>& m) {
  std::string out;
  for (const auto& msg : m) out += msg.content + "\n\n";
  return out;
}

[[noreturn]] void fail_detect(const std::string& source, const std::string& why) {
  fail(source, ": ", why,
       "; multiref reproduces only the Qwen2.5 (ChatML), Llama 3 and Llama 3.1 templates without a Jinja engine. "
       "Pass --chat_template chatml|llama3|llama3.1|plain to choose the rendering explicitly");
}

}  // namespace

ChatTemplateKind parse_chat_template_name(const std::string& name) {
  if (name == "chatml") return ChatTemplateKind::ChatML;
  if (name == "llama3") return ChatTemplateKind::Llama3;
  if (name == "llama3.1") return ChatTemplateKind::Llama31;
  if (name == "plain") return ChatTemplateKind::Plain;
  fail("unknown chat template '", name, "': choose one of chatml, llama3, llama3.1, plain");
}

std::string chat_template_name(ChatTemplateKind k) {
  switch (k) {
    case ChatTemplateKind::ChatML:
      return "chatml";
    case ChatTemplateKind::Llama3:
      return "llama3";
    case ChatTemplateKind::Llama31:
      return "llama3.1";
    case ChatTemplateKind::Plain:
      return "plain";
  }
  fail("chat_template_name: invalid ChatTemplateKind ", static_cast<int>(k));
}

DetectedTemplate detect_chat_template(const std::string& text, const std::string& source) {
  bool chatml = contains(text, "<|im_start|>"), llama = contains(text, "<|start_header_id|>");
  if (chatml && llama) fail_detect(source, "the chat template mixes ChatML and Llama 3 markers");
  if (chatml) {
    if (contains(text, kQwenDefaultSystem)) return {ChatTemplateKind::ChatML, true};
    // Each of these changes the output relative to plain ChatML, so mapping them to it would render silently wrong.
    if (contains(text, "<think>"))
      fail_detect(source, "this ChatML template handles <think> reasoning (Qwen3/QwQ style), which is not reproduced");
    if (contains(text, "<|im_start|>system"))
      fail_detect(source,
                  "this ChatML template inserts its own built-in system prompt (e.g. Qwen2's \"You are a "
                  "helpful assistant.\"), which is not reproduced");
    if (contains(text, "trim") || contains(text, "strip"))
      fail_detect(source, "this ChatML template trims message contents, which plain ChatML does not");
    return {ChatTemplateKind::ChatML, false};
  }
  if (llama && contains(text, "<|eot_id|>") && contains(text, "trim")) {
    if (contains(text, "Cutting Knowledge Date")) return {ChatTemplateKind::Llama31, false};
    // Meta later revised the Llama 3 template to add the assistant header only when add_generation_prompt is set;
    // the llama3 kind reproduces the original, which always adds it, so the two differ without a generation prompt.
    if (contains(text, "add_generation_prompt"))
      fail_detect(source,
                  "this is the revised Llama 3 template (assistant header only with add_generation_prompt); "
                  "--chat_template llama3 renders the original, which always appends the assistant header");
    return {ChatTemplateKind::Llama3, false};
  }
  fail_detect(source, "unrecognized chat template");
}

std::vector<ChatMessage> parse_messages(const nlohmann::json& j, const std::string& where) {
  if (!j.is_array())
    fail(where, ": messages must be a JSON array of {\"role\", \"content\"} objects, got ", j.type_name());
  if (j.empty()) fail(where, ": messages array is empty");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const auto& m = j[i];
    if (!m.is_object())
      fail(where, ": message ", i, " must be an object with \"role\" and \"content\", got ", m.type_name());
    if (!m.contains("role")) fail(where, ": message ", i, " has no \"role\"");
    if (!m["role"].is_string())
      fail(where, ": message ", i, ": \"role\" must be a string, got ", json_excerpt(m["role"]));
    std::string role = m["role"].get<std::string>();
    if (!is_supported_role(role))
      fail(where, ": message ", i, " has role \"", role,
           "\"; only system, user and assistant are supported (tool messages are not)");
    if (m.contains("tool_calls")) fail(where, ": message ", i, " has \"tool_calls\"; tool calls are not supported");
    if (!m.contains("content")) fail(where, ": message ", i, " has no \"content\"");
    if (!m["content"].is_string())
      fail(where, ": message ", i, ": \"content\" must be a string (not a list of parts or null), got ",
           m["content"].type_name());
    out.push_back({role, m["content"].get<std::string>()});
  }
  return out;
}

std::string render_chat(ChatTemplateKind kind, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                        const ChatRenderOptions& opts, bool qwen_default_system) {
  check_messages(messages);
  switch (kind) {
    case ChatTemplateKind::ChatML:
      return render_chatml(messages, add_generation_prompt, qwen_default_system);
    case ChatTemplateKind::Llama3:
      return render_llama3(messages, opts);
    case ChatTemplateKind::Llama31:
      return render_llama31(messages, add_generation_prompt, opts);
    case ChatTemplateKind::Plain:
      return render_plain(messages);
  }
  fail("render_chat: invalid ChatTemplateKind ", static_cast<int>(kind));
}

}  // namespace multiref

namespace multiref {

ChatFormat resolve_chat_format(const std::string& template_text, const std::string& bos_token,
                               const std::string& override_name, const std::string& source) {
  ChatFormat f;
  f.options.bos_token = bos_token;
  if (override_name.empty() || override_name == "auto") {
    if (template_text.empty())
      fail(source, ": the tokenizer has no chat_template; pass --chat_template chatml|llama3|llama3.1|plain");
    auto d = detect_chat_template(template_text, source);
    f.kind = d.kind;
    f.qwen_default_system = d.qwen_default_system;
  } else {
    f.kind = parse_chat_template_name(override_name);
  }
  return f;
}

}  // namespace multiref
